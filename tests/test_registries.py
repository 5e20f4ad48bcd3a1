"""Option sets are declared once and extended from outside the package (issue #12, item 2).

A label view registered from this file (not from varylm_hf) is accepted by the word-level trainer, its
card and the instruct recipe's augmented rows, with no other change anywhere.
"""

from __future__ import annotations

import json

import pytest
import torch

from varylm_hf.data import LABEL_MODES, label_distribution
from varylm_hf.data.labels import LabelMode, label_counts, register_label_mode
from varylm_hf.errors import InputError
from varylm_hf.training.rows import sft_rows
from varylm_hf.training.sft_config import VarSFTConfig
from varylm_hf.training.var import VarTrainer, VarTrainingArguments, save_var_run

from conftest import make_tiny_word_tokenizer, tiny_gpt2

REC = {"id": "r1", "passage_id": 1, "context": "The cat sat on the", "corpus_word": "mat",
       "majority": "mat", "answers": [{"word": "mat", "count": 3}, {"word": "sofa", "count": 2},
                                      {"word": "floor", "count": 1}], "num_answers": 6}


def _top_two(record, k, seed, normalizer):
    """Test-only view: the two most frequent human answers, once each."""
    answers = sorted(record["answers"], key=lambda a: -a["count"])[:2]
    return [(a["word"], 1) for a in answers]


@pytest.fixture
def top_two():
    view = register_label_mode(LabelMode("top_two", "the two most frequent human answers, equally weighted",
                                         _top_two))
    yield view
    del LABEL_MODES["top_two"]


def test_registered_label_mode_is_a_label_view(top_two):
    assert label_counts(REC, "top_two") == [("mat", 1), ("sofa", 1)]
    assert label_distribution(REC, "top_two") == [("mat", 0.5), ("sofa", 0.5)]
    # the instruct recipe: one augmented row per count
    rows = sft_rows([REC], "top_two")
    assert [r["completion"][0]["content"] for r in rows] == ["mat", "sofa"]
    assert VarSFTConfig(recipe="var", label_mode="top_two").label_mode == "top_two"  # checked when built


def test_registered_label_mode_trains_and_is_described_in_the_card(tmp_path, top_two):
    tok = make_tiny_word_tokenizer("bytelevel")
    model = tiny_gpt2(len(tok))
    args = VarTrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none",
                                save_strategy="no", disable_tqdm=True, per_device_train_batch_size=1,
                                learning_rate=1e-2, logging_steps=1, max_steps=1, label_mode="top_two")
    trainer = VarTrainer(model=model, args=args, train_dataset=[REC], processing_class=tok)
    batch = trainer.data_collator([REC])
    assert torch.allclose(batch["target_probs"][0][:2], torch.tensor([0.5, 0.5]))
    trainer.train()
    save_var_run(trainer, tmp_path / "run", base_model="tiny")
    assert "the two most frequent human answers, equally weighted" in (tmp_path / "run" / "README.md").read_text()


def test_unknown_label_mode_is_one_line_naming_the_registered_ones(top_two):
    with pytest.raises(InputError, match="top_two"):
        label_counts(REC, "nope")
    with pytest.raises(InputError, match="expected one of .*top_two"):
        VarTrainingArguments(output_dir="x", label_mode="nope")
    with pytest.raises(InputError, match="no usable top_two answer"):
        label_counts(dict(REC, answers=[]), "top_two")


# ----------------------------------------------------------------------------- a sampling backend


def _always_mat(model, tokenizer, contexts, num_samples, **kw):
    """Test-only backend: every sample is "mat" (records the keywords it was called with)."""
    _always_mat.calls.append(kw)
    return [["mat"] * num_samples for _ in contexts]


_always_mat.calls = []


@pytest.fixture
def always_mat():
    from varylm_hf import sampling

    sampling.register_sampler("always-mat", _always_mat)
    _always_mat.calls.clear()
    yield
    del sampling.SAMPLERS["always-mat"]


def test_registered_sampler_drives_sampled_tvd(always_mat, tmp_path, capsys):
    from varylm_hf.cli import main
    from varylm_hf.evaluation import evaluate_model

    from conftest import make_wordlevel_gpt2, make_wordlevel_tokenizer

    rec = dict(REC, answers=[{"word": "mat", "count": 3}, {"word": "sofa", "count": 1}], num_answers=4)
    tok = make_wordlevel_tokenizer()
    model = make_wordlevel_gpt2(tok)
    summary = evaluate_model(model, tok, [rec], mode="sampled", num_samples=8, sampler="always-mat", progress=False)
    assert summary["mean_tvd"] == pytest.approx(0.25)  # q = {mat: 1} vs p = {mat: .75, sofa: .25}
    assert summary["config"]["sampler"] == "always-mat"
    assert _always_mat.calls[0]["seed"] == 42 and _always_mat.calls[0]["prompt"] == "auto"
    # the CLI takes the name; an unknown one is one line, exit 2, before any model is loaded
    folder = tmp_path / "m"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    common = ["eval", "run", "--model", str(folder), "--limit", "2", "--num-samples", "4", "--quiet", "--no-figures"]
    assert main([*common, "--sampler", "always-mat", "--out", str(tmp_path / "a")]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["config"]["sampler"] == "always-mat" and summary["sampled"]["coverage"]["mean"] is not None
    assert main([*common, "--sampler", "nope", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "--sampler nope: expected one of shared-prefix, naive, always-mat" in err and not (tmp_path / "b").exists()


def test_registered_metric_reaches_rows_and_summary(always_mat):
    from varylm_hf import evaluation, metrics

    from conftest import make_wordlevel_gpt2, make_wordlevel_tokenizer

    metrics.register_sampled_metric("mat_share", lambda rec, s, seed: s.count("mat") / len(s))
    try:
        tok = make_wordlevel_tokenizer()
        recs = [dict(REC, id=f"r{i}") for i in range(3)]
        summary, rows = evaluation.evaluate_model(make_wordlevel_gpt2(tok), tok, recs, mode="sampled", num_samples=5,
                                                  seeds=[1, 2], sampler="always-mat", progress=False,
                                                  return_rows=True)
    finally:
        del metrics.SAMPLED_METRICS["mat_share"]
    assert [r["mat_share"] for r in rows] == [1.0] * 6
    assert summary["sampled"]["mat_share"]["per_seed"] == [1.0, 1.0]


def test_naive_backend_takes_the_shared_options_and_names_unknown_ones():
    from varylm_hf.sampling import naive_sample_next_words

    with pytest.raises(InputError, match="unknown sampling option.*nope.*expected some of prompt"):
        naive_sample_next_words(None, None, ["the cat"], 4, nope=1)


def test_every_registered_backend_resolves_and_takes_the_interface_keywords():
    import inspect

    from varylm_hf import sampling

    assert sampling.get_sampler("naive") is sampling.naive_sample_next_words
    assert sampling.get_sampler("shared-prefix") is sampling.sample_next_words
    interface = inspect.signature(sampling.SamplingBackend.__call__).parameters
    keywords = {n for n, p in interface.items() if p.kind is p.KEYWORD_ONLY}
    shared = inspect.signature(sampling.sample_next_words).parameters
    assert keywords <= {n for n, p in shared.items() if p.kind is p.KEYWORD_ONLY}
