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
evaluation time. Adapters are LoRA or QLoRA (:mod:`varylm_hf.training.adapters`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..cards import RUN_CONFIG_FILE, RunFile, render_adapter_card
from ..data.labels import LABEL_MODES as _ALL_LABEL_MODES
from ..errors import InputError
from ..modeling import unmark_gguf_quantization
from ..options import RECIPES
from ..secrets import detach_hub_token
from .adapters import (
    LORA_TARGET_MODULES,
    apply_cpu_4bit_workaround,
    cast_trainable_to_compute_dtype,
    compute_dtype_4bit,
    lora_config,
)
from .rows import BATCH_UNIT, _on_cuda, batch_rows, build_sft_dataset, build_var_dataset, contexts_per_batch
from .var_sft import VarSFTTrainer

__all__ = [
    "sft_config",
    "make_sft_trainer",
    "InstructConfig",
    "train_instruct",
    "save_adapter",
]

logger = logging.getLogger(__name__)


def sft_config(
    output_dir: str,
    *,
    learning_rate: float = 1e-4,
    total_batch_size: int = 32,
    per_device_batch_size: int | None = None,
    num_train_epochs: float = 4,
    seed: int = 42,
    **overrides,
):
    """A :class:`trl.SFTConfig` with the paper's hyper-parameters (lr 1e-4, batch 32, 4 epochs, seed 42).

    The batch of ``total_batch_size`` rows is reached by gradient accumulation over
    ``per_device_batch_size`` (default 8 on GPU, 4 on CPU). bf16 and gradient checkpointing are
    on only with CUDA (SFTConfig's bf16 default fails on CPU). ``overrides`` go to SFTConfig.
    """
    from trl import SFTConfig

    cuda = _on_cuda()
    total_batch_size, per_device = batch_rows("sft", total_batch_size, per_device_batch_size, cuda=cuda)
    kwargs = dict(
        output_dir=output_dir,
        learning_rate=learning_rate,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=per_device,
        gradient_accumulation_steps=total_batch_size // per_device,
        num_train_epochs=num_train_epochs,
        seed=seed,
        data_seed=seed,
        bf16=cuda and _bf16_ok(),
        gradient_checkpointing=cuda,
        use_cpu=not cuda,
        completion_only_loss=True,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        max_length=1024,
    )
    kwargs.update(overrides)
    return SFTConfig(**kwargs)


def _bf16_ok() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def make_sft_trainer(model, tokenizer, train_dataset, eval_dataset=None, args=None, peft_config=None):
    """An :class:`trl.SFTTrainer` for augmented prompt/completion data.

    ``model`` must be a model object (SFTTrainer reads ``config.architectures`` from a Hub id,
    which a GGUF folder lacks): load it with :func:`varylm_hf.modeling.load_model_and_tokenizer`.
    ``args`` defaults to :func:`sft_config`; ``peft_config`` (e.g. :func:`lora_config`) wraps the
    model in a fresh adapter (omit it for a model that is already a PeftModel).
    """
    from trl import SFTTrainer

    if isinstance(model, str):
        raise InputError("`model`: pass a loaded model (varylm_hf.modeling.load_model_and_tokenizer), not a name")
    unmark_gguf_quantization(model)
    if args is None:
        args = sft_config("runs/sft")
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


@dataclass
class InstructConfig:
    """Everything :func:`train_instruct` needs besides model and data. Defaults: the paper's Mistral run.

    ``batch_size`` and ``per_device_batch_size`` count augmented (prompt, answer) rows in both recipes
    (default 32 per step, the paper's; :func:`batch_rows`). ``recipe="var"`` keeps a context's answers
    together and takes :func:`contexts_per_batch` whole contexts per micro-batch (Provo: one context of
    ~40 answers for the paper's 32 rows). ``group_by_passage`` (``var`` only) batches contexts of one
    passage together, shuffled per epoch: the speed option of the shared trie (the default, as the
    paper, shuffles contexts freely).
    """

    output_dir: str = "runs/instruct"
    recipe: str = "sft"
    label_mode: str = "all"
    qlora: bool = True
    learning_rate: float = 1e-4
    batch_size: int | None = None
    per_device_batch_size: int | None = None
    num_train_epochs: float = 4
    max_steps: int = -1
    seed: int = 42
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    logging_steps: int = 10
    save_steps: int = 0  # a resumable checkpoint-N every N optimizer steps (0: none)
    group_by_passage: bool = False
    report_to: str | list[str] = "none"  # TrainingArguments.report_to: "none", "tensorboard", "wandb", "all"...
    base_model_id: str | None = None
    word_prob_definition: str = "paper"
    split: str = "paper"
    data: str = "provo"
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        """Raise :class:`InputError` on a bad value."""
        if self.recipe not in RECIPES:
            raise InputError(f"--recipe {self.recipe}: expected one of {', '.join(RECIPES)}")
        view = _ALL_LABEL_MODES.get(self.label_mode)
        if view is None or view.needs_k:  # the registry, read now: a view registered after import counts
            names = [n for n, v in _ALL_LABEL_MODES.items() if not v.needs_k]
            raise InputError(f"--label_mode {self.label_mode}: expected one of {', '.join(names)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"--batch_size {self.batch_size}: must be >= 1")
        import math

        if self.per_device_batch_size is not None and self.per_device_batch_size < 1:
            raise InputError(f"--per_device_batch_size {self.per_device_batch_size}: must be >= 1")
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise InputError(f"--learning_rate {self.learning_rate}: must be a positive finite number")
        if self.max_steps <= 0 and (not math.isfinite(self.num_train_epochs) or self.num_train_epochs <= 0):
            raise InputError(f"--num_train_epochs {self.num_train_epochs}: must be a positive finite number")
        if self.logging_steps < 1:
            raise InputError(f"--logging_steps {self.logging_steps}: must be >= 1")
        if self.save_steps < 0:
            raise InputError(f"--save_steps {self.save_steps}: must be >= 0 (0: no checkpoints)")
        if self.group_by_passage and self.recipe != "var":
            raise InputError("--group_by_passage: only for --recipe var (TRL's SFTTrainer shuffles rows itself)")
        batch_rows(self.recipe, self.batch_size, self.per_device_batch_size)


def train_instruct(model, tokenizer, train_records, eval_records=None, config: InstructConfig | None = None,
                   resume_from_checkpoint: str | None = None, callbacks=None):
    """Fine-tune an instruction-tuned model on cloze records with LoRA/QLoRA; save the adapter.

    ``config.save_steps`` > 0 writes a Trainer checkpoint every that many steps to
    ``config.output_dir``; ``resume_from_checkpoint`` (a checkpoint folder) continues from one.

    ``model`` is a loaded causal LM (load QLoRA models with :func:`load_qlora_model`, or with
    ``quantization_config=qlora_quantization_config("auto")``). Trains with ``config.recipe`` and
    writes the adapter, the tokenizer, a PEFT model card and ``varylm_run.json`` to
    ``config.output_dir``. Returns the trainer (``trainer.model`` is the PeftModel,
    ``trainer.state.log_history`` the losses).
    """
    import dataclasses

    config = config or InstructConfig()
    config.check()
    from peft import get_peft_model

    unmark_gguf_quantization(model)
    in_4bit = bool(getattr(model, "is_loaded_in_4bit", False))
    if config.qlora != in_4bit:
        logger.warning("qlora=%s but the model is %s 4-bit: recording qlora=%s", config.qlora,
                       "loaded in" if in_4bit else "not loaded in", in_4bit)
        config = dataclasses.replace(config, qlora=in_4bit)
    if in_4bit:
        from peft import prepare_model_for_kbit_training

        apply_cpu_4bit_workaround(model)  # before any forward: undo a repacking done by an earlier eval
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=_on_cuda())
        dtype = str(compute_dtype_4bit(model)).replace("torch.", "")
        config = dataclasses.replace(config, extra={**config.extra, "bnb_4bit_compute_dtype": dtype})
    peft_cfg = lora_config(model, r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout)
    common = dict(
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        seed=config.seed,
        logging_steps=config.logging_steps,
        eval_strategy="epoch" if eval_records else "no",
        save_strategy="steps" if config.save_steps else "no",
        **({"save_steps": config.save_steps} if config.save_steps else {}),
        report_to=config.report_to,
    )
    total, per_device = batch_rows(config.recipe, config.batch_size, config.per_device_batch_size)
    if config.recipe == "sft":
        args = sft_config(
            config.output_dir,
            total_batch_size=total,
            per_device_batch_size=per_device,
            **common,
        )
        train_ds = build_sft_dataset(train_records, config.label_mode)
        eval_ds = build_sft_dataset(eval_records, config.label_mode) if eval_records else None
        trainer = make_sft_trainer(model, tokenizer, train_ds, eval_ds, args=args, peft_config=peft_cfg)
        for cb in callbacks or []:
            trainer.add_callback(cb)
    else:
        from transformers import TrainingArguments

        train_ds = build_var_dataset(train_records, tokenizer, config.label_mode)
        eval_ds = build_var_dataset(eval_records, tokenizer, config.label_mode) if eval_records else None
        # whole contexts per optimizer step from the step's rows, then split over the accumulation steps (a
        # micro-batch smaller than one context cannot be: the accumulation shrinks instead)
        step_contexts = contexts_per_batch(total, [sum(c) for c in train_ds["counts"]])
        per_contexts = math.ceil(step_contexts / (total // per_device))
        accumulation = math.ceil(step_contexts / per_contexts)
        config = dataclasses.replace(config, extra={**config.extra, "contexts_per_micro_batch": per_contexts,
                                                    "gradient_accumulation_steps": accumulation})
        cuda = _on_cuda()
        args = TrainingArguments(
            output_dir=config.output_dir,
            per_device_train_batch_size=per_contexts,
            per_device_eval_batch_size=per_contexts,
            gradient_accumulation_steps=accumulation,
            data_seed=config.seed,
            bf16=cuda and _bf16_ok(),
            use_cpu=not cuda,
            remove_unused_columns=False,
            **common,
        )
        if not hasattr(model, "peft_config"):
            model = get_peft_model(model, peft_cfg)
        detach_hub_token(args)
        trainer = VarSFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, callbacks=callbacks,
                                group_by_passage=config.group_by_passage)
    if in_4bit:
        cast_trainable_to_compute_dtype(trainer.model)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    rows = len(train_ds) if config.recipe == "sft" else sum(sum(c) for c in train_ds["counts"])
    if trainer.is_world_process_zero():  # several processes: one writer of the adapter folder
        save_adapter(trainer.model, tokenizer, config.output_dir, config, train_rows=rows)
    return trainer


def _hyperparameters(config: InstructConfig) -> dict:
    keys = ("learning_rate", "batch_size", "per_device_batch_size", "num_train_epochs", "max_steps", "qlora",
            "lora_r", "lora_alpha", "lora_dropout")
    hp = {k: getattr(config, k) for k in keys}
    hp["batch_size"], hp["per_device_batch_size"] = batch_rows(config.recipe, config.batch_size,
                                                               config.per_device_batch_size)
    hp["batch_unit"] = BATCH_UNIT
    if config.recipe == "var":
        hp["contexts_per_micro_batch"] = (config.extra or {}).get("contexts_per_micro_batch")
        hp["gradient_accumulation_steps"] = (config.extra or {}).get("gradient_accumulation_steps")
        hp["group_by_passage"] = config.group_by_passage
    hp["lora_target_modules"] = list(LORA_TARGET_MODULES)
    return hp


def save_adapter(model, tokenizer, output_dir: str, config: InstructConfig, train_rows: int | None = None) -> Path:
    """Save a PeftModel's adapter with a PEFT model card and ``varylm_run.json``; returns the folder.

    ``train_rows`` is the number of augmented (prompt, answer) rows the training data stands for. The run file
    is a :class:`~varylm_hf.cards.RunFile`; the card is :func:`~varylm_hf.cards.render_adapter_card`.

    The card's ``base_model`` is ``config.base_model_id`` (a Hub id, so that
    ``AutoPeftModelForCausalLM`` can fetch the base), falling back to the model's own name.
    """
    import peft
    import transformers

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
        "data": config.data,
        "train_rows": train_rows,
        "hyperparameters": _hyperparameters(config),
        **({"extra": config.extra} if config.extra else {}),
    }, out / RUN_CONFIG_FILE)
    run.write(out)  # never a token on disk
    readme = out / "README.md"
    card = render_adapter_card(readme.read_text(encoding="utf-8"), run, out,
                               versions={"PEFT": peft.__version__, "Transformers": transformers.__version__})
    readme.write_text(card, encoding="utf-8")
    return out
