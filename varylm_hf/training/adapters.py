"""LoRA and QLoRA adapters of the instruction-tuned recipe (paper Appendix B), and bitsandbytes workarounds.

LoRA: r=8, alpha=16, dropout 0.05 on the seven attention and MLP projections (:func:`lora_config`). QLoRA:
4-bit nf4 weights with double quantisation (:func:`qlora_quantization_config`, :func:`load_qlora_model`),
bfloat16 compute on CUDA and float32 on CPU. bitsandbytes is an optional extra (``.[qlora]``):
:func:`qlora_available` says whether it works here. Two workarounds keep CPU training right: no AVX512-BF16
weight repacking (:func:`apply_cpu_4bit_workaround`) and LoRA weights kept in the 4-bit compute dtype
(:func:`cast_trainable_to_compute_dtype`). Mixed-precision LoRA over a float32 base holds the frozen projections in
the autocast dtype while it trains (:func:`frozen_linear_weights_in`).

The settings come as TRL's :class:`~trl.ModelConfig` (:func:`paper_model_config`, :func:`lora_config_from`);
:func:`check_model_config` refuses what the recipes do not support (8-bit, another 4-bit scheme, no PEFT).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Sequence

from ..errors import InputError
from ..modeling import load_model_and_tokenizer, resolve_model_source, unmark_gguf_quantization

__all__ = [
    "LORA_TARGET_MODULES",
    "lora_config",
    "PAPER_MODEL_CONFIG",
    "paper_model_config",
    "check_model_config",
    "lora_config_from",
    "QLORA_COMPUTE_DTYPES",
    "qlora_compute_dtype",
    "qlora_quantization_config",
    "qlora_available",
    "apply_cpu_4bit_workaround",
    "compute_dtype_4bit",
    "cast_trainable_to_compute_dtype",
    "frozen_linear_weights_in",
    "load_qlora_model",
]

logger = logging.getLogger(__name__)

#: Appendix B: LoRA on all attention and MLP projections.
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_config(
    model=None,
    *,
    r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    target_modules: Sequence[str] | str = LORA_TARGET_MODULES,
    **kwargs,
):
    """The paper's LoRA configuration (Appendix B) as a :class:`peft.LoraConfig`.

    Given ``model``, keeps only the target modules the model has (GPT-2 has none of the seven:
    an :class:`InputError` then names what to pass instead); peft's ``"all-linear"`` is kept as it is.
    ``kwargs`` (``use_rslora``, ``use_dora``, ``modules_to_save``...) go to ``LoraConfig``.
    """
    from peft import LoraConfig  # heavy: peft; reproduce (so the CLI) imports this module

    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if model is not None and targets != ["all-linear"]:
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        present = [t for t in targets if t in names]
        if not present:
            raise InputError(
                f"`target_modules`: the model has none of {', '.join(targets)}; pass the names of its linear layers"
            )
        targets = present
    return LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                      target_modules="all-linear" if targets == ["all-linear"] else targets, bias="none",
                      task_type="CAUSAL_LM", **kwargs)


#: The paper's model settings (Appendix B) as fields of TRL's :class:`~trl.ModelConfig`: LoRA r=8, alpha=16,
#: dropout 0.05 on the seven projections; QLoRA (``load_in_4bit``) 4-bit nf4 with double quantisation; ``dtype``
#: ``auto``: the checkpoint's dtype, and the 4-bit compute dtype of :func:`qlora_compute_dtype`.
PAPER_MODEL_CONFIG = {"use_peft": True, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
                      "lora_target_modules": list(LORA_TARGET_MODULES), "load_in_4bit": True,
                      "bnb_4bit_quant_type": "nf4", "use_bnb_nested_quant": True, "dtype": "auto"}


def paper_model_config(**overrides):
    """TRL's :class:`~trl.ModelConfig` with :data:`PAPER_MODEL_CONFIG`, ``overrides`` on top."""
    from trl import ModelConfig  # heavy: trl; reproduce (so the CLI) imports this module

    return ModelConfig(**{**PAPER_MODEL_CONFIG, **overrides})


def check_model_config(model_config) -> None:
    """Raise :class:`InputError` (naming the flag) for :class:`~trl.ModelConfig` settings the recipes do not support."""
    mc = model_config
    if not mc.use_peft:
        raise InputError("--use_peft false: the instruct recipes train a LoRA adapter")
    if mc.load_in_8bit:
        raise InputError("--load_in_8bit: not supported; QLoRA is 4-bit (--load_in_4bit, the default)")
    if mc.lora_task_type != "CAUSAL_LM":
        raise InputError(f"--lora_task_type {mc.lora_task_type}: the recipes train a causal LM (CAUSAL_LM)")
    if mc.load_in_4bit and (mc.bnb_4bit_quant_type != "nf4" or not mc.use_bnb_nested_quant
                            or mc.bnb_4bit_quant_storage is not None):
        raise InputError(f"--bnb_4bit_quant_type {mc.bnb_4bit_quant_type} --use_bnb_nested_quant "
                         f"{mc.use_bnb_nested_quant}: varylm's QLoRA is the paper's 4-bit nf4 with double quantisation "
                         "(nf4, true, default storage)")
    if mc.attn_implementation is not None:
        raise InputError(f"--attn_implementation {mc.attn_implementation}: not supported by varylm's model loader "
                         "(the model's default attention is used)")


