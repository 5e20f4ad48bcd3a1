"""VarTrainer: fine-tune a causal LM toward human next-word distributions (L_Var).

For each context c with target distribution p(w|c) (a label view of the human answers),

    L_Var = mean over contexts of  -sum_w p(w|c) log q(w|c),

with q(w|c) the model's probability of the whole word (``varylm_hf.scoring``). One-hot targets
(``label_mode="corpus"`` or ``"majority"``) give the paper's FT-orig / FT-maj baselines with the
same word-level loss. Everything else (optimiser, schedule, gradient accumulation, checkpoints,
``resume_from_checkpoint``, DDP/FSDP/DeepSpeed under ``accelerate launch`` / ``torchrun``) is the
stock :class:`transformers.Trainer`.

>>> # trainer = VarTrainer(model=model, args=VarTrainingArguments("out"), train_dataset=records,
>>> #                      processing_class=tokenizer); trainer.train()
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from transformers import Trainer, TrainingArguments

from ..cards import RUN_CONFIG_FILE, RunFile, render_var_card
from ..conditioning import first_token_text
from ..data import LABEL_MODES
from ..data.words import describe_word_rule
from ..errors import InputError, VarylmError
from ..modeling import unmark_gguf_quantization
from ..options import WORD_DEFINITIONS, choices_help
from ..scoring import DEFINITIONS, STRATEGIES, _model_max_positions, score_token_ids, word_end_masks, word_loss
from ..secrets import detach_hub_token
from .collator import VarCollator

__all__ = [
    "VarTrainingArguments",
    "VarTrainer",
    "NonFiniteLossError",
    "PassageGroupedSampler",
    "train_var",
    "save_var_run",
    "write_model_card",
]


#: The run description saved beside a checkpoint (read by `varylm push` for the model card).
RUN_FILE = RUN_CONFIG_FILE


class NonFiniteLossError(VarylmError, FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the batch's records."""


