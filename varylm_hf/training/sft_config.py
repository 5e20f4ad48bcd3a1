"""VarSFTConfig: TRL's :class:`~trl.SFTConfig` plus the options of varylm's instruction-tuned recipes.

Every SFTConfig / TrainingArguments field keeps its meaning; the defaults are the paper's Mistral run
(lr 1e-4, 32 augmented rows per step, 4 epochs, seed 42, loss on the completion only). The model and its
LoRA/QLoRA adapter are TRL's :class:`~trl.ModelConfig` (:func:`varylm_hf.training.adapters.paper_model_config`).

>>> # config = VarSFTConfig(recipe="var", label_mode="all", batch_size=32)   # output_dir runs/instruct-var-all
>>> # trainer = train_instruct(model, tokenizer, train_records, None, config, model_config=paper_model_config())
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from trl import SFTConfig

from ..data.labels import LABEL_MODES as _ALL_LABEL_MODES
from ..errors import InputError
from ..options import RECIPES, STRATEGIES, TRAINING_DEFINITIONS, WORD_DEFINITIONS, choices_help
from .rows import DEFAULT_BATCH_ROWS, LABEL_MODES, _on_cuda, batch_rows

__all__ = ["VarSFTConfig"]

#: Fields the recipes derive from ``batch_size`` / ``per_device_batch_size`` (augmented rows).
_DERIVED = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
_DERIVED_HELP = ("Derived from --batch_size and --per_device_batch_size (augmented rows; `var` turns them into "
                 "whole contexts at train time): leave unset.")


def _bf16_ok() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass
class VarSFTConfig(SFTConfig):
    r"""Configuration of :func:`~varylm_hf.training.instruct.train_instruct`: :class:`~trl.SFTConfig` plus varylm's options.

    Parameters of the recipe:
        recipe (`str`, defaults to `"sft"`): `sft` (TRL's SFTTrainer on the augmented rows, the paper) or `var`
            (the same objective with one row per context, :mod:`varylm_hf.training.var_sft`).
        label_mode (`str`, defaults to `"all"`): which human answers become completions, a label view of
            `varylm_hf.data.LABEL_MODES` that needs no `k` (read when the config is built: a view registered
            later counts).
        batch_size (`int` or `None`, defaults to `None`): augmented (prompt, answer) rows per optimizer step in
            both recipes (`None`: 32, the paper's); `var` takes whole contexts, round(rows / answers per context).
        per_device_batch_size (`int` or `None`, defaults to `None`): rows per micro-batch (`None`: 8 on CUDA / 4
            on CPU for `sft`, the whole step for `var`); the rest is gradient accumulation.
        group_by_passage (`bool`, defaults to `False`): `var` only: batch contexts of one passage together.
        scoring_strategy (`str`, defaults to `"passage"`): `var` only: how the answers are scored (same loss).

    Parameters recorded in `varylm_run.json`:
        word_prob_definition, split, data, base_model_id (the Hub id of the base model), run_extra.

    NOTE: defaults that differ from SFTConfig: `output_dir=None` (-> `runs/instruct-<recipe>-<label_mode>`),
    `learning_rate=1e-4`, `num_train_epochs=4`, `save_steps=0` (no checkpoints; > 0: one every N steps),
    `completion_only_loss=True`, and device-dependent ones: `bf16` and (for `sft`) `activation_checkpointing` only
    on CUDA, `use_cpu` without CUDA, `data_seed=seed`. `per_device_train_batch_size`,
    `per_device_eval_batch_size` and `gradient_accumulation_steps` are derived from the two row counts.
    """

    recipe: str = field(default="sft", metadata={"help": "The instruct recipe: " + choices_help(RECIPES) + ".",
                                                 "choices": list(RECIPES)})
    label_mode: str = field(default="all", metadata={
        "help": "Which human answers become completions (checked against varylm_hf.data.LABEL_MODES, so a view "
                "registered before the config is built counts): "
                + "; ".join(f"{n}: {_ALL_LABEL_MODES[n].description}" for n in LABEL_MODES) + "."})
    batch_size: int | None = field(default=None, metadata={
        "help": f"Augmented (prompt, answer) rows per optimizer step, both recipes (default {DEFAULT_BATCH_ROWS}, "
                "the paper's); var takes whole contexts: round(rows / answers per context), at least one."})
    per_device_batch_size: int | None = field(default=None, metadata={
        "help": "Rows per micro-batch (default: 8 on GPU / 4 on CPU for sft, the whole step for var); the rest is "
                "gradient accumulation."})
    group_by_passage: bool = field(default=False, metadata={
        "help": "var only: batch contexts of one passage together (shuffled per epoch) so that their prompts share "
                "the passage text in one token trie (the speed option)."})
    scoring_strategy: str = field(default="passage", metadata={
        "help": "var only: how the answers are scored, all with the same loss: " + choices_help(STRATEGIES) + ".",
        "choices": list(STRATEGIES)})
    word_prob_definition: str = field(default="paper", metadata={
        "help": "Recorded in varylm_run.json: the word probability the run is evaluated with: "
                + choices_help({k: WORD_DEFINITIONS[k] for k in TRAINING_DEFINITIONS})
                + " (the loss covers the completion tokens, end of turn included, either way).",
        "choices": list(TRAINING_DEFINITIONS)})
    split: str = field(default="paper", metadata={"help": "Passage split of the packaged Provo norms."})
    data: str | None = field(default=None, metadata={
        "help": "How varylm_run.json and the card name the training data (default: provo)."})
    base_model_id: str | None = field(default=None, metadata={
        "help": "Hub id recorded as the adapter's base model (default: the model's own name)."})
    run_extra: dict | str | None = field(default=None, metadata={
        "help": "A JSON object of extra keys recorded under `extra` in varylm_run.json."})

    output_dir: str | None = field(default=None, metadata={
        "help": "Where the adapter, its card and varylm_run.json go (default: runs/instruct-<recipe>-<label_mode>)."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Initial learning rate (paper: 1e-4)."})
    num_train_epochs: float = field(default=4, metadata={"help": "Training epochs (paper: 4)."})
    save_steps: float = field(default=0, metadata={
        "help": "Write a resumable checkpoint-N to --output_dir every N steps (default 0: none)."})
    completion_only_loss: bool | None = field(default=True, metadata={
        "help": "Loss on the completion (the word) only; the recipes need True."})
    activation_checkpointing: bool | None = field(default=None, metadata={
        "help": "Activation (gradient) checkpointing (default: on with CUDA for sft, off otherwise)."})
    gradient_checkpointing: bool | None = field(default=None, metadata={
        "help": "Deprecated name of --activation_checkpointing (transformers 5.24)."})
    per_device_train_batch_size: int | None = field(default=None, metadata={"help": _DERIVED_HELP})
    per_device_eval_batch_size: int | None = field(default=None, metadata={"help": _DERIVED_HELP})
    gradient_accumulation_steps: int | None = field(default=None, metadata={"help": _DERIVED_HELP})

    _VALID_DICT_FIELDS = SFTConfig._VALID_DICT_FIELDS + ["run_extra"]

    def __post_init__(self):
        self.check()
        cuda = _on_cuda()
        self.batch_size, per_device = batch_rows(self.recipe, self.batch_size, self.per_device_batch_size, cuda=cuda)
        self.per_device_batch_size = per_device
        derived = (per_device, per_device, self.batch_size // per_device)
        for name, value in zip(_DERIVED, derived):
            given = getattr(self, name)
            if given is not None and given != value:
                raise InputError(f"--{name} {given}: the instruct recipes count augmented rows; set --batch_size "
                                 "(rows per step) and --per_device_batch_size (rows per micro-batch) instead")
            setattr(self, name, value)
        if self.output_dir is None:
            self.output_dir = f"runs/instruct-{self.recipe}-{self.label_mode}"
        if self.save_strategy == "steps" and not self.save_steps:
            self.save_strategy = "no"
        if self.data_seed is None:
            self.data_seed = self.seed
        if self.bf16 is None:
            self.bf16 = cuda and _bf16_ok()
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = cuda and self.recipe == "sft"
        self.use_cpu = self.use_cpu or not cuda
        super().__post_init__()  # parses a JSON run_extra (_VALID_DICT_FIELDS)
        if self.run_extra is not None and not isinstance(self.run_extra, dict):
            raise InputError(f"--run_extra {self.run_extra!r}: expected a JSON object")

    def check(self) -> None:
        """Raise :class:`InputError` (one line naming the flag) on a bad value; called when the config is built."""
        # the label-view registry is read now: a view registered after import counts
        label_modes = [n for n, v in _ALL_LABEL_MODES.items() if not v.needs_k]
        for name, options in (("recipe", RECIPES), ("label_mode", label_modes),
                              ("word_prob_definition", TRAINING_DEFINITIONS), ("scoring_strategy", STRATEGIES)):
            if getattr(self, name) not in options:
                raise InputError(f"--{name} {getattr(self, name)}: expected one of {', '.join(options)}")
        for name in ("batch_size", "per_device_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name} {value}: must be >= 1")
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise InputError(f"--learning_rate {self.learning_rate}: must be a positive finite number")
        if self.max_steps == 0 or self.max_steps < -1:
            raise InputError(f"--max_steps {self.max_steps}: must be >= 1, or -1 to train by epochs")
        if self.max_steps <= 0 and (not math.isfinite(self.num_train_epochs) or self.num_train_epochs <= 0):
            raise InputError(f"--num_train_epochs {self.num_train_epochs}: must be a positive finite number")
        if not 0 <= self.seed < 2**32:
            raise InputError(f"--seed {self.seed}: must be an integer in [0, 2**32 - 1]")
        if not math.isfinite(self.logging_steps) or self.logging_steps <= 0:
            raise InputError(f"--logging_steps {self.logging_steps}: must be a positive number (below 1: a fraction "
                             "of the training steps)")
        if not math.isfinite(self.save_steps) or self.save_steps < 0:
            raise InputError(f"--save_steps {self.save_steps}: must be >= 0 (0: no checkpoints)")
        if self.group_by_passage and self.recipe != "var":
            raise InputError("--group_by_passage: only for --recipe var (TRL's SFTTrainer shuffles rows itself)")
        if self.completion_only_loss is False:
            raise InputError("--completion_only_loss false: the loss covers the completion (the word) only")

    def check_batches(self) -> None:
        """Raise :class:`InputError` when the Trainer's batch fields no longer match ``batch_size`` /
        ``per_device_batch_size`` (both set after the config was built): they are derived once, in ``__post_init__``,
        and ``train_instruct`` checks them again before training."""
        self.check()
        per_device = self.per_device_batch_size
        if (self.per_device_train_batch_size, self.gradient_accumulation_steps) != (per_device,
                                                                                   self.batch_size // per_device):
            raise InputError(f"VarSFTConfig: batch_size {self.batch_size} / per_device_batch_size {per_device} were "
                             "changed after the config was built; build a new VarSFTConfig with them")
