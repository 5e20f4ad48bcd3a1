"""The instruction-tuned recipe: augmented data, loss mask, LoRA training, adapter round trip, var path."""

from __future__ import annotations

import json

import pytest
import torch

from varylm_hf.data.labels import label_counts
from varylm_hf.errors import InputError
from varylm_hf.modeling import unmark_gguf_quantization
from varylm_hf.prompts import instruction_prompt, one_shot_example, one_shot_prompt
from varylm_hf.training.adapters import (
    LORA_TARGET_MODULES,
    lora_config,
    paper_model_config,
    qlora_available,
    qlora_quantization_config,
)
from varylm_hf.training.instruct import make_sft_trainer, train_instruct
from varylm_hf.training.rows import (
    batch_rows,
    build_sft_dataset,
    build_var_dataset,
    chat_token_ids,
    contexts_per_batch,
    sft_rows,
    var_units,
)
from varylm_hf.training.sft_config import VarSFTConfig
from varylm_hf.training.var_sft import VarSFTTrainer, var_sft_loss

RECORDS = [
    {
        "id": "t-01-002", "passage_id": 1, "word_position": 2, "context": "The cat",
        "corpus_word": "sat", "answers": [{"word": "sat", "count": 3}, {"word": "is", "count": 2},
                                          {"word": "the", "count": 1}],
        "num_answers": 6, "majority": "sat",
    },
    {
        "id": "t-01-003", "passage_id": 1, "word_position": 3, "context": "The cat sat on the",
        "corpus_word": "mat", "answers": [{"word": "mat", "count": 2}, {"word": "dogs", "count": 1}],
        "num_answers": 3, "majority": "mat",
    },
]


def _sft_args(tmp_path, **kw):
    defaults = dict(recipe="sft", batch_size=4, per_device_batch_size=4, logging_steps=1, max_steps=1,
                    use_cpu=True, bf16=False, activation_checkpointing=False)
    defaults.update(kw)
    return VarSFTConfig(str(tmp_path / "out"), **defaults)


# ----------------------------------------------------------------------------- data


def test_sft_rows_one_row_per_answer():
    rows = sft_rows(RECORDS, "all")
    assert len(rows) == 6 + 3
    first = [r for r in rows if r["id"] == "t-01-002"]
    assert [r["completion"][0]["content"] for r in first] == ["sat"] * 3 + ["is"] * 2 + ["the"]
    for r in first:
        assert r["prompt"] == [{"role": "user", "content": instruction_prompt("The cat")}]
        assert r["completion"][0]["role"] == "assistant"


@pytest.mark.parametrize("mode,words", [("majority", ["sat", "mat"]), ("corpus", ["sat", "mat"])])
def test_sft_rows_single_answer_modes(mode, words):
    recs = [dict(RECORDS[0], majority="sat", corpus_word="sat"), dict(RECORDS[1], corpus_word="mat")]
    rows = sft_rows(recs, mode)
    assert [r["completion"][0]["content"] for r in rows] == words


def test_corpus_mode_uses_corpus_word_not_majority():
    rec = dict(RECORDS[0], corpus_word="slept")
    assert label_counts(rec, "corpus") == [("slept", 1)]
    assert label_counts(rec, "majority") == [("sat", 1)]


def test_bad_label_mode_raises():
    with pytest.raises(InputError, match="label_mode"):
        sft_rows(RECORDS, "sample")


def test_dataset_is_trl_conversational():
    from trl.data_utils import is_conversational

    ds = build_sft_dataset(RECORDS)
    assert len(ds) == 9 and set(ds.column_names) == {"prompt", "completion", "id"}
    assert is_conversational(ds[0])


def test_one_shot_example_comes_from_training_records():
    train = [dict(RECORDS[1], id=f"tr-{i}", context=f"One two three four five {i}") for i in range(20)]
    ctx, answers = one_shot_example(train, seed=42)
    assert ctx in {r["context"] for r in train}
    assert answers == RECORDS[1]["answers"]
    assert one_shot_example(train, seed=42) == (ctx, answers)  # deterministic
    assert len({one_shot_example(train, seed=s)[0] for s in range(10)}) > 1  # seed matters
    # order of the training list does not change the pick
    assert one_shot_example(list(reversed(train)), seed=42)[0] == ctx
    prompt = one_shot_prompt("The dog", ctx, answers)
    assert ctx in prompt and "mat, mat, dogs" in prompt
    with pytest.raises(InputError, match="training split is empty"):
        one_shot_example([], seed=1)