def lora_config_from(model_config, model=None):
    """:func:`lora_config` from TRL's :class:`~trl.ModelConfig` (``lora_r``, ``lora_alpha``, ``lora_dropout``,
    ``lora_target_modules`` (default: the seven projections), ``use_rslora``, ``use_dora``,
    ``lora_modules_to_save``, ``lora_target_parameters``)."""
    check_model_config(model_config)
    mc = model_config
    return lora_config(model, r=mc.lora_r, lora_alpha=mc.lora_alpha, lora_dropout=mc.lora_dropout,
                       target_modules=mc.lora_target_modules or LORA_TARGET_MODULES, use_rslora=mc.use_rslora,
                       use_dora=mc.use_dora, modules_to_save=mc.lora_modules_to_save,
                       target_parameters=mc.lora_target_parameters)


#: Names accepted for the compute dtype of 4-bit layers (``"auto"``: :func:`qlora_compute_dtype`).
QLORA_COMPUTE_DTYPES = ("auto", "bfloat16", "float32", "float16")


def qlora_compute_dtype(device: str | None = None):
    """The compute dtype :func:`qlora_quantization_config` picks for ``compute_dtype="auto"``.

    bfloat16 on CUDA (the paper's setting); float32 on CPU, where bitsandbytes dequantises
    the 4-bit weights for every matmul anyway: float32 runs about twice as fast as bfloat16 on a
    CPU without AVX512-BF16 and gives gradients identical to those of the dequantised
    float32 model (docs/qlora.md). ``device`` defaults to CUDA when available.
    """
    import torch  # heavy: torch; reproduce (so the CLI) imports this module

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def qlora_quantization_config(compute_dtype="bfloat16"):
    """The paper's 4-bit quantisation (Appendix B) as a :class:`transformers.BitsAndBytesConfig`.

    nf4 (set explicitly: the default is fp4), double quantisation, and ``compute_dtype``:
    bfloat16 by default (the paper); ``"auto"`` picks bfloat16 on CUDA and float32 on CPU
    (:func:`qlora_compute_dtype`); a ``torch.dtype`` or one of :data:`QLORA_COMPUTE_DTYPES`.
    """
    import torch  # heavy: torch; reproduce (so the CLI) imports this module
    from transformers import BitsAndBytesConfig  # heavy: transformers; reproduce (so the CLI) imports this module

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
        import bitsandbytes  # heavy: bitsandbytes, optional (.[qlora])
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
        import bitsandbytes as bnb  # heavy: bitsandbytes, optional (.[qlora])
    except Exception:
        return 0
    n = restored = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            state = getattr(module.weight, "quant_state", None)
            if state is not None and getattr(state, "packing_format_for_cpu", False):
                from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse  # heavy: bitsandbytes

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
        import bitsandbytes as bnb  # heavy: bitsandbytes, optional (.[qlora])
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


@contextlib.contextmanager
def frozen_linear_weights_in(model, dtype) -> Iterator[int]:
    """Hold the frozen float32 weights of ``model``'s linear layers in ``dtype`` inside the block; yields how many.

    Under ``torch.autocast`` a frozen weight is cast again at every call (autocast caches only the casts of weights
    that require grad), a large share of a LoRA step of SmolLM2 on CPU in bfloat16. Holding the frozen
    projections in the autocast dtype gives the same numbers (autocast casts them to that dtype anyway) without the
    casts. Embedding weights (and a head tied to them) stay as they are, so the residual stream keeps its dtype;
    LoRA weights, norms and biases of trainable layers are not touched. On exit the original float32 tensors are
    put back (bit for bit), so the model that is evaluated or merged afterwards is the float32 base plus the
    trained adapter. The originals stay in memory meanwhile (1.5x the frozen linear weights).
    """
    import torch  # heavy: torch; reproduce (so the CLI parser) imports this module

    tied = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    held = []
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        for param in module.parameters(recurse=False):
            if not param.requires_grad and param.dtype == torch.float32 and id(param) not in tied:
                held.append((param, param.data))
                param.data = param.data.to(dtype)
    try:
        yield len(held)
    finally:
        for param, original in held:
            param.data = original


def load_qlora_model(name_or_path: str, *, gguf_file: str | None = None, revision: str | None = None,
                     compute_dtype="auto", trust_remote_code: bool = False):
    """Load a causal LM with 4-bit nf4 weights for QLoRA: ``(model, tokenizer)``, model in eval mode.

    ``name_or_path`` is anything :func:`varylm_hf.modeling.load_model_and_tokenizer` takes. A GGUF
    file cannot be quantised by transformers directly: it is dequantised, written to a
    temporary safetensors folder and reloaded in 4-bit. ``compute_dtype`` as in
    :func:`qlora_quantization_config` (default: bfloat16 on CUDA, float32 on CPU). The CPU
    workaround (:func:`apply_cpu_4bit_workaround`) is applied. Raises :class:`InputError` when
    bitsandbytes is not usable (check :func:`qlora_available` first to fall back to LoRA).
    ``trust_remote_code`` as in :func:`~varylm_hf.modeling.load_model_and_tokenizer` (off).
    """
    from transformers import AutoModelForCausalLM  # heavy: transformers; reproduce (so the CLI) imports this module

    ok, reason = qlora_available()
    if not ok:
        raise InputError(f"QLoRA: {reason}")
    quant = qlora_quantization_config(compute_dtype)
    _, gguf = resolve_model_source(name_or_path, gguf_file)
    if gguf is None:
        model, tokenizer = load_model_and_tokenizer(name_or_path, revision=revision, quantization_config=quant,
                                                    trust_remote_code=trust_remote_code)
    else:
        full, tokenizer = load_model_and_tokenizer(name_or_path, gguf_file=gguf_file, revision=revision, device="cpu",
                                                   trust_remote_code=trust_remote_code)
        unmark_gguf_quantization(full)
        with tempfile.TemporaryDirectory(prefix="varylm-qlora-") as tmp:
            full.save_pretrained(tmp)
            del full
            model = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=quant)
        if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id
    apply_cpu_4bit_workaround(model)
    return model.eval(), tokenizer
