"""Per-word surprisal: running text vs a brute force, the ``pm`` definition, the peers, ``varylm score``."""

from __future__ import annotations

import math
import string

import pytest
import torch

from varylm_hf import scoring
from varylm_hf.scoring import STRATEGIES, pm_boundary, score_token_ids, score_words, word_logprobs
from varylm_hf.surprisal import TEXT_COLUMNS, text_surprisals

from conftest import TINY_CORPUS, make_tiny_word_tokenizer, tiny_gpt2, tiny_word_llama

LN2 = math.log(2)
TEXTS = [TINY_CORPUS[0], TINY_CORPUS[1], "Doesn't it rain there?  These birds fly north.", "", TINY_CORPUS[3]]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model_tok(request):
    if request.param == "gpt2":
        tok = make_tiny_word_tokenizer("bytelevel")
        return tiny_gpt2(len(tok)), tok
    tok = make_tiny_word_tokenizer("metaspace")
    return tiny_word_llama(len(tok)), tok


@pytest.fixture(scope="module")
def gpt2_tok():
    tok = make_tiny_word_tokenizer("bytelevel")
    return tiny_gpt2(len(tok)), tok


# ------------------------------------------------------------------ an independent brute force


def _masks(tok, n):
    """Pimentel & Meister's sets written out again: bow tokens (vocab string starts with the space marker),
    EOS, and the first-word weights of wordsprobability (mid-word + punctuation + EOS)."""
    sym = "\u0120" if any(w.startswith("\u0120") for w in tok.get_vocab()) else "\u2581"
    vocab = tok.get_vocab()
    bow = {i for w, i in vocab.items() if w[0] == sym}
    punct = {i for w, i in vocab.items() if w[0] in string.punctuation} - {tok.eos_token_id}
    end_w = torch.zeros(n)
    first_w = torch.zeros(n)
    for i in range(n):
        end_w[i] = (i in bow) + (i == tok.eos_token_id)
        mid = 1 - (i in bow) - (i in punct) - (i >= tok.vocab_size)
        first_w[i] = mid + (i in punct) + (i == tok.eos_token_id)
    return bow, end_w, first_w


def brute_force_text(model, tok, text):
    """One forward per word over first token + text so far, full logits; returns (corrected, paper) bits per word."""
    first = scoring.context_token_ids(tok, "")[0]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    n_vocab = model.get_output_embeddings().weight.shape[0]
    bow, end_w, first_w = _masks(tok, n_vocab)
    starts = [0] + [k for k in range(1, len(ids)) if ids[k] in bow]
    out = []
    for a, b in zip(starts, starts[1:] + [len(ids)]):
        seq = torch.tensor([[first] + ids[:b]])
        with torch.no_grad():
            p = torch.softmax(model(input_ids=seq).logits[0].double(), -1)
        paper = sum(math.log(p[k, ids[k]]) for k in range(a, b))
        e = math.log((p[b] * end_w.double()).sum())
        w_s = first_w if (a == 0 and ids[0] not in bow) else end_w
        s = math.log((p[a] * w_s.double()).sum())
        out.append((-(paper + e - s) / LN2, -paper / LN2))
    return out


def test_running_text_matches_brute_force(model_tok):
    model, tok = model_tok
    rows = text_surprisals(model, tok, TEXTS, progress=False)
    assert list(rows[0]) == list(TEXT_COLUMNS)
    for tid, text in enumerate(TEXTS):
        got = [r for r in rows if r["text_id"] == tid]
        ref = brute_force_text(model, tok, text.strip()) if text.strip() else []
        assert len(got) == len(ref) == len(text.split()) + text.count("  ")  # a double space is a word of its own
        assert [r["word_index"] for r in got] == list(range(len(ref)))
        for r, (corr, paper) in zip(got, ref):
            assert r["surprisal_bits"] == pytest.approx(corr, abs=1e-4)
            assert r["surprisal_paper_bits"] == pytest.approx(paper, abs=1e-4)
    words = [r["word"] for r in rows if r["text_id"] == 1]
    assert words[:3] == ["The", "cat", "sat"] and "mat." in words  # punctuation stays with its word
    # the corrections matter: corrected != uncorrected
    assert max(abs(r["surprisal_bits"] - r["surprisal_paper_bits"]) for r in rows) > 0.1