@dataclass
class VarTrainingArguments(TrainingArguments):
    r"""Arguments of :class:`VarTrainer`: :class:`~transformers.TrainingArguments` plus the L_Var options.

    Parameters that control the targets:
        label_mode (`str`, defaults to `"all"`): label view of the human answers: `corpus` (original word,
            one-hot), `majority` (most frequent answer, one-hot), `all` (the full distribution) or
            `sample_k` (`label_k` answers drawn per context, seeded by `seed`).
        label_k (`int` or `None`, defaults to `None`): answers drawn per context for `sample_k`.

    Parameters that control the word probability:
        word_prob_definition (`str`, defaults to `"paper"`): `paper` (product of the word's token
            probabilities, eq. 3) or `eow` (times the probability that the next token ends the word, `varylm_hf.data.words`).
        scoring_strategy (`str`, defaults to `"tree"`): `pair`, `context`, `tree` or `passage` (see
            `varylm_hf.scoring`); all compute the same loss, `tree`/`passage` are the fast ones.
        max_context_tokens (`int` or `None`, defaults to `None`): keep at most this many context tokens
            (cut from the left); contexts are always cut to fit the model's positions.
        group_by_passage (`bool`, defaults to `False`): batch contexts of one passage together
            (passage order and the contexts within each passage shuffled per epoch) so the `passage`
            strategy shares one trunk per batch. Changes which contexts share a gradient step; the
            default shuffles contexts freely, as the paper intended.
        bos (`str`, defaults to `"auto"`): the first token of every context (`varylm_hf.conditioning`).

    NOTE: defaults that differ from `TrainingArguments` (the paper's GPT-2 recipe): `learning_rate=1e-5`,
    `per_device_train_batch_size=16` and `per_device_eval_batch_size=16` (contexts), `logging_steps=10`,
    `remove_unused_columns=False`, `label_names=["target_probs"]`, `prediction_loss_only=True`. The
    default optimiser `adamw_torch` with `weight_decay=0` is Adam, as in the paper.
    """

    label_mode: str = field(default="all", metadata={
        "help": "Label view of the human answers (varylm_hf.data.LABEL_MODES, read when the arguments are checked, so "
                "a view registered later counts): " + "; ".join(f"{m.name}: {m.description}" for m in LABEL_MODES.values())})
    label_k: int | None = field(default=None, metadata={"help": "Answers drawn per context for label_mode=sample_k."})
    word_prob_definition: str = field(default="paper", metadata={
        "help": "Word probability: " + choices_help({k: WORD_DEFINITIONS[k] for k in DEFINITIONS}) + ".",
        "choices": list(DEFINITIONS)})
    scoring_strategy: str = field(default="tree", metadata={
        "help": "How words are scored: " + choices_help(STRATEGIES) + ".",
        "choices": list(STRATEGIES)})
    max_context_tokens: int | None = field(default=None, metadata={
        "help": "Keep at most this many context tokens (cut from the left)."})
    group_by_passage: bool = field(default=False, metadata={
        "help": "Batch contexts of one passage together (passages and the contexts within each shuffled per "
                "epoch) instead of shuffling contexts freely: the speed option of the `passage` strategy."})
    bos: str = field(default="auto", metadata={
        "help": "First token of every context: auto (the tokenizer's own BOS if it adds one, else the pretraining "
                "document separator such as <|endoftext|>, never a chat marker), none, or a token."})

    learning_rate: float = field(default=1e-5, metadata={"help": "Initial learning rate (paper: 1e-5)."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Contexts per device and step (paper: 16)."})
    per_device_eval_batch_size: int = field(default=16, metadata={"help": "Contexts per device for evaluation."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep record fields (the collator needs them)."})
    label_names: list[str] | None = field(default_factory=lambda: ["target_probs"],
                                          metadata={"help": "Batch key holding the targets."})
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluation reports eval_loss only."})

    def __post_init__(self):
        if self.label_mode not in LABEL_MODES:
            raise InputError(f"--label_mode {self.label_mode}: expected one of {', '.join(LABEL_MODES)}")
        if LABEL_MODES[self.label_mode].needs_k and (not isinstance(self.label_k, int) or self.label_k < 1):
            raise InputError(f"`label_mode`={self.label_mode!r} needs `label_k`, a positive integer")
        if self.word_prob_definition not in DEFINITIONS:
            raise InputError(f"`word_prob_definition`={self.word_prob_definition!r}: expected one of "
                             f"{', '.join(DEFINITIONS)}")
        if self.scoring_strategy not in STRATEGIES:
            raise InputError(f"`scoring_strategy`={self.scoring_strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if self.max_context_tokens is not None and self.max_context_tokens < 1:
            raise InputError(f"`max_context_tokens`={self.max_context_tokens}: expected a positive integer")
        super().__post_init__()


class PassageGroupedSampler(torch.utils.data.Sampler):
    """Indices passage by passage: passage order and the contexts within each passage shuffled per epoch.

    Consecutive batches then hold contexts of one passage, whose token prefixes the ``passage``
    strategy shares (shared prefixes do not need text order). Never in text order. Deterministic in
    ``(seed, epoch)``.
    """

    def __init__(self, passage_ids: list, seed: int = 42):
        self.groups: dict = {}
        for i, pid in enumerate(passage_ids):
            self.groups.setdefault(pid, []).append(i)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the data loader at every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups.values())

    def __iter__(self):
        keys = sorted(self.groups, key=str)
        rng = random.Random(f"{self.seed}:{self.epoch}")
        rng.shuffle(keys)
        for k in keys:
            group = list(self.groups[k])
            rng.shuffle(group)
            yield from group


class VarTrainer(Trainer):
    """A :class:`transformers.Trainer` whose loss is L_Var over whole words.

    Args:
        model: a causal LM (``PreTrainedModel``, peft model) — the caller loads it (see
            ``varylm_hf.modeling.load_model_and_tokenizer``).
        args: :class:`VarTrainingArguments`.
        train_dataset / eval_dataset: lists of cloze records or ``datasets.Dataset`` with the record
            columns (``id``, ``passage_id``, ``context``, ``corpus_word``, ``answers``, ``majority``).
        processing_class: the tokenizer (required).
        data_collator: default :class:`~varylm_hf.training.collator.VarCollator` built from ``args``.
        Other keyword arguments go to :class:`transformers.Trainer`.
    """

    # compute_loss returns a per-batch mean; Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, model=None, args: VarTrainingArguments | None = None, data_collator=None,
                 train_dataset=None, eval_dataset=None, processing_class=None, **kwargs):
        # args
        if args is None:
            args = VarTrainingArguments(output_dir="var-trainer-output")
        if not isinstance(args, VarTrainingArguments):
            raise InputError("`args` must be a VarTrainingArguments (it holds label_mode, scoring_strategy...)")
        # model and tokenizer
        if model is None or isinstance(model, str):
            raise InputError("`model`: pass a loaded causal LM (varylm_hf.modeling.load_model_and_tokenizer)")
        if processing_class is None:
            raise InputError("`processing_class`: VarTrainer needs the model's tokenizer")
        unmark_gguf_quantization(model)  # GGUF weights are dequantised floats: full fine-tuning is fine
        detach_hub_token(args)  # never pickled into checkpoint-*/training_args.bin
        # collator
        if data_collator is None:
            data_collator = VarCollator(
                processing_class, label_mode=args.label_mode, label_k=args.label_k, seed=args.seed,
                max_context_tokens=args.max_context_tokens, max_positions=_model_max_positions(model),
                eow=args.word_prob_definition == "eow", bos=args.bos,
            )
        # datasets
        for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if ds is not None and len(ds) == 0:
                raise InputError(f"`{name}` is empty")
            if ds is not None and "context" not in ds[0]:
                raise InputError(f"`{name}`: records need a 'context' field (got {sorted(ds[0])})")
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        # loss
        self._start_mask = None
        if args.word_prob_definition == "eow":
            vocab = model.get_output_embeddings().weight.shape[0]
            self._start_mask = word_end_masks(processing_class, vocab)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.group_by_passage:
            pids = dataset["passage_id"] if hasattr(dataset, "column_names") else [r.get("passage_id") for r in dataset]
            return PassageGroupedSampler(pids, seed=self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """L_Var of one batch (mean over its contexts); raises on NaN/inf naming the batch."""
        logq = score_token_ids(model, inputs["context_ids"], inputs["word_ids"],
                               definition=self.args.word_prob_definition, word_start_mask=self._start_mask,
                               strategy=self.args.scoring_strategy)
        probs = inputs["target_probs"]
        targets = [probs[i, : int(n)].to(logq[i].device) for i, n in enumerate(inputs["num_words"])]
        loss = word_loss(logq, targets)
        if not torch.isfinite(loss):
            ids = inputs.get("record_ids", [])
            raise NonFiniteLossError(
                f"loss is {float(loss.detach())} at global step {self.state.global_step} on the batch of records "
                f"{', '.join(map(str, ids[:8]))}{' ...' if len(ids) > 8 else ''} (lower the learning rate, "
                "check the model's dtype)"
            )
        return (loss, {"loss": loss.detach()}) if return_outputs else loss

    def floating_point_ops(self, inputs) -> int:
        """6 x parameters x tokens read (contexts + word branches), for Trainer's FLOP count."""
        tokens = sum(len(c) for c in inputs["context_ids"]) + sum(len(w) for ws in inputs["word_ids"] for w in ws)
        return 6 * tokens * sum(p.numel() for p in self.model.parameters())


# --------------------------------------------------------------------------- runs, cards


def train_var(model, tokenizer, train_records, eval_records, args: VarTrainingArguments,
              resume_from_checkpoint=None, **trainer_kwargs) -> VarTrainer:
    """Train ``model`` with L_Var in-process and return the trainer (final eval included when
    ``eval_records`` is given). Nothing is saved here beyond ``args``' checkpoints: see
    :func:`save_var_run`."""
    trainer = VarTrainer(model=model, args=args, train_dataset=train_records, eval_dataset=eval_records or None,
                         processing_class=tokenizer, **trainer_kwargs)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if eval_records:
        trainer.evaluate()
    return trainer


def _var_config(args: VarTrainingArguments) -> dict:
    keys = ("label_mode", "label_k", "word_prob_definition", "scoring_strategy", "max_context_tokens",
            "group_by_passage", "bos", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
            "num_train_epochs", "seed", "optim", "weight_decay", "lr_scheduler_type", "warmup_steps")
    return {k: getattr(getattr(args, k), "value", getattr(args, k)) for k in keys}  # enums -> plain values


def write_model_card(output_dir, args: VarTrainingArguments, *, base_model: str, dataset: str = "Provo cloze norms",
                     split: str = "paper", metrics: dict | None = None, command: str | None = None,
                     num_train_contexts: int | None = None, first_token: str | None = None) -> Path:
    """Write ``output_dir/README.md``: a model card saying how the model was trained (:func:`cards.render_var_card`)."""
    run = RunFile(base_model=base_model, label_mode=args.label_mode, word_prob_definition=args.word_prob_definition,
                  seed=args.seed, split=split, first_token=first_token, varylm=_var_config(args), metrics=metrics,
                  command=command, num_train_contexts=num_train_contexts)
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_var_card(run, output_dir, dataset=dataset), encoding="utf-8")
    return path


def save_var_run(trainer: VarTrainer, output_dir, *, base_model: str, split: str = "paper",
                 command: str | None = None, extra_config: dict | None = None) -> Path:
    """Save model (safetensors), tokenizer, ``varylm_run.json`` (a :class:`~varylm_hf.cards.RunFile`) and the
    model card to ``output_dir``; ``extra_config`` adds (or replaces) top-level run-file keys."""
    out = Path(output_dir)
    trainer.save_model(str(out))  # model + tokenizer (processing_class), safetensors
    if not trainer.is_world_process_zero():
        return out
    (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; varylm_run.json holds the same
    metrics = {}  # the last value of each eval_* metric and train_loss
    for entry in trainer.state.log_history:
        metrics.update({k: v for k, v in entry.items() if isinstance(v, (int, float))
                        and (k == "train_loss" or (k.startswith("eval_") and "runtime" not in k and "per_second" not in k))})
    args = trainer.args
    config = {"recipe": "var", "label_mode": args.label_mode, "k": args.label_k,
              "word_prob_definition": args.word_prob_definition, "seed": args.seed,
              "first_token": first_token_text(trainer.processing_class, args.bos), "word_rule": describe_word_rule(),
              "hyperparameters": {k: getattr(args, k) for k in ("learning_rate", "per_device_train_batch_size",
                                  "gradient_accumulation_steps", "num_train_epochs", "optim", "weight_decay")},
              "varylm": _var_config(args), "base_model": base_model, "split": split,
              "num_train_contexts": len(trainer.train_dataset) if trainer.train_dataset is not None else None,
              "metrics": metrics, "command": command,
              "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
              "training_args": json.loads(trainer.args.to_json_string())}
    config.update(extra_config or {})
    run = RunFile.from_dict(json.loads(json.dumps(config, default=str)), out / RUN_FILE)
    run.write(out)  # secrets redacted, as in the card
    (out / "README.md").write_text(render_var_card(run, out), encoding="utf-8")
    if getattr(args, "hub_token", None):  # the Trainer pickled the token into each checkpoint: take it out
        clean = copy.copy(args)
        clean.hub_token = None
        for pickled in sorted(Path(args.output_dir).glob("checkpoint-*/training_args.bin")):
            torch.save(clean, pickled)
    return out
