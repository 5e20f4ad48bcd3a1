"""Bad input through the real CLI: one line on stderr naming the file/row/argument, exit 2, nothing left behind.

Every case of issue #10 items 8-12 runs ``python -m varylm_hf.cli`` in a subprocess (cheap: the
argument checks and input readers fail before any model is loaded) and asserts: exit status 2,
exactly one non-empty line on stderr holding the expected words, no traceback, and the folder the
command ran in unchanged byte for byte (no output folder, no hidden temp folder, the user's own
files untouched). The ``metrics/tvd`` evaluate module is checked through ``evaluate.load``.
docs/reliability.md lists the same cases with the messages users see.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "metrics" / "tvd"


# ----------------------------------------------------------------------------- helpers


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "VARYLM_DEBUG"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore", **extra)
    return env


def _drop_dac_override():  # pragma: no cover - runs in the child between fork and exec
    """As root, give up CAP_DAC_OVERRIDE so that a mode-0555 folder is read-only for the command too."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1
    if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_cli(*args, cwd, read_only=False, env=None):
    preexec = _drop_dac_override if read_only and os.geteuid() == 0 else None
    return subprocess.run([sys.executable, "-m", "varylm_hf.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env or _env(), preexec_fn=preexec, timeout=300)


def snapshot(folder: Path) -> dict:
    """Every path under ``folder`` with the sha256 of its bytes (folders as "dir") and its mode."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_dir():
            out[rel] = ("dir", p.stat().st_mode)
        else:
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
    return out


def _csv(path: Path, text: str, encoding="utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _good_rows(n_passages=12):
    """Cloze rows for a valid file with enough passages for a random split."""
    rows = []
    for p in range(1, n_passages + 1):
        rows += [(f"p{p}", f"The cat number {p} sat on the", "mat", 3), (f"p{p}", f"The cat number {p} sat on the", "floor", 2)]
    return rows


def _good_csv(path: Path, sep=",", extra_rows=(), header="passage,context,answer,count") -> Path:
    lines = [header.replace(",", sep)] + [sep.join(map(str, r)) for r in _good_rows()] + list(extra_rows)
    return _csv(path, "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- shared inputs


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A real evaluation run and a real dataset folder, made once by the CLI (the cases copy what they need)."""
    base = tmp_path_factory.mktemp("made")
    res = run_cli("eval", "gpt2-reference", "--seeds", "42", "--no-figures", "--out", "ref", cwd=base)
    assert res.returncode == 0, res.stderr
    res = run_cli("data", "build", "--out", "ds", cwd=base)
    assert res.returncode == 0, res.stderr
    return base


def _copy_run(made: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in (made / "ref").iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


# --------------------------------------------------------------------- setups: (tmp, made) -> argv


def cloze(build):
    """``data build --cloze-file FILE --out out`` on the file that ``build(tmp)`` writes."""
    def setup(tmp, made):
        return ["data", "build", "--split", "random", "--cloze-file", build(tmp).name, "--out", "out"]
    return setup


def _row_without_mode(tmp, made):
    run = _copy_run(made, tmp / "run")
    lines = (run / "contexts.jsonl").read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[2])
    del row["mode"]
    lines[2] = json.dumps(row)
    (run / "contexts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["eval", "compare", "run", "--out", "cmp"]


def _summary(content: bytes):
    def setup(tmp, made):
        run = _copy_run(made, tmp / "run")
        (run / "summary.json").write_bytes(content)
        return ["eval", "compare", "run", "--out", "cmp"]
    return setup


def _corrupt_parquet(tmp, made):
    ds = tmp / "ds"
    (ds / "data").mkdir(parents=True)
    for f in (made / "ds").rglob("*"):
        if f.is_file():
            (ds / f.relative_to(made / "ds")).write_bytes(f.read_bytes())
    victim = ds / "data" / "test-00000-of-00001.parquet"
    victim.write_bytes(victim.read_bytes()[:-100])  # truncated: footer gone
    return ["data", "summary", "ds"]


def _not_a_dataset(tmp, made):
    (tmp / "notes").mkdir()
    (tmp / "notes" / "thesis.tex").write_text("my thesis\n", encoding="utf-8")
    return ["data", "summary", "notes"]


def _read_only(command):
    def setup(tmp, made):
        ro = tmp / "ro"
        ro.mkdir()
        (ro / "keep.txt").write_text("mine\n", encoding="utf-8")
        if command[:2] == ["eval", "compare"]:
            _copy_run(made, tmp / "run")
        ro.chmod(0o555)
        return [*command, "--out", "ro/new"]
    return setup


def _file_as_out(command):
    def setup(tmp, made):
        (tmp / "results.txt").write_text("my results\n", encoding="utf-8")
        return [*command, "--out", "results.txt"]
    return setup


def _args(*argv):
    return lambda tmp, made: list(argv)


BIG = "x" * 1_000_000

# id -> (setup, expected substrings of the one stderr line)
CASES = {
    # item 8: tracebacks
    "count-1e309": (cloze(lambda t: _good_csv(t / "n.csv", extra_rows=["p1,The dog ran to the,park,1e309"])),
                    ["n.csv:26", "1e309", "not a finite number"]),
    "1MB-field-csv": (cloze(lambda t: _good_csv(t / "n.csv", extra_rows=[f"p1,The dog ran to the,{BIG},1"])),
                      ["n.csv:26", "longer than 131,072 characters"]),
    "1MB-field-tsv": (cloze(lambda t: _good_csv(t / "n.tsv", sep="\t", extra_rows=[f"p1\tThe dog\t{BIG}\t1"])),
                      ["n.tsv:26", "longer than 131,072 characters"]),
    "jsonl-missing-context-after-line-1": (
        cloze(lambda t: _jsonl(t / "n.jsonl", [{"context": "The cat", "answer": "sat"}, {"answer": "mat", "count": 2}])),
        ["n.jsonl:2", "missing key 'context'"]),
    "out-read-only-eval-run": (_read_only(["eval", "run", "--model", "no-such-model", "--limit", "2"]),
                               ["--out ro/new", "cannot write", "Permission denied"]),
    "out-read-only-data-build": (_read_only(["data", "build"]), ["--out ro/new", "cannot write"]),
    "out-read-only-eval-compare": (_read_only(["eval", "compare", "run"]), ["--out ro/new", "cannot write"]),
    "out-read-only-reproduce": (_read_only(["reproduce", "--limit-eval", "2"]), ["--out ro/new", "cannot write"]),
    "temperature-nan": (_args("eval", "run", "--model", "no-such-model", "--out", "o", "--temperature", "nan"),
                        ["argument --temperature", "finite", "'nan'"]),
    "top-p-inf": (_args("eval", "run", "--model", "no-such-model", "--out", "o", "--top-p", "inf"), ["argument --top-p"]),
    "compare-summary-empty-object": (_summary(b"{}\n"), ["run/summary.json", "missing key(s) name"]),
    "compare-summary-list": (_summary(b"[1, 2]\n"), ["run/summary.json", "expected a JSON object", "list"]),
    "compare-row-without-mode": (_row_without_mode, ["run/contexts.jsonl:3", "'mode'"]),
    "compare-summary-binary": (_summary(b"\xff\xfe\x00\x01\x89PNG binary"), ["run/summary.json", "not UTF-8"]),
    "summary-not-a-dataset": (_not_a_dataset, ["notes", "not a varylm dataset folder"]),
    "summary-corrupt-parquet": (_corrupt_parquet, ["ds/data/test-00000-of-00001.parquet", "not a readable parquet"]),
    "reproduce-out-is-a-file": (_file_as_out(["reproduce", "--limit-eval", "2"]),
                                ["--out results.txt", "exists and is not a folder"]),
    "data-build-out-is-a-file": (_file_as_out(["data", "build"]), ["--out results.txt", "not a folder"]),
    # item 9: cloze files
    "duplicate-header": (cloze(lambda t: _good_csv(t / "n.csv", header="passage,context,answer,answer")),
                         ["n.csv:1", "'answer' appears twice"]),
    "ragged-row-long": (cloze(lambda t: _good_csv(t / "n.csv", extra_rows=["p1,The dog ran,park,1,extra"])),
                        ["n.csv:26", "5 field(s), the header has 4"]),
    "ragged-row-short": (cloze(lambda t: _good_csv(t / "n.csv", extra_rows=["p1,The dog ran"])),
                         ["n.csv:26", "2 field(s), the header has 4"]),
    "jsonl-answer-list": (cloze(lambda t: _jsonl(t / "n.jsonl", [{"context": "The cat", "answer": ["sat", "mat"]}])),
                          ["n.jsonl:1", "'answer' must be a string", "a list"]),
    "jsonl-count-true": (cloze(lambda t: _jsonl(t / "n.jsonl", [{"context": "The cat", "answer": "sat", "count": True}])),
                         ["n.jsonl:1", "count true", "boolean"]),
    # item 10: limits
    "reproduce-limit-eval-negative": (_args("reproduce", "--limit-eval", "-1", "--out", "o"),
                                      ["argument --limit-eval", "must be >= 0 (0 means all)"]),
    "reproduce-limit-train-negative": (_args("reproduce", "--limit-train", "-3", "--out", "o"), ["argument --limit-train"]),
    "demo-limit-eval-negative": (_args("demo", "--limit-eval", "-1", "--out", "o"), ["argument --limit-eval"]),
    "eval-limit-negative": (_args("eval", "run", "--model", "m", "--limit", "-1", "--out", "o"), ["argument --limit"]),
    # item 12: messages naming the right thing
    "count-3000000000": (cloze(lambda t: _good_csv(t / "n.csv", extra_rows=["p1,The dog ran to the,park,3000000000"])),
                         ["n.csv:26", "too large", "int32"]),
    "jsonl-count-3000000000": (
        cloze(lambda t: _jsonl(t / "n.jsonl", [{"context": "The cat", "answer": "sat", "count": 3_000_000_000}])),
        ["n.jsonl:1", "too large"]),
    "answers-sum-overflows-int32": (
        cloze(lambda t: _good_csv(t / "n.csv", extra_rows=["p1,The dog ran to the,park,2000000000",
                                                           "p1,The dog ran to the,lake,2000000000"])),
        ["n.csv:26", "int32"]),
    "validation-size-0.99": (_args("data", "build", "--split", "random", "--validation-size", "0.99", "--out", "o"),
                             ["`validation_size`", "--validation-size"]),
    "seed-negative": (_args("data", "build", "--split", "random", "--seed", "-5", "--out", "o"),
                      ["argument --seed", "[0, 2**32 - 1]"]),
    "seed-too-large": (_args("eval", "gpt2-reference", "--seeds", str(2**32), "--out", "o"), ["argument --seeds"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, tmp_path, made):
    setup, expected = CASES[case]
    argv = setup(tmp_path, made)
    before = snapshot(tmp_path)
    try:
        res = run_cli(*argv, cwd=tmp_path, read_only=case.startswith("out-read-only"))
    finally:
        if (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o755)
    if (tmp_path / "ro").exists():
        (tmp_path / "ro").chmod(0o555)  # as it was, for the snapshot
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    assert len(lines) == 1, res.stderr[-2000:]
    assert lines[0].startswith("varylm: error: "), lines[0][:300]
    for word in expected:
        assert word in lines[0], (word, lines[0][:300])
    assert snapshot(tmp_path) == before  # no output folder, no temp folder, the user's files unchanged
    if (tmp_path / "ro").exists():
        (tmp_path / "ro").chmod(0o755)


def test_utf8_bom_is_accepted(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark: the header must still be found."""
    lines = ["passage,context,answer,count"] + [",".join(map(str, r)) for r in _good_rows()]
    _csv(tmp_path / "excel.csv", "\r\n".join(lines) + "\r\n", encoding="utf-8-sig")
    assert (tmp_path / "excel.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    res = run_cli("data", "build", "--split", "random", "--cloze-file", "excel.csv", "--out", "ds", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    from datasets import load_dataset

    dsd = load_dataset(str(tmp_path / "ds"))
    assert sum(len(ds) for ds in dsd.values()) == 12


def test_limit_zero_means_all_in_help():
    for command in (["reproduce"], ["demo"], ["eval", "run"]):
        res = run_cli(*command, "--help", cwd=ROOT)
        assert res.returncode == 0
        assert "0: all" in " ".join(res.stdout.split()) or "0 or omitted: all" in " ".join(res.stdout.split()), command


def test_outputs_do_not_depend_on_pythonhashseed(tmp_path):
    """Item 14: the same command writes the same bytes whatever the string-hash seed (sums in sorted order)."""
    outs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"h{hash_seed}"
        out.mkdir()
        res = run_cli("eval", "gpt2-reference", "--seeds", "42", "--no-figures", "--out", "ref", cwd=out,
                      env=_env(PYTHONHASHSEED=hash_seed))
        assert res.returncode == 0, res.stderr
        res = run_cli("data", "build", "--out", "ds", cwd=out, env=_env(PYTHONHASHSEED=hash_seed))
        assert res.returncode == 0, res.stderr
        summary = json.loads((out / "ref" / "summary.json").read_text(encoding="utf-8"))
        summary.pop("timing", None)
        files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                 if p.is_file() and p.name != "summary.json" and "manifest" not in p.name}
        outs.append((summary, files))
    assert outs[0][0] == outs[1][0]
    assert outs[0][1].keys() == outs[1][1].keys()
    for name in outs[0][1]:
        assert outs[0][1][name] == outs[1][1][name], name


# ----------------------------------------------------------------------------- the evaluate module (item 11)


@pytest.fixture(scope="module")
def tvd():
    import evaluate

    return evaluate.load(str(MODULE))


TVD_ERRORS = {
    "none-in-predictions": (dict(predictions=[["a", None]], references=[["a", "b"]]), r"predictions\[0\]\[1\]"),
    "none-in-references": (dict(predictions=[["a"]], references=[["a", None]]), r"references\[0\]\[1\]"),
    "missing-count": (dict(predictions=[["a"]], references=[[{"word": "a", "count": 2}, {"word": "b"}]]),
                      r"references\[0\]\[1\].*'count'"),
    "predictions-empty": (dict(predictions=[], references=[]), r"`predictions`"),
    "lengths-differ": (dict(predictions=[["a"], ["b"]], references=[["a"]]), r"2 predictions but 1 references"),
    "negative-count": (dict(predictions=[["a"]], references=[[{"word": "a", "count": -1}]]),
                       r"references\[0\]\[0\]\['count'\]"),
    "nan-count": (dict(predictions=[["a"]], references=[[{"word": "a", "count": float("nan")}]]),
                  r"references\[0\]\[0\]\['count'\].*finite"),
    "inf-count": (dict(predictions=[["a"]], references=[[{"word": "a", "count": float("inf")}]]),
                  r"references\[0\]\[0\]\['count'\]"),
    "bool-count": (dict(predictions=[["a"]], references=[[{"word": "a", "count": True}]]),
                   r"references\[0\]\[0\]\['count'\]"),
    "string-count": (dict(predictions=[["a"]], references=[[{"word": "a", "count": "3"}]]),
                     r"references\[0\]\[0\]\['count'\]"),
    "second-context-empty-prediction": (dict(predictions=[["a"], []], references=[["a"], ["b"]]), r"predictions\[1\]"),
    "prediction-not-a-list": (dict(predictions=["abc"], references=[["a"]]), r"predictions\[0\]"),
    "oracle-huge-count": (dict(predictions=[["a"]], references=[[{"word": "a", "count": 1e30}]], oracle=True),
                          r"references\[0\]"),
    "oracle-fractional-count": (dict(predictions=[["a"]], references=[[{"word": "a", "count": 1.5}, {"word": "b", "count": 1}]],
                                     oracle=True), r"references\[0\].*integer"),
}


@pytest.mark.parametrize("case", list(TVD_ERRORS))
def test_tvd_module_bad_input_raises_value_error_naming_argument(tvd, case):
    kwargs, pattern = TVD_ERRORS[case]
    with pytest.raises(ValueError, match=pattern):
        tvd.compute(**kwargs)


def test_tvd_module_matches_library_on_fractional_and_huge_counts(tvd):
    from varylm_hf import metrics as M

    cases = [
        ([["a", "a", "b"]], [[{"word": "a", "count": 0.5}, {"word": "b", "count": 1.5}]]),  # truncated to 0/1 before
        ([["b"]], [[{"word": "a", "count": 0.5}, {"word": "b", "count": 1.5}]]),
        ([["a"]], [[{"word": "a", "count": 1e30}, {"word": "b", "count": 1e30}]]),  # OverflowError before
        # mixed shapes in one call (the README's example): both contexts read correctly
        ([["are", "is"], ["company", "market"]], [["are", "are", "is", "many"], [{"word": "company", "count": 17},
                                                                                  {"word": "other", "count": 3}]]),
    ]
    for preds, refs in cases:
        out = tvd.compute(predictions=preds, references=refs, return_per_context=True)
        assert out["per_context_tvd"] == pytest.approx([M.tvd(r, p) for p, r in zip(preds, refs)], rel=1e-12)
    assert tvd.compute(predictions=[["a", "a", "b"]], references=[[{"word": "a", "count": 0.5}, {"word": "b", "count": 1.5}]])[
        "tvd"] == pytest.approx(5 / 12)