def test_sliding_window_equals_one_pass_when_it_fits(gpt2_tok):
    model, tok = gpt2_tok
    text = TINY_CORPUS[0]
    full = text_surprisals(model, tok, [text], progress=False)
    n = len(tok(text, add_special_tokens=False)["input_ids"]) + 1
    assert n < 128
    windowed = text_surprisals(model, tok, [text], window=n, progress=False)
    assert [r["surprisal_bits"] for r in windowed] == pytest.approx([r["surprisal_bits"] for r in full], abs=1e-5)
    # a text longer than the window is still scored, every word once
    short = text_surprisals(model, tok, [text], window=24, stride=12, progress=False)
    assert [r["word"] for r in short] == [r["word"] for r in full]
    assert all(math.isfinite(r["surprisal_bits"]) for r in short)


def test_pm_definition_equals_running_text_for_every_strategy(model_tok):
    """The cloze path (contexts = text prefixes) gives the running-text numbers, first word included."""
    model, tok = model_tok
    text = TINY_CORPUS[1]
    rows = text_surprisals(model, tok, [text], progress=False)
    words = text.split()
    contexts = [" ".join(words[:i]) for i in range(len(words))]
    for strategy in STRATEGIES:
        with torch.no_grad():
            pm = score_words(model, tok, contexts, [[w] for w in words], definition="pm", strategy=strategy,
                             batch_size=5)
            paper = score_words(model, tok, contexts, [[w] for w in words], definition="paper", strategy=strategy,
                                batch_size=5)
        for r, a, b in zip(rows, pm, paper):
            assert -float(a[0]) / LN2 == pytest.approx(r["surprisal_bits"], abs=1e-4), (strategy, r["word"])
            assert -float(b[0]) / LN2 == pytest.approx(r["surprisal_paper_bits"], abs=1e-4)


def test_pm_wordrule_boundary_and_gradients(gpt2_tok):
    model, tok = gpt2_tok
    ctx, ws = ["The cat sat on", "There are now"], [["the", "mat"], ["rumblings", "is"]]
    eow = word_logprobs(model, tok, ctx, ws, definition="eow")
    pm_rule = word_logprobs(model, tok, ctx, ws, definition="pm", boundary="wordrule")
    begin = scoring.wordrule_begin(tok, model.get_output_embeddings().weight.shape[0])
    with torch.no_grad():
        for c, e, p in zip(ctx, eow, pm_rule):
            logp = torch.log_softmax(model(input_ids=torch.tensor([scoring.context_token_ids(tok, c)])).logits[0, -1], -1)
            s = float(begin.term(logp[None], [0])[0])
            assert p == pytest.approx([x - s for x in e], abs=1e-5)  # eow divided by P(a word opens)
    # pm is differentiable like the training definitions
    model.zero_grad()
    out = score_words(model, tok, ctx, ws, definition="pm", strategy="passage")
    torch.stack([o.sum() for o in out]).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad()
    with pytest.raises(scoring.InputError, match="boundary"):
        score_words(model, tok, ctx, ws, definition="pm", boundary="spaces")
    with pytest.raises(scoring.InputError, match="word_begin"):
        score_token_ids(model, [[0, 5]], [[[7]]], definition="pm", word_start_mask=pm_boundary(tok)[0])


# ------------------------------------------------------------------ the peers, on the same local model


def _wordsprobability_rows(model, tok, texts):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("wordsprobability")
    from wordsprobability.main import agg_surprisal_per_word
    from wordsprobability.models.bow_lm import GPT2BaseModel

    class LocalGpt2(GPT2BaseModel):  # its model list is fixed to Hub names: hand it the local model
        model_name = "local-tiny-gpt2"

        def _initialise_model(self):
            return model, tok

    wp = LocalGpt2()
    frames = []
    for i, t in enumerate(texts):
        res, offsets = wp.get_predictions(t.strip())
        df = pd.DataFrame(res)
        df["text_id"], df["offsets"] = i, offsets
        frames.append(df)
    return agg_surprisal_per_word(pd.concat(frames), "gpt2-small", return_buggy_surprisals=True).reset_index()


