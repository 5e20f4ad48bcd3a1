"""What a push takes from a folder: the files it uploads, the pickles it refuses, the kind of folder it is.

What is uploaded, at every depth: model, adapter, dataset and metric files only (safetensors, JSON,
cards, tokenizer files, parquet/CSV, text, images; ``.py`` for metrics). Left out: hidden files and
folders (including varylm's ``.varylm_manifest.json``), ``__pycache__``, trainer checkpoint folders
(``checkpoint-*``, unless ``include_checkpoints=True``), trainer resume state (``training_args.bin``,
``optimizer.pt``, ``scheduler.pt``, ``rng_state*.pth``, ``scaler.pt``) and files of other kinds (listed in
:attr:`varylm_hf.hub.PushResult.skipped`). Any other pickle (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.pickle``,
``.ckpt``) is refused with an error naming it unless ``allow_pickle=True``; every safetensors file must have a
complete header (:func:`varylm_hf._io.check_safetensors`). Text files are uploaded with any secret (Hub token)
redacted (:mod:`varylm_hf.secrets`), from memory: the folder is never modified.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from ._io import check_safetensors
from .errors import InputError
from .secrets import redact_text

__all__ = ["KINDS", "PICKLE_SUFFIXES", "Listing", "UploadPlan", "folder_path", "scan", "local_files", "detect_kind",
           "plan_upload"]

KINDS = ("model", "adapter", "dataset", "metric")
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
#: Uploaded with secrets redacted (up to _REDACT_MAX_BYTES).
_TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".csv", ".tsv", ".jinja", ".py", ".cff")
_REDACT_MAX_BYTES = 64 * 1024 * 1024


def folder_path(folder) -> Path:
    """``folder`` as a Path; a one-line InputError when it is not a folder."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"{folder}: no such folder")
    return path


@dataclass
class Listing:
    """A folder's files sorted into: to upload, pickles (refused unless allowed), left out."""

    files: list[str]
    pickles: list[str]
    skipped: list[str]


def scan(folder: Path, *, scripts: bool = False, include_checkpoints: bool = False) -> Listing:
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
    return Listing(files, pickles, skipped)


def local_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the files a push would consider (sorted; see :func:`scan`)."""
    listing = scan(folder, scripts=True)
    return sorted(listing.files + listing.pickles)


def detect_kind(folder) -> str:
    """Guess what a folder holds: ``adapter`` (adapter_config.json), ``model`` (config.json),
    ``metric`` (``<folder name>.py``) or ``dataset`` (README.md with ``configs:`` or data files)."""
    folder = folder_path(folder)
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


@dataclass
class UploadPlan:
    """What one commit sends: folder files as they are, contents from memory (generated or redacted), left out."""

    files: list[str]
    contents: dict[str, bytes]
    skipped: list[str]


def plan_upload(folder: Path, repo_type: str, *, replace: dict[str, bytes], token: str | None,
                allow_pickle: bool = False, include_checkpoints: bool = False) -> UploadPlan:
    """Check the folder and decide what a push to a ``repo_type`` repo sends, before any request.

    Pickles are refused unless ``allow_pickle``; ``.py`` files only go to Spaces; safetensors headers are checked;
    ``replace`` (path -> bytes, e.g. the generated card) is sent over the folder's file of that name; text holding a secret (``token``, or any :mod:`varylm_hf.secrets` finds) is sent redacted.
    """
    listing = scan(folder, scripts=repo_type == "space", include_checkpoints=include_checkpoints)
    if listing.pickles and not allow_pickle:
        first = listing.pickles[0]
        more = f" (and {len(listing.pickles) - 1} more)" if len(listing.pickles) > 1 else ""
        raise InputError(f"{folder / first}: a pickle file{more}; varylm does not upload pickles (loading one can run "
                         "code): save the weights as safetensors (model.save_pretrained(folder)) or remove it, "
                         "or pass --allow-pickle to upload it anyway")
    scripts = [f for f in listing.files if repo_type != "space" and f.endswith(".py")]  # remote code: never
    files = sorted(f for f in listing.files + (listing.pickles if allow_pickle else [])
                   if f not in replace and f not in scripts)
    for f in files:
        if f.endswith(".safetensors"):
            check_safetensors(folder / f)
    secret = (token,) if token else ()
    # generated files (cards...) and local text files go up with any secret redacted; the folder is not touched
    contents = {p: redact_text(data.decode("utf-8"), extra=secret).encode("utf-8") if p.endswith(_TEXT_SUFFIXES)
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
                contents[f] = clean.encode("utf-8")
    return UploadPlan([f for f in files if f not in contents], contents, sorted(listing.skipped + scripts))
