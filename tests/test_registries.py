"""Option sets are declared once and extended from outside the package (issue #12, item 2).

A label view registered from this file (not from varylm_hf) is accepted by the word-level trainer, its
card and the instruct recipe's augmented rows, with no other change anywhere.
"""

from __future__ import annotations

import pytest
import torch

from varylm_hf import sft
from varylm_hf.data import LABEL_MODES, label_distribution
from varylm_hf.data.labels import LabelMode, label_counts, register_label_mode
from varylm_hf.errors import InputError
from varylm_hf.trainer import VarTrainer, VarTrainingArguments, save_var_run

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
    rows = sft.sft_rows([REC], "top_two")
    assert [r["completion"][0]["content"] for r in rows] == ["mat", "sofa"]
    sft.InstructConfig(recipe="var", label_mode="top_two").check()


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
