"""The instruction-tuned recipe (paper §3.2, Appendix B): SFT on answer-augmented cloze data.

For every context and every human answer the augmented dataset holds one (prompt, completion)
pair, so a context with 40 answers appears 40 times and the SFT objective becomes
``sum_c sum_w count(w|c) * -log q(w + end-of-turn | chat prompt)``. Two ways to optimise it:

* ``recipe="sft"``: TRL's :class:`~trl.SFTTrainer` on the augmented rows (conversational
  prompt/completion format, loss on the completion only) — the paper's set-up;
* ``recipe="var"``: the same objective with one row per context: the chat prompt is encoded
  once and every distinct answer is scored as a branch of it by the word-level engine
  (:func:`varylm_hf.scoring.score_token_ids`), each weighted by its count. The completion tokens
  are exactly those TRL trains on (chat template applied to prompt + completion).

The prompt is :func:`varylm_hf.prompts.instruction_prompt`, identical at training and
evaluation time. Adapters are LoRA (r=8, alpha=16, dropout 0.05, seven projections) or QLoRA
(4-bit nf4, double quantisation, bf16 compute) where bitsandbytes works.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .cards import RUN_CONFIG_FILE, RunFile, render_adapter_card
from .data.labels import LABEL_MODES as _ALL_LABEL_MODES
from .data.labels import label_counts
from .errors import InputError
from .options import RECIPES
from .prompts import chat_messages, instruction_prompt, one_shot_example
from .secrets import detach_hub_token

__all__ = [
    "LABEL_MODES",
    "RECIPES",
    "LORA_TARGET_MODULES",
    "label_counts",
    "sft_rows",
    "build_sft_dataset",
    "one_shot_example",
    "lora_config",
    "QLORA_COMPUTE_DTYPES",
    "qlora_compute_dtype",
    "qlora_quantization_config",
    "qlora_available",
    "apply_cpu_4bit_workaround",
    "compute_dtype_4bit",
    "cast_trainable_to_compute_dtype",
    "load_qlora_model",
    "sft_config",
    "unmark_gguf_quantization",
    "make_sft_trainer",
    "chat_token_ids",
    "var_units",
    "batch_rows",
    "contexts_per_batch",
    "build_var_dataset",
    "var_sft_loss",
    "VarSFTTrainer",
    "InstructConfig",
    "train_instruct",
    "save_adapter",
]

logger = logging.getLogger(__name__)

#: Which human data becomes completions (count times each): the label views of
#: :data:`varylm_hf.data.LABEL_MODES` that need no ``k`` (every answer, the majority answer, the corpus word...).
LABEL_MODES = tuple(name for name, view in _ALL_LABEL_MODES.items() if not view.needs_k)
#: The batch unit of both recipes: augmented (prompt, answer) rows per optimizer step; the paper's batch is 32.
BATCH_UNIT = "rows"
DEFAULT_BATCH_ROWS = 32
#: Appendix B: LoRA on all attention and MLP projections.
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# --------------------------------------------------------------------------- data


def sft_rows(records: Iterable[Mapping], label_mode: str = "all") -> list[dict]:
    """Augmented SFT rows in TRL's conversational prompt/completion format.

    One row per human answer (a context with answer counts {are: 16, is: 9} yields 25 rows)
    for ``label_mode="all"``, one row per context otherwise. Each row is
    ``{"prompt": [{"role": "user", "content": instruction_prompt(context)}],
    "completion": [{"role": "assistant", "content": word}], "id": record id}``.
    """
    rows = []
    for rec in records:
        prompt = chat_messages(instruction_prompt(rec["context"]))
        for word, count in label_counts(rec, label_mode):
            row = {"prompt": prompt, "completion": [{"role": "assistant", "content": word}], "id": rec["id"]}
            rows.extend(dict(row) for _ in range(count))
    return rows


def build_sft_dataset(records: Iterable[Mapping], label_mode: str = "all"):
    """:func:`sft_rows` as a :class:`datasets.Dataset` (columns prompt, completion, id)."""
    from datasets import Dataset

    rows = sft_rows(records, label_mode)
    if not rows:
        raise InputError("no records to build the SFT dataset from")
    return Dataset.from_list(rows)


# --------------------------------------------------------------------------- adapters


def lora_config(
    model=None,
    *,
    r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    target_modules: Sequence[str] = LORA_TARGET_MODULES,
):
    """The paper's LoRA configuration (Appendix B) as a :class:`peft.LoraConfig`.

    Given ``model``, keeps only the target modules the model has (GPT-2 has none of the seven:
    an :class:`InputError` then names what to pass instead).
    """
    from peft import LoraConfig

    targets = list(target_modules)
    if model is not None:
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        present = [t for t in targets if t in names]
        if not present:
            raise InputError(
                f"`target_modules`: the model has none of {', '.join(targets)}; pass the names of its linear layers"
            )
        targets = present
    return LoraConfig(
        r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=targets, bias="none", task_type="CAUSAL_LM"
    )


#: Names accepted for the compute dtype of 4-bit layers (``"auto"``: :func:`qlora_compute_dtype`).
QLORA_COMPUTE_DTYPES = ("auto", "bfloat16", "float32", "float16")


def qlora_compute_dtype(device: str | None = None):
    """The compute dtype :func:`qlora_quantization_config` picks for ``compute_dtype="auto"``.

    bfloat16 on CUDA (the paper's setting); float32 on CPU, where bitsandbytes dequantises
    the 4-bit weights for every matmul anyway: float32 runs about twice as fast as bfloat16 on a
    CPU without AVX512-BF16 and gives gradients identical to those of the dequantised
    float32 model (docs/qlora.md). ``device`` defaults to CUDA when available.
    """
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def qlora_quantization_config(compute_dtype="bfloat16"):
    """The paper's 4-bit quantisation (Appendix B) as a :class:`transformers.BitsAndBytesConfig`.

    nf4 (set explicitly: the default is fp4), double quantisation, and ``compute_dtype``:
    bfloat16 by default (the paper); ``"auto"`` picks bfloat16 on CUDA and float32 on CPU
    (:func:`qlora_compute_dtype`); a ``torch.dtype`` or one of :data:`QLORA_COMPUTE_DTYPES`.
    """
    import torch
    from transformers import BitsAndBytesConfig

    if isinstance(compute_dtype, str):
        if compute_dtype not in QLORA_COMPUTE_DTYPES:
            raise InputError(f"`compute_dtype`={compute_dtype!r}: expected one of {', '.join(QLORA_COMPUTE_DTYPES)}")
        compute_dtype = qlora_compute_dtype() if compute_dtype == "auto" else getattr(torch, compute_dtype)
    if compute_dtype not in (torch.bfloat16, torch.float32, torch.float16):
        raise InputError(f"`compute_dtype`={compute_dtype}: expected bfloat16, float32 or float16")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def qlora_available() -> tuple[bool, str]:
    """Whether QLoRA can run here: ``(ok, reason)``. bitsandbytes is an optional extra (``.[qlora]``)."""
    try:
        import bitsandbytes
    except Exception as err:  # ImportError, or a broken native library
        return False, f"bitsandbytes is not usable ({type(err).__name__}); install varylm-hf[qlora]"
    return True, f"bitsandbytes {bitsandbytes.__version__}"


def apply_cpu_4bit_workaround(model) -> int:
    """Turn off bitsandbytes' AVX512-BF16 weight repacking on every 4-bit layer; returns how many.

    On CPUs with AVX512-BF16, bitsandbytes repacks a layer's 4-bit weights for a fast inference
    kernel the first time it runs in eval mode without gradients; the kernel has no backward,
    so LoRA gradients computed afterwards are silently wrong (DESIGN.md §3). This sets
    ``support_avx512bf16_for_cpu = False`` on every ``bnb.nn.Linear4bit`` and converts weights
    that were already repacked back to the training layout (their double-quantised scales are
    re-quantised on the way, a change of ~1e-3 in the outputs). Harmless on other CPUs and CUDA.
    Call it right after loading: :func:`load_qlora_model` and :func:`train_instruct` do.
    """
    try:
        import bitsandbytes as bnb
    except Exception:
        return 0
    n = restored = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            state = getattr(module.weight, "quant_state", None)
            if state is not None and getattr(state, "packing_format_for_cpu", False):
                from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

                module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                    module.weight.data, state
                )
                restored += 1
            n += 1
    if restored:
        logger.warning("%d 4-bit layers had been repacked for CPU inference by an earlier eval forward; "
                       "restored the training layout", restored)
    return n


def compute_dtype_4bit(model):
    """The compute dtype of a model's 4-bit layers (``None`` if it has none)."""
    try:
        import bitsandbytes as bnb
    except Exception:
        return None
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            return module.compute_dtype
    return None


def cast_trainable_to_compute_dtype(model) -> int:
    """Store a 4-bit model's trainable (LoRA) weights in its 4-bit compute dtype; returns how many tensors.

    TRL's SFTTrainer casts LoRA weights of quantised models to bfloat16 (the QLoRA paper's
    choice, right with bfloat16 compute on CUDA). With float32 compute on CPU that would round
    every optimizer update to bfloat16, so the adapter is kept in float32 there. Call it before
    the optimizer is created (before ``trainer.train()``).
    """
    dtype = compute_dtype_4bit(model)
    if dtype is None:
        return 0
    n = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != dtype and param.is_floating_point():
            param.data = param.data.to(dtype)
            n += 1
    return n


def load_qlora_model(name_or_path: str, *, gguf_file: str | None = None, revision: str | None = None,
                     compute_dtype="auto"):
    """Load a causal LM with 4-bit nf4 weights for QLoRA: ``(model, tokenizer)``, model in eval mode.

    ``name_or_path`` is anything :func:`varylm_hf.modeling.load_model_and_tokenizer` takes. A GGUF
    file cannot be quantised by transformers directly: it is dequantised, written to a
    temporary safetensors folder and reloaded in 4-bit. ``compute_dtype`` as in
    :func:`qlora_quantization_config` (default: bfloat16 on CUDA, float32 on CPU). The CPU
    workaround (:func:`apply_cpu_4bit_workaround`) is applied. Raises :class:`InputError` when
    bitsandbytes is not usable (check :func:`qlora_available` first to fall back to LoRA).
    """
    import tempfile

    from transformers import AutoModelForCausalLM

    from .modeling import load_model_and_tokenizer, resolve_model_source

    ok, reason = qlora_available()
    if not ok:
        raise InputError(f"QLoRA: {reason}")
    quant = qlora_quantization_config(compute_dtype)
    _, gguf = resolve_model_source(name_or_path, gguf_file)
    if gguf is None:
        model, tokenizer = load_model_and_tokenizer(name_or_path, revision=revision, quantization_config=quant)
    else:
        full, tokenizer = load_model_and_tokenizer(name_or_path, gguf_file=gguf_file, revision=revision, device="cpu")
        unmark_gguf_quantization(full)
        with tempfile.TemporaryDirectory(prefix="varylm-qlora-") as tmp:
            full.save_pretrained(tmp)
            del full
            model = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=quant)
        if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id
    apply_cpu_4bit_workaround(model)
    return model.eval(), tokenizer


