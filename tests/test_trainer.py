"""VarTrainer: label modes, loss going down, eval_loss, shuffling, accumulation, resume, NaN, saving."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from varylm_hf.errors import InputError
from varylm_hf.scoring import score_words, word_loss
from varylm_hf.training.var import (
    NonFiniteLossError,
    PassageGroupedSampler,
    VarTrainer,
    VarTrainingArguments,
    save_var_run,
    train_var,
)

from conftest import make_tiny_word_tokenizer, tiny_gpt2

_TEXTS = {
    1: "There are now rumblings that Apple might soon invade the smart watch space",
    2: "The cat sat on the mat and the dog slept on the floor",
    3: "With schools still closed the city decided to act",
}
_ANSWERS = [("the", 5), ("a", 3), ("is", 2), ("there", 1), ("birds", 1)]


def make_records():
    """Cloze records in the varylm_hf.data layout, built by hand."""
    recs = []
    for pid, text in _TEXTS.items():
        words = text.split()
        for pos in range(2, len(words)):
            answers = [{"word": w, "count": c} for w, c in _ANSWERS[: 1 + pos % 5]]
            recs.append({"id": f"p{pid}-{pos}", "passage_id": pid, "word_position": pos,
                         "context": " ".join(words[: pos - 1]), "corpus_word": words[pos - 1],
                         "answers": answers, "num_answers": sum(a["count"] for a in answers),
                         "majority": answers[0]["word"]})
    return recs


@pytest.fixture(scope="module")
def tok():
    return make_tiny_word_tokenizer("bytelevel")


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", save_strategy="no",
                disable_tqdm=True, per_device_train_batch_size=4, learning_rate=1e-2, logging_steps=1, seed=7)
    base.update(kw)
    return VarTrainingArguments(**base)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("mode,k", [("corpus", None), ("majority", None), ("all", None), ("sample_k", 2)])
def test_two_steps_each_label_mode(tmp_path, tok, mode, k):
    model = tiny_gpt2(len(tok))
    before = _params(model).clone()
    records = make_records()
    trainer = train_var(model, tok, records, records[:6],
                        _args(tmp_path, label_mode=mode, label_k=k, max_steps=2))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(l > 0 for l in losses)
    assert "eval_loss" in trainer.state.log_history[-1]
    assert not torch.equal(before, _params(model))


def test_loss_decreases_on_a_fixed_batch(tmp_path, tok):
    model = tiny_gpt2(len(tok))
    records = make_records()[:4]
    trainer = train_var(model, tok, records, None, _args(tmp_path, max_steps=8, scoring_strategy="passage",
                                                          word_prob_definition="eow"))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] - 0.1


def test_loss_equals_word_loss_on_the_batch(tmp_path, tok):
    """compute_loss is exactly L_Var of score_words with the label view's probabilities."""
    model = tiny_gpt2(len(tok))
    records = make_records()[:3]
    trainer = VarTrainer(model=model, args=_args(tmp_path), train_dataset=records, processing_class=tok)
    batch = trainer.data_collator(records)
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        words = [[a["word"] for a in r["answers"]] for r in records]
        logq = score_words(model, tok, [r["context"] for r in records], words, strategy="pair")
        probs = [torch.tensor([a["count"] for a in r["answers"]], dtype=torch.float) for r in records]
        want = word_loss(logq, [p / p.sum() for p in probs])
    assert float(loss) == pytest.approx(float(want), abs=1e-5)


class _Recorder:
    def __init__(self, collator):
        self.collator, self.batches = collator, []

    def __call__(self, records):
        batch = self.collator(records)
        self.batches.append(batch["record_ids"])
        return batch


def test_shuffling_really_happens(tmp_path, tok):
    records = make_records()
    trainer = VarTrainer(model=tiny_gpt2(len(tok)), args=_args(tmp_path, num_train_epochs=2, learning_rate=1e-5),
                         train_dataset=records, processing_class=tok)
    rec = _Recorder(trainer.data_collator)
    trainer.data_collator = rec
    trainer.train()
    seen = [i for b in rec.batches for i in b]
    n = len(records)
    first, second = seen[:n], seen[n:]
    assert sorted(first) == sorted(r["id"] for r in records) == sorted(second)
    assert first != [r["id"] for r in records] and first != second


def test_group_by_passage_batches(tmp_path, tok):
    records = make_records()
    sampler = PassageGroupedSampler([r["passage_id"] for r in records], seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(len(records)))
    pids = [records[i]["passage_id"] for i in order]
    assert sum(a != b for a, b in zip(pids, pids[1:])) == len(_TEXTS) - 1  # one run per passage
    sampler.set_epoch(1)
    assert len({tuple(sampler), tuple(order)}) in (1, 2)
    trainer = train_var(tiny_gpt2(len(tok)), tok, records, None,
                        _args(tmp_path, group_by_passage=True, scoring_strategy="passage", max_steps=2))
    assert trainer.state.global_step == 2