# ----------------------------------------------------------------------------- configs


def test_lora_config_matches_appendix_b(tiny_chat_llama):
    cfg = lora_config(tiny_chat_llama)
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (8, 16, 0.05)
    assert set(cfg.target_modules) == set(LORA_TARGET_MODULES)
    assert cfg.task_type == "CAUSAL_LM"


def test_lora_config_rejects_model_without_targets():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(InputError, match="target_modules"):
        lora_config(gpt2)


def test_qlora_config_is_nf4_double_quant_bf16():
    q = qlora_quantization_config()
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.bfloat16


def test_qlora_available_reports_reason():
    ok, reason = qlora_available()
    try:
        import bitsandbytes  # noqa: F401
    except Exception:
        assert not ok and "bitsandbytes" in reason
    else:
        assert ok


def test_sft_config_cpu_defaults(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CPU defaults")
    cfg = VarSFTConfig(str(tmp_path))  # recipe sft
    assert cfg.bf16 is False and cfg.use_cpu
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 32
    assert (cfg.learning_rate, cfg.num_train_epochs, cfg.seed) == (1e-4, 4, 42)
    assert cfg.completion_only_loss
    with pytest.raises(InputError, match="multiple"):
        VarSFTConfig(str(tmp_path), batch_size=32, per_device_batch_size=5)


def test_batch_fields_changed_after_construction_are_refused_before_training(tmp_path, tiny_chat_llama,
                                                                             tiny_chat_tokenizer):
    cfg = VarSFTConfig(str(tmp_path))
    cfg.check_batches()  # as built: consistent
    cfg.batch_size = 64  # the Trainer's per-device batch and accumulation were derived for 32 rows
    with pytest.raises(InputError, match="batch_size 64 .* changed after the config was built"):
        train_instruct(tiny_chat_llama, tiny_chat_tokenizer, [], None, cfg)


# ----------------------------------------------------------------------------- loss mask


def test_loss_mask_covers_completion_only(tmp_path, tiny_chat_llama, tiny_chat_tokenizer):
    tok = tiny_chat_tokenizer
    ds = build_sft_dataset(RECORDS)
    trainer = make_sft_trainer(tiny_chat_llama, tok, ds, args=_sft_args(tmp_path),
                                   peft_config=lora_config(tiny_chat_llama))
    prepared = trainer.train_dataset
    assert len(prepared) == len(ds)
    for i, row in enumerate(prepared):
        word = ds[i]["completion"][0]["content"]
        prompt_ids, completion_ids = chat_token_ids(tok, instruction_prompt(RECORDS[0 if i < 6 else 1]["context"]), word)
        ids, labels = row["input_ids"], row["labels"]
        assert ids == prompt_ids + completion_ids  # same tokens as the var path
        n = len(prompt_ids)
        assert all(lab == -100 for lab in labels[:n])
        assert labels[n:] == completion_ids
        assert tok.decode(completion_ids) == f"{word}<|im_end|>\n"
    # and the collator keeps that mask
    batch = trainer.data_collator([prepared[0], prepared[7]])
    for b in range(2):
        kept = batch["labels"][b][batch["labels"][b] != -100].tolist()
        assert tok.decode(kept).endswith("<|im_end|>\n")


def test_make_sft_trainer_needs_model_object(tiny_chat_tokenizer):
    with pytest.raises(InputError, match="loaded model"):
        make_sft_trainer("smollm2-gguf", tiny_chat_tokenizer, build_sft_dataset(RECORDS))


# ----------------------------------------------------------------------------- training + adapter


def _completion_nll(model, tok, records):
    """Mean completion-token NLL over the augmented rows, computed by hand."""
    total, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for r in sft_rows(records):
            p, c = chat_token_ids(tok, r["prompt"][0]["content"], r["completion"][0]["content"])
            ids = torch.tensor([p + c])
            logp = model(input_ids=ids).logits.log_softmax(-1)[0, len(p) - 1 : -1]
            total -= logp.gather(-1, torch.tensor(c)[:, None]).sum().item()
            n += len(c)
    return total / n


def test_lora_sft_reduces_loss_and_adapter_round_trips(tmp_path, tiny_chat_llama, tiny_chat_tokenizer):
    from peft import AutoPeftModelForCausalLM, PeftModel

    from tests.conftest import make_tiny_llama

    tok = tiny_chat_tokenizer
    base_dir = tmp_path / "base"
    tiny_chat_llama.save_pretrained(base_dir)  # AutoPeft reloads the base from this "Hub id"
    before = _completion_nll(tiny_chat_llama, tok, RECORDS)
    cfg = VarSFTConfig(
        output_dir=str(tmp_path / "adapter"), recipe="sft", learning_rate=5e-2, batch_size=9,
        per_device_batch_size=9, max_steps=8, logging_steps=1, base_model_id=str(base_dir), data="unit-test",
    )
    trainer = train_instruct(tiny_chat_llama, tok, RECORDS, None, cfg)
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 8
    model = trainer.model.eval()
    after = _completion_nll(model, tok, RECORDS)
    assert after < before - 0.2, (before, after)

    out = tmp_path / "adapter"
    run = json.loads((out / "varylm_run.json").read_text())
    assert {"base_model", "recipe", "label_mode", "word_prob_definition", "split", "seed", "hyperparameters"} <= set(run)
    assert run["base_model"] == str(base_dir) and run["recipe"] == "sft" and run["hyperparameters"]["qlora"] is False
    card = (out / "README.md").read_text()
    assert "library_name: peft" in card and f"base_model: {base_dir}" in card and "sft recipe" in card
    assert "More Information Needed" not in card and run["train_rows"] == 9
    assert (out / "adapter_model.safetensors").exists()

    ids = torch.tensor([sum(chat_token_ids(tok, instruction_prompt("The cat"), "sat"), [])])
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        fresh = make_tiny_llama(tok)  # same seed = same base weights
        reloaded = PeftModel.from_pretrained(fresh, out).eval()
        torch.testing.assert_close(reloaded(input_ids=ids).logits, ref, rtol=0, atol=1e-6)
        auto = AutoPeftModelForCausalLM.from_pretrained(out).eval()
        torch.testing.assert_close(auto(input_ids=ids).logits, ref, rtol=0, atol=1e-6)


def test_var_sft_config_is_trls_sft_config_with_the_recipes_options():
    from trl import SFTConfig

    with pytest.raises(InputError, match="--recipe"):
        VarSFTConfig(recipe="dpo")
    with pytest.raises(InputError, match="--label_mode"):
        VarSFTConfig(label_mode="some")
    with pytest.raises(InputError, match="--per_device_train_batch_size 3: the instruct recipes count augmented rows"):
        VarSFTConfig(per_device_train_batch_size=3)
    cfg = VarSFTConfig(recipe="var", label_mode="majority", save_steps=5, run_extra='{"note": "x"}')
    assert isinstance(cfg, SFTConfig) and cfg.output_dir == "runs/instruct-var-majority"
    assert (cfg.save_strategy, cfg.run_extra, cfg.completion_only_loss, cfg.data_seed) == ("steps", {"note": "x"}, True, 42)
    assert VarSFTConfig().save_strategy == "no"  # save_steps 0: no checkpoints
    if not torch.cuda.is_available():
        assert (cfg.bf16, cfg.use_cpu, cfg.activation_checkpointing) == (False, True, False)


def test_train_instruct_refuses_the_trainers_push(tiny_chat_llama, tiny_chat_tokenizer, tmp_path):
    cfg = VarSFTConfig(str(tmp_path / "out"), recipe="var", push_to_hub=True, hub_model_id="me/x")
    with pytest.raises(InputError, match="push_adapter"):
        train_instruct(tiny_chat_llama, tiny_chat_tokenizer, RECORDS, None, cfg)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- var path


def test_var_units_hold_trl_tokens(tiny_chat_tokenizer):
    tok = tiny_chat_tokenizer
    units = var_units(RECORDS, tok)
    assert [u["id"] for u in units] == ["t-01-002", "t-01-003"]
    assert units[0]["counts"] == [3, 2, 1]
    for u, rec in zip(units, RECORDS):
        for w_ids, ans in zip(u["word_ids"], rec["answers"]):
            p, c = chat_token_ids(tok, instruction_prompt(rec["context"]), ans["word"])
            assert u["context_ids"] == p and w_ids == c


@pytest.mark.parametrize("strategy", ["passage", "tree", "context"])
def test_var_loss_equals_sft_loss_on_augmented_rows(tmp_path, tiny_chat_llama, tiny_chat_tokenizer, strategy):
    pytest.importorskip("varylm_hf.scoring")
    tok = tiny_chat_tokenizer
    model = tiny_chat_llama
    # SFT: all augmented rows in one batch -> TRL's token-mean loss
    ds = build_sft_dataset(RECORDS)
    trainer = make_sft_trainer(model, tok, ds, args=_sft_args(tmp_path, batch_size=9, per_device_batch_size=9))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ds))])
    with torch.no_grad():
        sft_loss = trainer.compute_loss(model, batch)
    units = var_units(RECORDS, tok)
    collated = {k: [u[k] for u in units] for k in ("context_ids", "word_ids", "counts")}
    with torch.no_grad():
        var_loss, rows = var_sft_loss(model, collated, strategy=strategy)
    assert rows == 9
    torch.testing.assert_close(var_loss, sft_loss, rtol=1e-5, atol=1e-5)
    # per-row normalisation: mean over rows of each row's summed completion NLL
    with torch.no_grad():
        var_rows, _ = var_sft_loss(model, collated, normalize="rows", strategy=strategy)
    n_tokens = sum(n * len(w) for u in units for n, w in zip(u["counts"], u["word_ids"]))
    torch.testing.assert_close(var_rows, sft_loss * n_tokens / 9, rtol=1e-5, atol=1e-5)