def test_agrees_with_wordsprobability(gpt2_tok):
    model, tok = gpt2_tok
    texts = [t for t in TEXTS if t.strip() and "  " not in t]
    theirs = _wordsprobability_rows(model, tok, texts)
    ours = text_surprisals(model, tok, texts, progress=False)
    assert len(theirs) == len(ours)
    corr = max(abs(a / LN2 - r["surprisal_bits"]) for a, r in zip(theirs["surprisal"], ours))  # theirs: nats
    buggy = max(abs(a / LN2 - r["surprisal_paper_bits"]) for a, r in zip(theirs["surprisal_buggy"], ours))
    assert corr < 1e-4 and buggy < 1e-4
    assert list(theirs["word"]) == [r["word"] for r in ours]  # ASCII text: the same words


PAIRS_CTX = ["There are now", "There are now rumblings", "The cat sat on", "With schools still closed,"]
PAIRS_WORDS = [["rumblings", "birds", "is"], ["that", "Apple"], ["the", "mat", "there"], ["cars", "the"]]


def test_agrees_with_minicons(gpt2_tok):
    pytest.importorskip("minicons")
    from minicons import scorer

    model, _ = gpt2_tok
    tok = make_tiny_word_tokenizer("bytelevel")  # minicons sets a pad token on the tokenizer it gets
    lm = scorer.IncrementalLMScorer(model, "cpu", tokenizer=tok)
    pre = [c for c, ws in zip(PAIRS_CTX, PAIRS_WORDS) for _ in ws]
    stim = [w for ws in PAIRS_WORDS for w in ws]
    total = lambda x: x.sum(0).item()  # noqa: E731
    plain = lm.conditional_score(pre, stim, reduction=total, bos_token=True)
    corrected = lm.conditional_score(pre, stim, reduction=total, bos_token=True, bow_correction=True)
    paper = [v for per in word_logprobs(model, tok, PAIRS_CTX, PAIRS_WORDS, definition="paper") for v in per]
    assert max(abs(a - b) for a, b in zip(plain, paper)) / LN2 < 1e-3
    # minicons' bow correction adds log P(next token is space-marked | c, w): an eow term with that mask,
    # no EOS in it and no division by P(a word starts | c)
    vocab = model.get_output_embeddings().weight.shape[0]
    mask = torch.zeros(vocab, dtype=torch.bool)
    mask[lm.bow_subword_idx] = True
    ctx_ids, w_ids = scoring.encode_batch(tok, PAIRS_CTX, PAIRS_WORDS, model=model, eow=True)
    with torch.no_grad():
        same = [float(v) for per in score_token_ids(model, ctx_ids, w_ids, definition="eow", word_start_mask=mask,
                                                    strategy="passage") for v in per]
    assert max(abs(a - b) for a, b in zip(corrected, same)) / LN2 < 1e-3
    pm = [v for per in word_logprobs(model, tok, PAIRS_CTX, PAIRS_WORDS, definition="pm") for v in per]
    assert max(abs(a - b) for a, b in zip(corrected, pm)) / LN2 > 1e-3  # the definitions differ: documented


