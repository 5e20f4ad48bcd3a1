"""varylm_hf.evaluation / figures / `varylm eval`: exact vs sampled, runs on disk, real GPT-2 samples."""

import json
import statistics

import pytest

from varylm_hf import evaluation as E
from varylm_hf import metrics as M
from varylm_hf.cli import main
from varylm_hf.errors import InputError
from varylm_hf.reference import reference_gpt2_rows

from conftest import make_wordlevel_gpt2
from test_sampling import exact_first_word_probs


def _record(i, context, answers):
    answers = [{"word": w, "count": c} for w, c in answers]
    return {"id": f"t-{i:02d}", "passage_id": 1, "word_position": i + 2, "context": context,
            "answers": answers, "num_answers": sum(a["count"] for a in answers),
            "majority": answers[0]["word"], "corpus_word": answers[0]["word"]}


RECORDS = [
    _record(0, "the cat", [("sat", 12), ("ran", 8), ("is", 6), ("and", 4)]),
    _record(1, "a dog ran and", [("the", 15), ("a", 10), ("sat", 5), ("cat", 2)]),
    _record(2, "the dog", [("ran", 20), ("sat", 10), ("is", 9)]),  # odd number of answers
]


@pytest.fixture
def model(wordlevel_tokenizer):
    return make_wordlevel_gpt2(wordlevel_tokenizer)


def test_exact_probs_match_brute_force_with_surface_forms(model, wordlevel_tokenizer):
    """Exact q(w) adds the capitalised form ("the" + "The"), as the normalised samples do."""
    qs = E.exact_word_probs(model, wordlevel_tokenizer, RECORDS)
    for rec, q in zip(RECORDS, qs):
        brute = exact_first_word_probs(model, wordlevel_tokenizer, rec["context"])
        for a in rec["answers"]:
            assert q[a["word"]] == pytest.approx(brute[a["word"]], rel=1e-4, abs=1e-7)
    assert E.surface_forms("the") == ["the", "The"]
    assert E.surface_forms("3d") == ["3d"] and E.surface_forms("éte") == ["éte", "Éte"]


def test_exact_strategies_agree(tiny_chat_tokenizer, tiny_chat_llama, model, wordlevel_tokenizer):
    """`passage` (contexts of a passage share one trie) gives the numbers of `tree`, plain and chat."""
    text = "the cat sat on the mat and the dog ran"
    recs = [_record(i, text[:k], [("the", 3), ("a", 2), ("cat", 1)]) for i, k in enumerate([7, 11, 14, 18])]
    for m, tok in ((model, wordlevel_tokenizer), (tiny_chat_llama, tiny_chat_tokenizer)):
        tree = E.exact_word_probs(m, tok, recs, strategy="tree")
        passage = E.exact_word_probs(m, tok, recs, strategy="passage")
        for a, b in zip(tree, passage):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-9)


def test_sampled_tvd_approaches_exact_tvd(model, wordlevel_tokenizer):
    """The sampled TVD is a biased, noisy estimate of the exact one; both shrink as samples grow."""
    exact = E.evaluate_model(model, wordlevel_tokenizer, RECORDS, mode="exact", progress=False, return_rows=True)[1]
    exact_tvd = [r["tvd"] for r in exact]
    errors = {}
    for n in (10, 3000):
        _, rows = E.evaluate_model(model, wordlevel_tokenizer, RECORDS, mode="sampled", num_samples=n,
                                   seeds=[1, 2], progress=False, return_rows=True)
        errors[n] = statistics.fmean(abs(r["tvd"] - exact_tvd[i % len(RECORDS)]) for i, r in enumerate(rows))
    assert errors[3000] < 0.03
    assert errors[3000] < errors[10] / 3