# --------------------------------------------------------------------------- SFT (TRL)


def unmark_gguf_quantization(model) -> bool:
    """Let Trainer train a model loaded from a GGUF file; returns whether anything changed.

    transformers dequantises GGUF weights to ordinary float tensors but keeps a GGUF
    "quantizer" on the model, and ``Trainer`` then refuses to train it ("quantization method do
    not support training"). The weights are plain tensors, so the marker is dropped.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    quantizer = getattr(base, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is None or str(getattr(method, "value", method)).lower() != "gguf":
        return False
    base.hf_quantizer = None
    base.is_quantized = False
    if hasattr(base.config, "quantization_config"):
        del base.config.quantization_config
    return True


def _on_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


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


# --------------------------------------------------------------------------- var (fast path)


def chat_token_ids(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """``(prompt_ids, completion_ids)`` exactly as TRL's SFTTrainer tokenises a conversational row.

    The chat template is applied to the prompt alone (with the generation prompt) and to
    prompt + completion; the completion starts where the two diverge (TRL's
    ``common_prefix_length``). ``completion_ids`` holds the word and whatever the template puts
    after it (end-of-turn token, newline): every token TRL puts in the loss.
    """
    messages = chat_messages(prompt)
    p_ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=True)[
        "input_ids"
    ]
    full = tokenizer.apply_chat_template(
        chat_messages(prompt, completion), tokenize=True, return_dict=True
    )["input_ids"]
    n = 0
    for a, b in zip(p_ids, full):
        if a != b:
            break
        n += 1
    if n == len(full):
        raise InputError(f"completion {completion!r}: the chat template adds no tokens for it")
    return list(full[:n]), list(full[n:])


def var_units(records: Iterable[Mapping], tokenizer, label_mode: str = "all", max_length: int | None = 1024) -> list[dict]:
    """One scoring unit per context for ``recipe="var"``: the chat prompt once, each distinct answer once.

    Each unit is ``{"id", "passage_id", "context_ids": [int], "word_ids": [[int]], "counts": [int]}``
    where ``word_ids`` are the completion tokens TRL would train on and ``counts`` the number of
    augmented rows of that answer. A context whose answers render different prompt prefixes
    (unusual templates) becomes several units, so the tokens stay identical to TRL's.
    Rows longer than ``max_length`` raise (TRL would truncate them).
    """
    units = []
    for rec in records:
        prompt = instruction_prompt(rec["context"])
        groups: dict[tuple[int, ...], dict] = {}
        for word, count in label_counts(rec, label_mode):
            ctx, comp = chat_token_ids(tokenizer, prompt, word)
            if max_length is not None and len(ctx) + len(comp) > max_length:
                raise InputError(f"record {rec['id']}: prompt + {word!r} is longer than max_length={max_length}")
            unit = groups.setdefault(tuple(ctx), {"id": rec["id"], "passage_id": rec.get("passage_id"),
                                                  "context_ids": ctx, "word_ids": [], "counts": []})
            unit["word_ids"].append(comp)
            unit["counts"].append(int(count))
        units.extend(groups.values())
    return units


def build_var_dataset(records: Iterable[Mapping], tokenizer, label_mode: str = "all"):
    """:func:`var_units` as a :class:`datasets.Dataset`."""
    from datasets import Dataset

    units = var_units(records, tokenizer, label_mode)
    if not units:
        raise InputError("no records to build the var dataset from")
    return Dataset.from_list(units)


def var_sft_loss(model, batch: Mapping, *, normalize: str = "tokens", strategy: str = "passage"):
    """The augmented-SFT loss of a batch of :func:`var_units`, with one branch per distinct answer.

    ``sum_u sum_w count(w) * -log q(completion_w | prompt_u)`` divided by the number of
    completion tokens of the equivalent augmented rows (``normalize="tokens"``, TRL's token
    mean over one batch) or by the number of rows (``"rows"``). Equals SFTTrainer's loss on
    all augmented rows of the same contexts in one batch. Returns ``(loss, n_rows)``.

    ``strategy="passage"`` (default) scores the whole batch as one token trie: the chat prompts
    of a batch share the system turn and the instruction, and prompts of one passage share the
    passage text up to the shorter context, so each shared token is computed once; ``"tree"``
    keeps one trie per context (no sharing across contexts), ``"context"`` one KV-cached forward
    per context. All three give the same loss.
    """
    import torch

    from .scoring import score_token_ids

    if normalize not in ("tokens", "rows"):
        raise InputError(f"normalize={normalize!r}: expected 'tokens' or 'rows'")
    logq = score_token_ids(model, batch["context_ids"], batch["word_ids"], definition="paper", strategy=strategy)
    total, denom, rows = None, 0, 0
    for lq, words, counts in zip(logq, batch["word_ids"], batch["counts"]):
        c = torch.as_tensor(counts, dtype=lq.dtype, device=lq.device)
        part = -(c * lq).sum()
        total = part if total is None else total + part
        rows += int(sum(counts))
        denom += sum(n * len(w) for n, w in zip(counts, words)) if normalize == "tokens" else int(sum(counts))
    return total / max(denom, 1), rows


def _collate_units(features: list[dict]) -> dict:
    return {key: [f[key] for f in features] for key in ("context_ids", "word_ids", "counts")}


def batch_rows(recipe: str, batch_size: int | None, per_device_batch_size: int | None,
               cuda: bool | None = None) -> tuple[int, int]:
    """``(rows per optimizer step, rows per device micro-batch)`` of either recipe, in augmented rows.

    One unit for both recipes (:data:`BATCH_UNIT`): ``batch_size`` rows per step (default 32, the
    paper's); the micro-batch defaults to 8 rows on CUDA and 4 on CPU for ``sft`` and to the whole
    step for ``var`` (whose rows of one context cost one prompt); the rest is gradient accumulation.

    >>> batch_rows("sft", None, None, cuda=False), batch_rows("var", 64, 32)
    ((32, 4), (64, 32))
    """
    total = batch_size or DEFAULT_BATCH_ROWS
    if per_device_batch_size:
        per_device = per_device_batch_size
    elif recipe == "sft":
        per_device = min(total, 8 if (_on_cuda() if cuda is None else cuda) else 4)
    else:
        per_device = total
    if total % per_device:
        raise InputError(f"--batch_size {total} must be a multiple of --per_device_batch_size {per_device}")
    return total, per_device


def contexts_per_batch(rows: int, row_counts: Sequence[int]) -> int:
    """Whole contexts per ``var`` micro-batch that hold ``rows`` augmented rows on average.

    ``row_counts`` are the augmented rows of each context (its answer count); the result is
    ``round(rows / mean row count)``, at least 1. A context's answers are never split across
    batches: with Provo's ~40 answers per context the paper's 32 rows are one context per step,
    and with one answer per context (majority, corpus) 32 contexts.

    >>> contexts_per_batch(32, [40, 38, 42]), contexts_per_batch(32, [1, 1]), contexts_per_batch(256, [40] * 9)
    (1, 32, 6)
    """
    if not row_counts:
        raise InputError("no contexts to batch")
    mean = sum(row_counts) / len(row_counts)
    return max(1, round(rows / mean))


def _var_trainer_class():
    from transformers import Trainer

    class _VarSFTTrainer(Trainer):
        """Trainer whose loss is :func:`var_sft_loss` over batches of :func:`var_units` (one per context)."""

        loss_is_scaled_for_ga = False  # per-batch mean; Trainer divides by the accumulation steps

        def __init__(self, *args, normalize: str = "tokens", strategy: str = "passage", group_by_passage: bool = False,
                     **kwargs):
            kwargs.setdefault("data_collator", _collate_units)
            super().__init__(*args, **kwargs)
            self.var_normalize = normalize
            self.var_strategy = strategy
            self.group_by_passage = group_by_passage

        def _get_train_sampler(self, train_dataset=None):
            if self.group_by_passage:  # contexts of one passage together: their prompts share the passage text
                from .trainer import PassageGroupedSampler

                dataset = train_dataset if train_dataset is not None else self.train_dataset
                return PassageGroupedSampler(list(dataset["passage_id"]), seed=self.args.data_seed or self.args.seed)
            return super()._get_train_sampler(train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, _ = var_sft_loss(model, inputs, normalize=self.var_normalize, strategy=self.var_strategy)
            return (loss, None) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            import torch

            with torch.no_grad():
                loss, _ = var_sft_loss(model, inputs, normalize=self.var_normalize, strategy=self.var_strategy)
            return loss.detach(), None, None

    return _VarSFTTrainer


def VarSFTTrainer(*args, **kwargs):  # noqa: N802 - a class factory keeps transformers out of import time
    """Build the ``recipe="var"`` trainer: a :class:`transformers.Trainer` whose loss is :func:`var_sft_loss`.

    Needs ``TrainingArguments(remove_unused_columns=False)`` and a dataset from
    :func:`build_var_dataset`; extra keywords ``normalize`` and ``strategy`` go to the loss, and
    ``group_by_passage=True`` batches contexts of one passage together (passages and the contexts
    within them shuffled per epoch) so that the ``passage`` trie shares their passage text.
    """
    return _var_trainer_class()(*args, **kwargs)


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