# ------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, gpt2_tok):
    model, tok = gpt2_tok
    d = tmp_path_factory.mktemp("tiny-gpt2")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _read_tsv(path):
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def test_cli_text(model_dir, tmp_path, gpt2_tok, capsys):
    from varylm_hf.cli import main

    model, tok = gpt2_tok
    f = tmp_path / "texts.txt"
    f.write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "words.tsv"
    assert main(["score", "--model", str(model_dir), "--text", str(f), "--out", str(out), "--quiet"]) == 0
    header, rows = _read_tsv(out)
    assert header == list(TEXT_COLUMNS)
    ref = text_surprisals(model, tok, TEXTS[:3], progress=False)
    assert len(rows) == len(ref)
    assert [r["word"] for r in rows] == [r["word"] for r in ref]
    assert [float(r["surprisal_bits"]) for r in rows] == pytest.approx([r["surprisal_bits"] for r in ref], abs=1e-5)
    assert "wrote" in capsys.readouterr().out
    # an existing --out is refused without --overwrite (exit 2, one line), then replaced with it
    assert main(["score", "--model", str(model_dir), "--text", str(f), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["score", "--model", str(model_dir), "--text", str(f), "--out", str(out), "--overwrite",
                 "--quiet"]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_dataset(model_dir, tmp_path, gpt2_tok):
    from varylm_hf.cli import main
    from varylm_hf.commands.score import DATASET_COLUMNS
    from varylm_hf.data import load_provo, split_records

    out = tmp_path / "scores.tsv"
    assert main(["score", "--model", str(model_dir), "--passages", "6", "--limit", "3", "--answers",
                 "--out", str(out), "--quiet"]) == 0
    header, rows = _read_tsv(out)
    assert header == list(DATASET_COLUMNS)
    records = [r for r in split_records(load_provo(), "paper")["test"] if r["passage_id"] == 6][:3]
    ctx = [r for r in rows if r["kind"] == "context"]
    ans = [r for r in rows if r["kind"] == "answer"]
    assert [(int(r["passage_id"]), int(r["word_position"])) for r in ctx] == \
        [(r["passage_id"], r["word_position"]) for r in records]
    assert len(ans) == sum(len(r["answers"]) for r in records)
    for r, rec in zip(ctx, records):
        assert r["corpus_word"] == rec["corpus_word"]
        counts = {a["word"]: a["count"] for a in rec["answers"]}
        assert float(r["p_human"]) == pytest.approx(counts.get(rec["corpus_word"].lower(), 0) / rec["num_answers"], abs=1e-6)
        assert 0 <= float(r["exact_tvd"]) <= 1 and 0 < float(r["model_human_mass"]) <= 1
        assert float(r["surprisal_paper_bits"]) > 0 and float(r["surprisal_eow_bits"]) > 0
    # the per-answer eow surprisals are the exact q that exact TVD uses: their mass is model_human_mass
    first = [a for a in ans if a["id"] == ctx[0]["id"]]
    assert sum(2 ** -float(a["surprisal_eow_bits"]) for a in first) == pytest.approx(float(ctx[0]["model_human_mass"]), rel=1e-4)
    # the context's pm surprisal is the running-text one of its passage word
    model, tok = gpt2_tok
    text = records[-1]["context"] + " " + records[-1]["corpus_word"]
    last = text_surprisals(model, tok, [text], progress=False)[-1]
    assert float(ctx[-1]["surprisal_bits"]) == pytest.approx(last["surprisal_bits"], abs=1e-4)
    assert float(ctx[-1]["surprisal_paper_bits"]) == pytest.approx(last["surprisal_paper_bits"], abs=1e-4)


@pytest.mark.parametrize("extra, message", [
    (["--text", "missing.txt"], "no such file"),
    (["--text", "texts.txt", "--answers"], "--answers"),
    (["--text", "texts.txt", "--dataset", "x"], "not both"),
    (["--dataset", "no-such-folder"], "no such folder"),
    (["--passages", "999"], "no such passage"),
    (["--text", "texts.txt", "--bos", "<nope>"], "--bos"),
    (["--text", "texts.txt", "--boundary", "spaces"], "invalid choice"),
])
def test_cli_bad_input_exits_2(model_dir, tmp_path, monkeypatch, capsys, extra, message):
    from varylm_hf.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "texts.txt").write_text("The cat sat on the mat.\n", encoding="utf-8")
    with pytest.raises(SystemExit) if message == "invalid choice" else _nothing():
        rc = main(["score", "--model", str(model_dir), "--out", "o.tsv", *extra])
        assert rc == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]  # (a model-loading bar may precede it)
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "o.tsv").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.slow  # four process launches (two of them torchrun x 2) on 2 shared cores: 1-3 min
def test_two_process_score_writes_the_table_of_one_process(tmp_path):
    """Issue #13 part 3: `torchrun --nproc_per_node 2 varylm score` (cloze contexts by passage, texts round-robin)
    writes byte for byte the TSV of one process."""
    import os
    import subprocess
    import sys

    from conftest import make_tiny_word_tokenizer, tiny_gpt2

    folder = tmp_path / "tiny"
    tok = make_tiny_word_tokenizer("bytelevel")
    tiny_gpt2(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS * 2) + "\n", encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29547"]
    cases = {"dataset": ["--passages", "6", "13", "20", "--answers"], "text": ["--text", str(texts)]}
    for name, extra in cases.items():
        args = ["score", "--model", str(folder), *extra, "--quiet", "--device", "cpu"]
        outs = []
        for launcher in ([sys.executable], torchrun):
            out = tmp_path / f"{name}-{len(launcher)}.tsv"
            proc = subprocess.run(launcher + ["-m", "varylm_hf.cli", *args, "--out", str(out)], env=env,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr[-2000:]
            outs.append(out.read_bytes())
        assert outs[0] == outs[1] and outs[0].count(b"\n") > 20, name
        if name == "dataset":  # both processes had passages
            assert len({line.split(b"\t")[2] for line in outs[0].splitlines()[1:]}) == 3