def test_evaluate_model_writes_a_run(model, wordlevel_tokenizer, tmp_path):
    out = tmp_path / "run"
    summary = E.evaluate_model(model, wordlevel_tokenizer, RECORDS, mode="both", seeds=[42, 123], num_samples=20,
                               out_dir=out, name="tiny", progress=False)
    files = {p.name for p in out.iterdir()}
    assert {"contexts.jsonl", "summary.json", "table.md", "fig_tvd_hist.png", "fig_tvd_minus_oracle.png",
            "fig_entropy.png", "fig_coverage.png"} <= files
    assert all((out / f).stat().st_size > 1000 for f in files if f.endswith(".png"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.tmp")]
    saved, rows = E.load_run(out)
    assert saved == json.loads(json.dumps(summary))
    assert len(rows) == 2 * len(RECORDS) + len(RECORDS)
    sampled = [r for r in rows if r["mode"] == "sampled"]
    # summary = mean over seeds of per-seed means, recomputed from the rows
    per_seed = [statistics.fmean(r["tvd"] for r in sampled if r["seed"] == s) for s in (42, 123)]
    assert summary["sampled"]["tvd"]["per_seed"] == pytest.approx(per_seed)
    assert summary["sampled"]["tvd"]["mean"] == pytest.approx(statistics.fmean(per_seed))
    assert summary["sampled"]["tvd"]["sd"] == pytest.approx(statistics.stdev(per_seed))
    assert summary["mean_tvd"] == summary["sampled"]["tvd"]["mean"]
    timing = summary["timing"]  # seconds and contexts per second of each pass, one key pair per pass
    assert sorted(timing) == sorted(f"{p}_{u}" for p in ("exact", "sampled_seed_42", "sampled_seed_123")
                                    for u in ("s", "contexts_per_s"))
    assert timing["exact_contexts_per_s"] == pytest.approx(len(RECORDS) / timing["exact_s"])
    oracle = [statistics.fmean(M.oracle_tvd(r["answers"], s) for r in RECORDS) for s in (42, 123)]
    assert summary["oracle"]["per_seed"] == pytest.approx(oracle)
    for r in sampled:
        assert sum(r["samples"].values()) == 20 and r["tvd"] == pytest.approx(M.tvd(
            RECORDS[int(r["id"][-2:])]["answers"], r["samples"]))
    table = (out / "table.md").read_text()
    assert "| tiny |" in table and "| Oracle |" in table and "±" in table
    # the sampled measure's floor: q = p sampled 20 times per context, per seed
    perfect = [statistics.fmean(M.perfect_model_tvd(r["answers"], 20, s) for r in RECORDS) for s in (42, 123)]
    assert summary["sampled"]["perfect_tvd"]["per_seed"] == pytest.approx(perfect)
    assert f"| Perfect model (q = p) sampled at n = 20 | 0 | {statistics.fmean(perfect):.3f} ± " in table
    # a second run into the same folder needs --overwrite
    with pytest.raises(InputError, match="overwrite"):
        E.evaluate_model(model, wordlevel_tokenizer, RECORDS, out_dir=out, progress=False)


def test_failed_write_leaves_nothing(model, wordlevel_tokenizer, tmp_path, monkeypatch):
    import varylm_hf.figures as F

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(F, "run_figures", boom)
    with pytest.raises(RuntimeError):
        E.evaluate_model(model, wordlevel_tokenizer, RECORDS, num_samples=5, out_dir=tmp_path / "run", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_compare_runs_and_change_figure(model, wordlevel_tokenizer, tmp_path):
    for name, temp in (("base", 1.0), ("cold", 0.5)):
        E.evaluate_model(model, wordlevel_tokenizer, RECORDS, num_samples=20, temperature=temp, name=name,
                         out_dir=tmp_path / name, progress=False)
    table = E.compare_runs([tmp_path / "base", tmp_path / "cold" / "summary.json"], tmp_path / "cmp")
    assert table.index("| base |") < table.index("| cold |") < table.index("| Oracle |")
    assert (tmp_path / "cmp" / "fig_tvd_change.png").stat().st_size > 1000
    with pytest.raises(InputError, match="names"):
        E.compare_runs([tmp_path / "base"], names=["a", "b"])
    with pytest.raises(InputError, match="not an evaluation run"):
        E.compare_runs([tmp_path])


def test_bad_inputs(model, wordlevel_tokenizer):
    with pytest.raises(InputError, match="mode"):
        E.evaluate_model(model, wordlevel_tokenizer, RECORDS, mode="fast", progress=False)
    with pytest.raises(InputError, match="no contexts"):
        E.evaluate_model(model, wordlevel_tokenizer, [], progress=False)
    with pytest.raises(InputError, match="distinct"):
        E.evaluate_model(model, wordlevel_tokenizer, RECORDS, seeds=[1, 1], progress=False)
    with pytest.raises(InputError, match="missing answers"):
        E.evaluate_model(model, wordlevel_tokenizer, [{"context": "x", "num_answers": 3}], progress=False)


def test_chat_model_exact_and_sampled(tiny_chat_tokenizer, tiny_chat_llama):
    recs = [_record(0, "The cat sat on the", [("mat", 3), ("the", 2)]), _record(1, "Paris is", [("the", 4), ("a", 1)])]
    summary, rows = E.evaluate_model(tiny_chat_llama, tiny_chat_tokenizer, recs, mode="both", num_samples=6,
                                     max_new_tokens=4, progress=False, return_rows=True)
    assert summary["config"]["prompt"] == "instruction"
    for r in rows:
        assert 0.0 <= r["tvd"] <= 1.0
        if r["mode"] == "exact":
            assert 0.0 <= r["human_mass"] <= 1.0


# ------------------------------------------------------------------ real GPT-2 samples and the oracle row


@pytest.fixture(scope="module")
def test_split():
    from varylm_hf.data import load_provo, split_records

    return split_records(load_provo(), "paper")["test"]


def test_real_gpt2_samples_reproduce_table_1(test_split):
    """Paper Table 1, GPT-2 Base 0.607 ± 0.001 and Oracle 0.443 ± 0.002, from packaged data."""
    seeds = [42, 123, 456]
    ours = E.summarize(reference_gpt2_rows(test_split, seeds=seeds), seeds=seeds)
    assert ours["n_contexts"] == 536
    assert ours["sampled"]["tvd"]["mean"] == pytest.approx(0.607, abs=0.002)
    assert ours["oracle"]["mean"] == pytest.approx(0.443, abs=0.005)
    assert ours["oracle"]["sd"] < 0.005
    assert ours["sampled"]["failure_rate"]["mean"] < 0.001
    quirks = E.summarize(reference_gpt2_rows(test_split, seeds=[42], quirks=True), seeds=[42])
    # case-sensitive comparison ("The" != "the") costs ~0.015
    assert quirks["sampled"]["tvd"]["mean"] == pytest.approx(0.622, abs=0.002)


def test_reference_rows_need_test_passages(test_split):
    rec = dict(test_split[0], passage_id=1)
    with pytest.raises(InputError, match="reference GPT-2"):
        reference_gpt2_rows([rec])


def test_moved_names_stay_importable_from_evaluation():
    """``Shard`` and the reference rows moved out; their importers (commands, reproduce, pinned numbers) still work."""
    from varylm_hf import distributed, reference

    assert E.Shard is distributed.Shard
    assert E.reference_gpt2_rows is reference.reference_gpt2_rows
    assert E.load_reference_samples is reference.load_reference_samples


# ------------------------------------------------------------------ CLI


def test_cli_run_compare_and_errors(wordlevel_tokenizer, tmp_path, capsys):
    folder = tmp_path / "tiny"
    make_wordlevel_gpt2(wordlevel_tokenizer).save_pretrained(folder)
    wordlevel_tokenizer.save_pretrained(folder)
    common = ["--model", str(folder), "--limit", "3", "--num-samples", "5", "--quiet", "--device", "cpu"]
    assert main(["eval", "run", *common, "--out", str(tmp_path / "a"), "--no-figures"]) == 0
    assert "| Oracle |" in capsys.readouterr().out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["n_contexts"] == 3 and summary["config"]["limit"] == 3
    assert main(["eval", "run", *common, "--seeds", "1", "2", "--out", str(tmp_path / "b")]) == 0
    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--names", "A", "B"]) == 0
    assert "| A |" in capsys.readouterr().out
    # bad input: exit 2, one line, nothing written
    assert main(["eval", "run", *common, "--out", str(tmp_path / "a")]) == 2
    assert "overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # an argparse type error: usage error, exit 2
        main(["eval", "run", "--model", str(folder), "--limit", "-1", "--out", str(tmp_path / "c")])
    assert stop.value.code == 2 and "--limit" in capsys.readouterr().err
    assert main(["eval", "run", "--model", str(tmp_path / "nope"), "--limit", "2", "--out", str(tmp_path / "d")]) == 2
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_cli_gpt2_reference(tmp_path, capsys):
    assert main(["eval", "gpt2-reference", "--seeds", "42", "--out", str(tmp_path / "ref"), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "GPT-2 (real samples)" in out and "0.607" in out


@pytest.mark.gguf
@pytest.mark.slow
def test_offline_smollm2_sampled_and_exact(test_split):
    """The real offline model end to end: chat prompt, samples are words, exact mass is a probability."""
    from varylm_hf.modeling import load_model_and_tokenizer, offline_model_path

    try:
        offline_model_path()
    except InputError:
        pytest.skip("offline SmolLM2 GGUF not installed")
    model, tok = load_model_and_tokenizer("smollm2-gguf", device="cpu")
    summary, rows = E.evaluate_model(model, tok, test_split[20:23], mode="both", num_samples=10,
                                     progress=False, return_rows=True)
    assert summary["config"]["prompt"] == "instruction"
    sampled = [r for r in rows if r["mode"] == "sampled"]
    assert all(sum(r["samples"].values()) == 10 for r in sampled)
    assert summary["sampled"]["failure_rate"]["mean"] < 0.5
    for r in (r for r in rows if r["mode"] == "exact"):
        assert 0.0 < r["human_mass"] <= 1.0 and 0.0 <= r["tvd"] <= 1.0


@pytest.mark.slow  # two torchrun processes start in 30-90 s on 2 shared cores
def test_two_process_evaluation_writes_the_rows_of_one_process(tmp_path):
    """Issue #13 part 3: `torchrun --nproc_per_node 2 varylm eval run` shards by passage, gathers on the main
    process and writes one run whose rows are byte-identical to one process's."""
    import os
    import subprocess
    import sys

    from conftest import make_tiny_word_tokenizer, tiny_gpt2

    folder = tmp_path / "tiny"  # byte-level: every Provo word is spellable (no <unk>)
    tok = make_tiny_word_tokenizer("bytelevel")
    tiny_gpt2(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    args = ["eval", "run", "--model", str(folder), "--mode", "both", "--seeds", "1", "2", "--num-samples", "4",
            "--limit", "60", "--quiet", "--device", "cpu", "--no-figures"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    one = subprocess.run([sys.executable, "-m", "varylm_hf.cli", *args, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541"]
    two = subprocess.run(torchrun + ["-m", "varylm_hf.cli", *args, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    rows_one = (tmp_path / "one" / "contexts.jsonl").read_bytes()
    assert rows_one == (tmp_path / "two" / "contexts.jsonl").read_bytes()
    passages = {json.loads(line)["passage_id"] for line in rows_one.decode().splitlines()}
    assert len(passages) >= 2  # both processes had work
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["timing"]["processes"] == 2 and summary["n_contexts"] == 60


def test_dataset_folder_is_an_input_of_eval_run(model, wordlevel_tokenizer, tmp_path, capsys):
    """`--dataset DIR` (a `varylm data build` folder) feeds `varylm eval run`; a bad id is one line, exit 2."""
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    wordlevel_tokenizer.save_pretrained(folder)
    assert main(["data", "build", "--out", str(tmp_path / "ds")]) == 0
    common = ["eval", "run", "--model", str(folder), "--limit", "3", "--num-samples", "5", "--quiet", "--no-figures"]
    assert main([*common, "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b")]) == 0  # the packaged Provo: the same test contexts
    rows = [json.loads(x) for x in (tmp_path / "a" / "contexts.jsonl").read_text().splitlines()]
    same = [json.loads(x) for x in (tmp_path / "b" / "contexts.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in same] and rows == same
    capsys.readouterr()
    assert main([*common, "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "c")]) == 2
    assert "--dataset" in capsys.readouterr().err and not (tmp_path / "c").exists()