def test_var_recipe_trains(tmp_path, tiny_chat_llama, tiny_chat_tokenizer):
    pytest.importorskip("varylm_hf.scoring")
    tok = tiny_chat_tokenizer
    before = _completion_nll(tiny_chat_llama, tok, RECORDS)
    # 9 rows per step over contexts of 6 and 3 answers (mean 4.5): two whole contexts per step
    cfg = VarSFTConfig(output_dir=str(tmp_path / "var"), recipe="var", learning_rate=5e-2,
                       batch_size=9, max_steps=8, logging_steps=1)
    trainer = train_instruct(tiny_chat_llama, tok, RECORDS, RECORDS, cfg)
    assert trainer.args.per_device_train_batch_size == 2 and trainer.args.gradient_accumulation_steps == 1
    assert sum("loss" in h for h in trainer.state.log_history) == 8
    assert any("eval_loss" in h for h in trainer.state.log_history)
    assert _completion_nll(trainer.model.eval(), tok, RECORDS) < before - 0.2
    run = json.loads((tmp_path / "var" / "varylm_run.json").read_text())
    hp = run["hyperparameters"]
    assert run["recipe"] == "var" and run["train_rows"] == 9
    assert (hp["batch_size"], hp["batch_unit"], hp["contexts_per_micro_batch"]) == (9, "rows", 2)
    assert "batch 9 rows" in (tmp_path / "var" / "README.md").read_text()


