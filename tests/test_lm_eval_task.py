"""The lm-evaluation-harness tasks in lm_eval_tasks/provo_cloze against varylm's own computation.

lm-eval's HF backend on a tiny local GPT-2-style model (CPU), a few Provo test documents from a folder
written by ``varylm data build``:

* ``provo_cloze_exact`` per document equals varylm's scorer (``word_logprobs(definition="paper")`` over
  the same surface forms, :func:`varylm_hf.metrics.exact_tvd`) to 1e-4, both with the bare context
  (lm-eval's default for GPT-2-style tokenizers = varylm ``bos="none"``) and with the first token
  varylm uses by default (``first_token: auto`` = ``<|endoftext|>``, varylm ``bos="auto"``);
* ``provo_cloze_tvd``'s first words are :func:`varylm_hf.sampling.word_from_continuation` of the
  logged continuations, and its per-document numbers are varylm's ``score_sampled`` of those words.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")

from varylm_hf import metrics as M  # noqa: E402
from varylm_hf.data import load_provo, split_records  # noqa: E402
from varylm_hf.data.normalize import NO_WORD  # noqa: E402
from varylm_hf.evaluation import score_sampled, surface_forms  # noqa: E402
from varylm_hf.sampling import word_from_continuation  # noqa: E402

TASKS = Path(__file__).resolve().parents[1] / "lm_eval_tasks"
LIMIT = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import GPT2Config, GPT2LMHeadModel

    from varylm_hf.cli import main

    from conftest import make_tiny_word_tokenizer

    root = tmp_path_factory.mktemp("lm_eval")
    assert main(["data", "build", "--out", str(root / "provo_cloze")]) in (0, None)
    tok = make_tiny_word_tokenizer("bytelevel")
    tok.save_pretrained(root / "tok")  # for first_token "auto" (read as `pretrained` from the metadata)
    torch.manual_seed(0)
    # small init: a near-uniform next-token distribution, so that samples often start a word
    cfg = GPT2Config(vocab_size=len(tok), n_layer=2, n_embd=32, n_head=2, n_positions=512, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.02, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=16, device="cpu")
    return {"root": root, "tok": tok, "model": model, "lm": lm}


def _run(setup, task, **metadata):
    from lm_eval.tasks import TaskManager

    meta = {"dataset_path": str(setup["root"] / "provo_cloze"), **metadata}
    tm = TaskManager(include_path=str(TASKS), include_defaults=False, metadata=meta)
    out = lm_eval.simple_evaluate(model=setup["lm"], tasks=[task], task_manager=tm, limit=LIMIT, log_samples=True,
                                  bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    assert len(samples) == LIMIT
    return out["results"][task], samples


def _varylm_exact(setup, docs, bos):
    """varylm's exact numbers under eq. 3 (``paper``): q(w) = sum over surface forms of exp(log q(form))."""
    from varylm_hf.scoring import word_logprobs

    forms = [[surface_forms(a["word"]) for a in d["answers"]] for d in docs]
    flat = [[f for fs in per for f in fs] for per in forms]
    logps = word_logprobs(setup["model"], setup["tok"], [d["context"] for d in docs], flat, definition="paper",
                          bos=bos)
    rows = []
    for d, per, lp in zip(docs, forms, logps):
        q, k = {}, 0
        for a, fs in zip(d["answers"], per):
            q[a["word"]] = sum(math.exp(v) for v in lp[k: k + len(fs)])
            k += len(fs)
        mass = sum(q.values())
        assert mass <= 1.0  # a random tiny model: no eq.-3 overshoot to clip
        rows.append({"logps": lp, "exact_tvd": M.exact_tvd(d["answers"], q), "human_mass": mass})
    return rows


@pytest.mark.parametrize("first_token,bos", [(None, "none"), ("auto", "auto")])
def test_exact_task_equals_varylm_paper_definition(setup, first_token, bos):
    meta = {} if first_token is None else {"first_token": first_token, "pretrained": str(setup["root"] / "tok")}
    results, samples = _run(setup, "provo_cloze_exact", **meta)
    docs = [s["doc"] for s in samples]
    # the folder written by `varylm data build` is the packaged paper split, in order
    assert [d["id"] for d in docs] == [r["id"] for r in split_records(load_provo(), "paper")["test"][:LIMIT]]
    head = "<|endoftext|>" if bos == "auto" else ""
    assert all(s["arguments"][0][0] == head + d["context"] for s, d in zip(samples, docs))
    ours = _varylm_exact(setup, docs, bos)
    diffs = {"logp": 0.0, "exact_tvd": 0.0, "human_mass": 0.0}
    for s, row in zip(samples, ours):
        lls = [r[0] for r in s["filtered_resps"]]
        assert len(lls) == len(row["logps"])
        diffs["logp"] = max(diffs["logp"], max(abs(a - b) for a, b in zip(lls, row["logps"])))
        for key in ("exact_tvd", "human_mass"):
            diffs[key] = max(diffs[key], abs(s[key] - row[key]))
        assert s["oracle_tvd"] == M.oracle_tvd(s["doc"]["answers"], 42)
    print(f"first_token={first_token}: max abs differences lm-eval vs varylm {diffs}")
    assert diffs["exact_tvd"] < 1e-4 and diffs["human_mass"] < 1e-4 and diffs["logp"] < 1e-4
    mean = sum(r["exact_tvd"] for r in ours) / LIMIT
    assert results["exact_tvd,none"] == pytest.approx(mean, abs=1e-4)


def test_sampled_task_words_are_varylm_words(setup):
    results, samples = _run(setup, "provo_cloze_tvd")
    produced = []
    for s in samples:
        conts, words = s["resps"][0], s["filtered_resps"][0]
        assert len(conts) == len(words) == 40
        assert words == [word_from_continuation(c, ended=True) for c in conts]
        produced += [w for w in words if w != NO_WORD]
        row = score_sampled(s["doc"], words, 42)
        for key in ("tvd", "oracle_tvd", "entropy", "human_entropy", "coverage", "failure_rate"):
            assert s[key] == pytest.approx(row[key], abs=1e-12), key
    assert produced, "the tiny model produced no word at all: the comparison would be vacuous"
    assert results["tvd,first_word"] == pytest.approx(sum(s["tvd"] for s in samples) / LIMIT)


def test_first_word_rule_and_overshoot():
    import importlib.util

    spec = importlib.util.spec_from_file_location("provo_utils", TASKS / "provo_cloze" / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    # the rule of varylm's sampler: one space, then the word; a stop string ends it
    assert [utils.first_words(c) for c in (" mat, and", " can't", "re is", "", " The", " well-known")] == [
        "mat", "ca", NO_WORD, NO_WORD, "the", "well-known"]
    doc = {"answers": [{"word": "self", "count": 3}, {"word": "a", "count": 1}], "majority": "self"}
    n_forms = len(utils.doc_to_choice(doc))
    assert utils.doc_to_choice(doc) == ["self", "Self", "a", "A"] and utils.doc_to_target(doc) == 0
    # eq. 3 can put more than all the mass on the human words: q is scaled down to one, mass reported as is
    lls = [math.log(0.8), math.log(0.1), math.log(0.3), math.log(0.0001)]
    out = utils.exact_scores(doc, lls)
    assert out["human_mass"] == pytest.approx(1.2001)
    q = {"self": 0.9 / 1.2001, "a": 0.3001 / 1.2001}
    assert out["exact_tvd"] == pytest.approx(M.exact_tvd(doc["answers"], q))
    with pytest.raises(ValueError):
        utils.exact_scores(doc, lls[: n_forms - 1])
