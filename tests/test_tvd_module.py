"""metrics/tvd: the `evaluate` module agrees with varylm_hf.metrics and stands alone."""

import doctest
import random
import subprocess
import sys
from pathlib import Path

import pytest

from varylm_hf import metrics as M

MODULE = Path(__file__).resolve().parents[1] / "metrics" / "tvd"


@pytest.fixture(scope="module")
def tvd():
    import evaluate

    return evaluate.load(str(MODULE))


def _random_case(rng, n_contexts=12):
    vocab = ["the", "a", "cat", "dog", "is", "are", "was", "<no-word>", "The"]
    preds, refs = [], []
    for _ in range(n_contexts):
        preds.append(rng.choices(vocab, k=rng.randint(1, 40)))
        refs.append(rng.choices(vocab[:7], weights=[9, 5, 3, 2, 2, 1, 1], k=rng.randint(2, 41)))
    return preds, refs


def test_agrees_with_varylm_metrics(tvd):
    rng = random.Random(0)
    preds, refs = _random_case(rng)
    out = tvd.compute(predictions=preds, references=refs, oracle=True, oracle_seed=123, return_per_context=True)
    assert out["per_context_tvd"] == pytest.approx([M.tvd(r, p) for p, r in zip(preds, refs)], rel=1e-12)
    # same split algorithm: identical halves, so identical values
    assert out["per_context_oracle_tvd"] == pytest.approx([M.oracle_tvd(r, 123) for r in refs], rel=1e-12)
    assert out["tvd"] == pytest.approx(sum(out["per_context_tvd"]) / len(preds))
    # the {word, count} shape gives the same numbers
    counted = [[{"word": w, "count": c} for w, c in M.counts_of(r).items()] for r in refs]
    out2 = tvd.compute(predictions=preds, references=counted, oracle=True, oracle_seed=123, return_per_context=True)
    assert out2.keys() == out.keys()  # same numbers up to summation order (set order follows PYTHONHASHSEED)
    for key in out:
        assert out2[key] == pytest.approx(out[key], rel=1e-12, abs=1e-15)


def test_options_and_examples(tvd):
    assert tvd.compute(predictions=[["the", "the", "a", "a"]], references=[["the", "the", "the", "a"]]) == {"tvd": 0.25}
    out = tvd.compute(predictions=[["a"]], references=[["a", "b"]], oracle=True)
    assert set(out) == {"tvd", "oracle_tvd"} and out["oracle_tvd"] == 1.0
    # the >>> examples of the script's docstring run as doctests
    import evaluate

    src = (MODULE / "tvd.py").read_text()
    block = src[src.index("Examples:") : src.index('"""', src.index("Examples:"))]
    test = doctest.DocTestParser().get_doctest(block, {"evaluate": evaluate}, "tvd", "tvd.py", 0)
    runner = doctest.DocTestRunner()
    import os

    cwd = os.getcwd()
    os.chdir(MODULE.parents[1])  # the examples load "metrics/tvd" relative to the repo root
    try:
        runner.run(test)
    finally:
        os.chdir(cwd)
    assert runner.summarize(verbose=False).failed == 0


def test_errors(tvd):
    with pytest.raises(ValueError, match="predictions"):
        tvd.compute(predictions=[["a"], ["b"]], references=[["a", "b"]])
    with pytest.raises(ValueError, match="context 0"):
        tvd.compute(predictions=[[]], references=[["a", "b"]])
    with pytest.raises(ValueError, match="at least 2 answers"):
        tvd.compute(predictions=[["a"]], references=[["a"]], oracle=True)


def test_module_is_self_contained():
    """Works with only `evaluate` installed: never imports varylm_hf."""
    src = (MODULE / "tvd.py").read_text()
    assert "import varylm_hf" not in src and "from varylm_hf" not in src
    code = (
        "import sys, evaluate\n"
        f"m = evaluate.load({str(MODULE)!r})\n"
        "print(m.compute(predictions=[['a']], references=[['a', 'b']])['tvd'], 'varylm_hf' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.split() == ["0.5", "False"]


def test_space_files():
    import yaml

    card = (MODULE / "README.md").read_text()
    assert card.startswith("---\n")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py" and "evaluate" in header["tags"]
    for section in ("## Metric Description", "## How to Use", "### Inputs", "### Output Values",
                    "#### Values from Popular Papers", "### Examples", "## Limitations and Bias", "## Citation"):
        assert section in card
    assert "0.607 ± 0.001" in card and "0.443 ± 0.002" in card
    assert "launch_gradio_widget" in (MODULE / "app.py").read_text()
    assert "evaluate" in (MODULE / "requirements.txt").read_text()