def test_var_micro_batch_splits_the_contexts_of_a_step(tmp_path, tiny_chat_llama, tiny_chat_tokenizer):
    """9 rows per step = 2 contexts of this data; micro-batches of 3 rows: 1 context each, 2 accumulation steps
    (never more rows per step than asked by accumulating whole-context micro-batches)."""
    cfg = VarSFTConfig(output_dir=str(tmp_path / "var"), recipe="var", batch_size=9,
                       per_device_batch_size=3, max_steps=1, logging_steps=1)
    lora = paper_model_config(lora_r=4, load_in_4bit=False)  # TRL's ModelConfig: the adapter's settings
    trainer = train_instruct(tiny_chat_llama, tiny_chat_tokenizer, RECORDS, None, cfg, model_config=lora)
    assert (trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps) == (1, 2)
    assert (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (3, 3)  # the config is left as it is
    run = json.loads((tmp_path / "var" / "varylm_run.json").read_text())
    assert (run["hyperparameters"]["lora_r"], run["hyperparameters"]["lora_alpha"]) == (4, 16)
    assert json.loads((tmp_path / "var" / "adapter_config.json").read_text())["r"] == 4


def test_batch_unit_is_rows_in_both_recipes():
    assert batch_rows("sft", None, None, cuda=True) == (32, 8)
    assert batch_rows("var", None, None, cuda=True) == (32, 32)
    assert batch_rows("var", 64, 16) == (64, 16)
    with pytest.raises(InputError, match="--batch_size 32 must be a multiple of --per_device_batch_size 5"):
        batch_rows("var", 32, 5)
    # Provo-like contexts of ~40 answers: the paper's 32 rows are one whole context; one answer each: 32 contexts
    assert contexts_per_batch(32, [38, 41, 40]) == 1
    assert contexts_per_batch(32, [1] * 50) == 32
    assert contexts_per_batch(256, [40] * 10) == 6
    with pytest.raises(InputError, match="no contexts"):
        contexts_per_batch(32, [])
    with pytest.raises(InputError, match="--group_by_passage: only for --recipe var"):
        VarSFTConfig(recipe="sft", group_by_passage=True)


def test_var_group_by_passage_batches_one_passage_at_a_time(tmp_path, tiny_chat_llama, tiny_chat_tokenizer):
    from transformers import TrainingArguments

    recs = [dict(RECORDS[i % 2], id=f"p{p}-{i}", passage_id=p, context=f"{RECORDS[i % 2]['context']} {p} {i}")
            for p in (1, 2, 3) for i in range(4)]
    units = var_units(recs, tiny_chat_tokenizer)
    assert [u["passage_id"] for u in units] == [p for p in (1, 2, 3) for _ in range(4)]
    args = TrainingArguments(str(tmp_path), use_cpu=True, remove_unused_columns=False, report_to="none",
                             per_device_train_batch_size=4, seed=5)
    orders = []
    for epoch in (0, 1):
        trainer = VarSFTTrainer(model=tiny_chat_llama, args=args, train_dataset=build_var_dataset(recs, tiny_chat_tokenizer),
                                    group_by_passage=True)
        sampler = trainer._get_train_sampler()
        sampler.set_epoch(epoch)
        order = list(sampler)
        passages = [units[i]["passage_id"] for i in order]
        assert [len(set(passages[k:k + 4])) for k in range(0, 12, 4)] == [1, 1, 1]  # each batch: one passage
        assert sorted(order) == list(range(12)) and order != sorted(order)
        orders.append(order)
    assert orders[0] != orders[1]  # reshuffled per epoch


def test_passage_trie_shares_the_prompt_across_contexts(tiny_chat_tokenizer):
    """A batch of contexts of one passage costs fewer tokens as one trie than as one trie per context."""
    from varylm_hf.scoring import _build_forest

    recs = [dict(RECORDS[1], id=f"c{i}", context=" ".join("The cat sat on the mat and".split()[: 2 + i]))
            for i in range(5)]
    units = var_units(recs, tiny_chat_tokenizer)
    ctx, words = [u["context_ids"] for u in units], [u["word_ids"] for u in units]
    merged = len(_build_forest(ctx, words, False, True)[0])
    separate = len(_build_forest(ctx, words, False, False)[0])
    prompt_tokens = sum(len(c) for c in ctx)
    assert separate >= prompt_tokens and merged < separate - 3 * len(ctx[0]) // 2


@pytest.mark.gguf
def test_gguf_model_can_be_trained_with_lora(tmp_path):
    from transformers import TrainingArguments

    from varylm_hf.modeling import load_model_and_tokenizer, offline_model_path

    try:
        offline_model_path()
    except InputError:
        pytest.skip("offline SmolLM2 GGUF not installed")
    model, tok = load_model_and_tokenizer("smollm2-gguf")
    assert unmark_gguf_quantization(model) and not unmark_gguf_quantization(model)
    units = var_units(RECORDS[1:], tok)
    assert tok.decode(units[0]["word_ids"][0]) == "mat<|im_end|>\n"
    from peft import get_peft_model

    args = TrainingArguments(str(tmp_path), use_cpu=True, remove_unused_columns=False, report_to="none")
    VarSFTTrainer(model=get_peft_model(model, lora_config(model)), args=args,
                      train_dataset=build_var_dataset(RECORDS[1:], tok))  # Trainer accepts it


def test_corpus_and_majority_targets_are_normalised_like_the_answers():
    rec = {"id": "r", "context": "I bought an", "corpus_word": "Apple.", "majority": "apple",
           "answers": [{"word": "apple", "count": 3}, {"word": "orange", "count": 1}], "num_answers": 4}
    assert label_counts(rec, "corpus") == [("apple", 1)]
    assert label_counts(rec, "majority") == [("apple", 1)]


# ----------------------------------------------------------------------------- bf16 mixed precision


def _lora_model(tiny_chat_llama):
    from peft import get_peft_model

    return get_peft_model(tiny_chat_llama, lora_config(tiny_chat_llama, lora_dropout=0.0))


def test_frozen_linear_weights_are_held_in_bf16_and_restored_bit_for_bit(tiny_chat_llama, tiny_chat_tokenizer):
    from varylm_hf.training.adapters import frozen_linear_weights_in

    model = _lora_model(tiny_chat_llama)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    units = var_units(RECORDS, tiny_chat_tokenizer)
    batch = {k: [u[k] for u in units] for k in ("context_ids", "word_ids", "counts")}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = float(var_sft_loss(model, batch)[0])
    with frozen_linear_weights_in(model, torch.bfloat16) as n:
        dtypes = {n: p.dtype for n, p in model.named_parameters()}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            held = float(var_sft_loss(model, batch)[0])
    # 2 layers x 7 projections and the (untied) head; embedding, norms and LoRA weights stay float32
    assert not tiny_chat_llama.config.tie_word_embeddings and n == 15
    assert {k for k, d in dtypes.items() if d == torch.bfloat16} == {
        k for k in dtypes if k.endswith("base_layer.weight") or k.endswith("lm_head.weight")}
    assert all(dtypes[k] == torch.float32 for k in dtypes if "lora_" in k or "embed" in k or "norm" in k)
    assert held == plain  # autocast casts those weights to bf16 anyway: the same numbers
    with torch.no_grad():
        full = float(var_sft_loss(model, batch)[0])
    assert held != full and abs(held - full) < 0.05 * abs(full)  # bf16 matmuls: close to, not equal to, float32
    for name, p in model.named_parameters():
        assert p.dtype == before[name].dtype and torch.equal(p, before[name]), name


def test_frozen_linear_weights_are_restored_after_an_error(tiny_chat_llama):
    from varylm_hf.training.adapters import frozen_linear_weights_in

    model = _lora_model(tiny_chat_llama)
    with pytest.raises(RuntimeError, match="stop"), frozen_linear_weights_in(model, torch.bfloat16):
        raise RuntimeError("stop")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_var_recipe_trains_in_bf16_on_cpu_and_keeps_the_float32_base(tmp_path, tiny_chat_llama, tiny_chat_tokenizer):
    base = {n: p.detach().clone() for n, p in tiny_chat_llama.named_parameters()}
    seen = []  # what a projection sees during training: its weight's dtype, and whether autocast is on
    proj = tiny_chat_llama.model.layers[0].self_attn.q_proj
    proj.register_forward_pre_hook(lambda m, a: seen.append((m.weight.dtype, torch.is_autocast_enabled("cpu"))))
    cfg = VarSFTConfig(output_dir=str(tmp_path / "var"), recipe="var", learning_rate=5e-2, batch_size=9,
                       max_steps=3, logging_steps=1, bf16=True, use_cpu=True)
    trainer = train_instruct(tiny_chat_llama, tiny_chat_tokenizer, RECORDS, None, cfg)
    assert seen and set(seen) == {(torch.bfloat16, True)}
    peft_model = trainer.model
    assert {p.dtype for p in peft_model.parameters()} == {torch.float32}
    for name, p in peft_model.get_base_model().named_parameters():  # the frozen base is the float32 one, unchanged
        if "lora_" not in name:
            assert torch.equal(p, base[name.replace("base_layer.", "")]), name
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in peft_model.named_parameters() if "lora_B" in n)
    run = json.loads((tmp_path / "var" / "varylm_run.json").read_text())
    assert run["hyperparameters"]["bf16"] is True
    assert "bfloat16 mixed precision" in (tmp_path / "var" / "README.md").read_text()


@pytest.mark.parametrize("recipe", ["var", "sft"])
def test_adapter_initialisation_is_set_by_the_seed_alone(tmp_path, tiny_chat_tokenizer, recipe):
    """Two trainings with one seed give the same adapter whatever the global random state was before (a grid of
    cells trains several in one process)."""
    from conftest import make_tiny_llama

    adapters = []
    for i, noise in enumerate((0, 12345)):
        model = make_tiny_llama(tiny_chat_tokenizer)  # (seeds the global generator itself)
        torch.manual_seed(noise)
        cfg = VarSFTConfig(output_dir=str(tmp_path / f"run{i}"), recipe=recipe, batch_size=4, per_device_batch_size=4,
                           max_steps=1, logging_steps=1, seed=5, use_cpu=True, bf16=False)
        trainer = train_instruct(model, tiny_chat_tokenizer, RECORDS, None, cfg)
        adapters.append({n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n})
    assert adapters[0].keys() == adapters[1].keys() and adapters[0]
    for name in adapters[0]:
        assert torch.equal(adapters[0][name], adapters[1][name]), name
