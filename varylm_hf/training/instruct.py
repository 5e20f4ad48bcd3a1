"""The instruction-tuned recipe (paper §3.2, Appendix B): SFT on answer-augmented cloze data.

For every context and every human answer the augmented dataset holds one (prompt, completion)
pair (:mod:`varylm_hf.training.rows`), so a context with 40 answers appears 40 times and the SFT
objective becomes ``sum_c sum_w count(w|c) * -log q(w + end-of-turn | chat prompt)``. Two ways to optimise it:

* ``recipe="sft"``: TRL's :class:`~trl.SFTTrainer` on the augmented rows (conversational
  prompt/completion format, loss on the completion only) — the paper's set-up;
* ``recipe="var"``: the same objective with one row per context: the chat prompt is encoded
  once and every distinct answer is scored as a branch of it by the word-level engine
  (:func:`varylm_hf.scoring.score_token_ids`), each weighted by its count. The completion tokens
  are exactly those TRL trains on (chat template applied to prompt + completion).

The prompt is :func:`varylm_hf.prompts.instruction_prompt`, identical at training and
evaluation time. The configuration is :class:`~varylm_hf.training.sft_config.VarSFTConfig` (TRL's SFTConfig plus
the recipes' options); adapters are LoRA or QLoRA from TRL's ``ModelConfig`` (:mod:`varylm_hf.training.adapters`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from pathlib import Path

import peft
import torch
import transformers
from peft import get_peft_model, prepare_model_for_kbit_training
from transformers.trainer_utils import IntervalStrategy
from trl import SFTTrainer

from ..cards import RUN_CONFIG_FILE, RunFile, render_adapter_card
from ..errors import InputError
from ..modeling import unmark_gguf_quantization
from ..secrets import detach_hub_token
from .adapters import (
    LORA_TARGET_MODULES,
    apply_cpu_4bit_workaround,
    cast_trainable_to_compute_dtype,
    compute_dtype_4bit,
    frozen_linear_weights_in,
    lora_config_from,
    paper_model_config,
)
from .rows import BATCH_UNIT, _on_cuda, build_sft_dataset, build_var_dataset, contexts_per_batch
from .sft_config import VarSFTConfig
from .var_sft import VarSFTTrainer

__all__ = ["make_sft_trainer", "train_instruct", "save_adapter"]

logger = logging.getLogger(__name__)


def make_sft_trainer(model, tokenizer, train_dataset, eval_dataset=None, args=None, peft_config=None):
    """An :class:`trl.SFTTrainer` for augmented prompt/completion data.

    ``model`` must be a model object (SFTTrainer reads ``config.architectures`` from a Hub id,
    which a GGUF folder lacks): load it with :func:`varylm_hf.modeling.load_model_and_tokenizer`.
    ``args`` (a :class:`trl.SFTConfig`) defaults to ``VarSFTConfig(recipe="sft")``, the paper's run;
    ``peft_config`` (e.g. :func:`~varylm_hf.training.adapters.lora_config`) wraps the
    model in a fresh adapter (omit it for a model that is already a PeftModel).
    """
    if isinstance(model, str):
        raise InputError("`model`: pass a loaded model (varylm_hf.modeling.load_model_and_tokenizer), not a name")
    unmark_gguf_quantization(model)
    if args is None:
        args = VarSFTConfig(output_dir="runs/sft", recipe="sft")
    if not args.completion_only_loss:
        raise InputError("`completion_only_loss` must be True: the loss covers the completion (the word) only")
    detach_hub_token(args)  # never pickled into checkpoint-*/training_args.bin
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


# --------------------------------------------------------------------------- end to end


def _training_args(config: VarSFTConfig, **changes) -> VarSFTConfig:
    """A copy of ``config`` with fields the data decides (the Trainer's arguments; ``config`` is left as it is)."""
    args = copy.copy(config)
    for name, value in changes.items():
        setattr(args, name, value)
    args.eval_strategy = IntervalStrategy(args.eval_strategy)
    args.do_eval = args.eval_strategy != IntervalStrategy.NO  # as TrainingArguments.__post_init__ sets it
    return args


def train_instruct(model, tokenizer, train_records, eval_records=None, config: VarSFTConfig | None = None,
                   resume_from_checkpoint: str | None = None, callbacks=None, *, model_config=None):
    """Fine-tune an instruction-tuned model on cloze records with LoRA/QLoRA; save the adapter.

    ``config`` is a :class:`~varylm_hf.training.sft_config.VarSFTConfig` (default: the paper's run);
    ``model_config`` a :class:`trl.ModelConfig` for the adapter (default:
    :func:`~varylm_hf.training.adapters.paper_model_config`: LoRA r=8, alpha=16, dropout 0.05, seven projections).
    ``config.save_steps`` > 0 writes a Trainer checkpoint every that many steps to ``config.output_dir``;
    ``resume_from_checkpoint`` (a checkpoint folder) continues from one. With ``eval_records`` the eval loss is
    computed every epoch (unless ``config.eval_strategy`` says otherwise).

    ``model`` is a loaded causal LM (load QLoRA models with :func:`load_qlora_model`, or with
    ``quantization_config=qlora_quantization_config("auto")``). Trains with ``config.recipe`` and
    writes the adapter, the tokenizer, a PEFT model card and ``varylm_run.json`` to
    ``config.output_dir``. Returns the trainer (``trainer.model`` is the PeftModel,
    ``trainer.state.log_history`` the losses).
    """
    config = config if config is not None else VarSFTConfig()
    config.check_batches()
    if config.push_to_hub:
        raise InputError("--push_to_hub: push the saved adapter with varylm_hf.hub.push_adapter (`varylm push`); the "
                         "Trainer's push uploads its own card and pickles")
    unmark_gguf_quantization(model)
    in_4bit = bool(getattr(model, "is_loaded_in_4bit", False))
    if model_config is not None and model_config.load_in_4bit != in_4bit:
        logger.warning("load_in_4bit=%s but the model is %s 4-bit: recording qlora=%s", model_config.load_in_4bit,
                       "loaded in" if in_4bit else "not loaded in", in_4bit)
    peft_cfg = lora_config_from(model_config if model_config is not None else paper_model_config(), model)
    extra = dict(config.run_extra or {})
    if in_4bit:
        apply_cpu_4bit_workaround(model)  # before any forward: undo a repacking done by an earlier eval
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=_on_cuda())
        extra["bnb_4bit_compute_dtype"] = str(compute_dtype_4bit(model)).replace("torch.", "")
    evaluate = "no" if not eval_records else ("epoch" if config.eval_strategy == "no" else config.eval_strategy)
    # the new adapter's random initialisation from config.seed alone, not from whatever ran before in the process
    # (the Trainer seeds at its own init, after the adapter exists)
    transformers.set_seed(config.seed)
    if config.recipe == "sft":
        args = _training_args(config, eval_strategy=evaluate)
        train_ds = build_sft_dataset(train_records, config.label_mode)
        eval_ds = build_sft_dataset(eval_records, config.label_mode) if eval_records else None
        trainer = make_sft_trainer(model, tokenizer, train_ds, eval_ds, args=args, peft_config=peft_cfg)
        for cb in callbacks or []:
            trainer.add_callback(cb)
    else:
        train_ds = build_var_dataset(train_records, tokenizer, config.label_mode)
        eval_ds = build_var_dataset(eval_records, tokenizer, config.label_mode) if eval_records else None
        # whole contexts per optimizer step from the step's rows, then split over the accumulation steps (a
        # micro-batch smaller than one context cannot be: the accumulation shrinks instead)
        total, per_device = config.batch_size, config.per_device_batch_size
        step_contexts = contexts_per_batch(total, [sum(c) for c in train_ds["counts"]])
        per_contexts = math.ceil(step_contexts / (total // per_device))
        accumulation = math.ceil(step_contexts / per_contexts)
        extra.update(contexts_per_micro_batch=per_contexts, gradient_accumulation_steps=accumulation)
        args = _training_args(config, eval_strategy=evaluate, per_device_train_batch_size=per_contexts,
                              per_device_eval_batch_size=per_contexts, gradient_accumulation_steps=accumulation,
                              remove_unused_columns=False)
        if not hasattr(model, "peft_config"):
            model = get_peft_model(model, peft_cfg)
        detach_hub_token(args)
        trainer = VarSFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, callbacks=callbacks,
                                group_by_passage=config.group_by_passage, strategy=config.scoring_strategy)
    if in_4bit:
        cast_trainable_to_compute_dtype(trainer.model)
    # bf16 autocast over a float32 base: the frozen projections held in bf16 while training (same numbers, no
    # per-call casts), the float32 base back afterwards
    held = frozen_linear_weights_in(trainer.model, torch.bfloat16) if config.bf16 and not in_4bit else contextlib.nullcontext()
    with held:
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    rows = len(train_ds) if config.recipe == "sft" else sum(sum(c) for c in train_ds["counts"])
    if trainer.is_world_process_zero():  # several processes: one writer of the adapter folder
        save_adapter(trainer.model, tokenizer, config.output_dir, config, train_rows=rows, extra=extra)
    return trainer


def _hyperparameters(config: VarSFTConfig, model, extra: dict) -> dict:
    lora = model.peft_config["default"]
    targets = set(lora.target_modules) if not isinstance(lora.target_modules, str) else {lora.target_modules}
    hp = {"learning_rate": config.learning_rate, "batch_size": config.batch_size,
          "per_device_batch_size": config.per_device_batch_size, "num_train_epochs": config.num_train_epochs,
          "max_steps": config.max_steps, "qlora": bool(getattr(model, "is_loaded_in_4bit", False)),
          "lora_r": lora.r, "lora_alpha": lora.lora_alpha, "lora_dropout": lora.lora_dropout, "batch_unit": BATCH_UNIT,
          "bf16": bool(config.bf16)}
    if config.recipe == "var":
        hp["contexts_per_micro_batch"] = extra.get("contexts_per_micro_batch")
        hp["gradient_accumulation_steps"] = extra.get("gradient_accumulation_steps")
        hp["group_by_passage"] = config.group_by_passage
    hp["lora_target_modules"] = [t for t in LORA_TARGET_MODULES if t in targets] + sorted(targets - set(LORA_TARGET_MODULES))
    return hp


def save_adapter(model, tokenizer, output_dir: str, config: VarSFTConfig, train_rows: int | None = None,
                 extra: dict | None = None) -> Path:
    """Save a PeftModel's adapter with a PEFT model card and ``varylm_run.json``; returns the folder.

    ``train_rows`` is the number of augmented (prompt, answer) rows the training data stands for; ``extra`` (default
    ``config.run_extra``) is recorded under ``extra``. The run file is a :class:`~varylm_hf.cards.RunFile`; the card
    is :func:`~varylm_hf.cards.render_adapter_card`. The LoRA hyper-parameters and ``qlora`` are read from the model.

    The card's ``base_model`` is ``config.base_model_id`` (a Hub id, so that
    ``AutoPeftModelForCausalLM`` can fetch the base), falling back to the model's own name.
    """
    extra = config.run_extra if extra is None else extra
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = config.base_model_id or model.peft_config["default"].base_model_name_or_path
    for cfg in model.peft_config.values():
        cfg.base_model_name_or_path = base
    model.save_pretrained(out, save_embedding_layers=False)  # LoRA only; no Hub lookup of the base
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    run = RunFile.from_dict({
        "base_model": base,
        "recipe": config.recipe,
        "label_mode": config.label_mode,
        "word_prob_definition": config.word_prob_definition,
        "split": config.split,
        "seed": config.seed,
        "data": config.data or "provo",
        "train_rows": train_rows,
        "hyperparameters": _hyperparameters(config, model, extra or {}),
        **({"extra": extra} if extra else {}),
    }, out / RUN_CONFIG_FILE)
    run.write(out)  # never a token on disk
    readme = out / "README.md"
    card = render_adapter_card(readme.read_text(encoding="utf-8"), run, out,
                               versions={"PEFT": peft.__version__, "Transformers": transformers.__version__})
    readme.write_text(card, encoding="utf-8")
    return out