def test_gradient_accumulation_matches_a_big_batch(tmp_path, tok):
    records = make_records()[:8]
    a = tiny_gpt2(len(tok))
    b = tiny_gpt2(len(tok))
    # SGD: the update is the gradient itself (Adam's first step is ~lr*sign(g), unstable for g ~ 0)
    train_var(a, tok, records, None, _args(tmp_path / "a", max_steps=1, per_device_train_batch_size=4, optim="sgd"))
    train_var(b, tok, records, None, _args(tmp_path / "b", max_steps=1, per_device_train_batch_size=2,
                                           gradient_accumulation_steps=2, optim="sgd"))
    torch.testing.assert_close(_params(a), _params(b), atol=1e-6, rtol=0)


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path, tok):
    records = make_records()
    full = tiny_gpt2(len(tok))
    args = dict(max_steps=4, save_strategy="steps", save_steps=2, learning_rate=1e-3)
    train_var(full, tok, records, None, _args(tmp_path / "full", **args))
    ckpt = tmp_path / "full" / "out" / "checkpoint-2"
    assert (ckpt / "model.safetensors").exists()
    shutil.copytree(ckpt, tmp_path / "resumed" / "out" / "checkpoint-2")
    resumed = tiny_gpt2(len(tok), seed=3)  # different init: everything must come from the checkpoint
    train_var(resumed, tok, records, None, _args(tmp_path / "resumed", **args),
              resume_from_checkpoint=str(tmp_path / "resumed" / "out" / "checkpoint-2"))
    torch.testing.assert_close(_params(resumed), _params(full), atol=1e-6, rtol=0)


def test_nan_loss_names_the_batch(tmp_path, tok):
    model = tiny_gpt2(len(tok))
    with torch.no_grad():
        model.transformer.wte.weight[:] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"step 0 .*p\d-\d"):
        train_var(model, tok, make_records(), None, _args(tmp_path, max_steps=1))


def test_bad_arguments_and_records(tmp_path, tok):
    with pytest.raises(InputError, match="label_k"):
        _args(tmp_path, label_mode="sample_k")
    with pytest.raises(InputError, match="label_mode"):
        _args(tmp_path, label_mode="soft")
    with pytest.raises(InputError, match="scoring_strategy"):
        _args(tmp_path, scoring_strategy="fast")
    bad = make_records()[:2]
    bad[1] = dict(bad[1], answers=[])
    trainer = VarTrainer(model=tiny_gpt2(len(tok)), args=_args(tmp_path), train_dataset=bad, processing_class=tok)
    with pytest.raises(InputError, match="p1-3: no answers"):
        trainer.data_collator(bad)
    with pytest.raises(InputError, match="empty"):
        VarTrainer(model=tiny_gpt2(len(tok)), args=_args(tmp_path), train_dataset=[], processing_class=tok)


def test_save_run_writes_model_tokenizer_config_and_card(tmp_path, tok):
    records = make_records()
    trainer = train_var(tiny_gpt2(len(tok)), tok, records, records[:4], _args(tmp_path, max_steps=1))
    out = save_var_run(trainer, tmp_path / "model", base_model="tiny-gpt2", command="python train.py")
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert not list(out.glob("*.bin"))
    cfg = json.loads((out / "varylm_run.json").read_text())
    assert cfg["varylm"]["label_mode"] == "all" and "eval_loss" in cfg["metrics"]
    card = (out / "README.md").read_text()
    assert "base_model: tiny-gpt2" in card and "L_Var" in card and "python train.py" in card
    # the saved run is what `varylm push` reads for the Hub model card
    from varylm_hf.run_file import read_run_config

    run = read_run_config(out)
    assert run["recipe"] == "var" and run["label_mode"] == "all" and run["word_prob_definition"] == "paper"
    assert run["hyperparameters"]["learning_rate"] == trainer.args.learning_rate and isinstance(run["seed"], int)


@pytest.mark.slow  # two torchrun processes start in 30-120 s on 2 shared cores
def test_two_process_gloo_run_matches_one_process(tmp_path):
    """torchrun --nproc_per_node 2 (2 x 2 contexts) gives the loss curve of 1 process (4 contexts)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    helper = str(Path(__file__).with_name("ddp_train_helper.py"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one, two = tmp_path / "one" / "r.json", tmp_path / "two" / "r.json"
    one.parent.mkdir()
    two.parent.mkdir()
    subprocess.run([sys.executable, helper, str(one), "4", "3"], check=True, env=env, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    proc = subprocess.run(torchrun + [helper, str(two), "2", "3"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert b["world_size"] == 2 and len(a["losses"]) == 3
    assert b["losses"] == pytest.approx(a["losses"], abs=1e-4)
    assert b["checksum"] == pytest.approx(a["checksum"], rel=1e-6)
