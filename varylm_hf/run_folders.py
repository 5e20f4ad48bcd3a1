"""Run folders of the training scripts: output-folder checks and resuming from checkpoints (no torch).

Shared by ``examples/train_gpt2.py`` and ``examples/train_instruct.py``: both check their ``--output_dir``
before anything is loaded, resolve ``--resume_from_checkpoint PATH|last``, and remove the folders a run
created when it failed before writing anything.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from .errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["checkpoint_step", "last_checkpoint", "resolve_resume", "check_output_dir", "remove_empty_tree"]

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def checkpoint_step(folder: Path) -> int | None:
    """The global step of a complete Trainer checkpoint (trainer_state.json is written last), else None."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) else None


def last_checkpoint(output_dir) -> str | None:
    """The newest *complete* ``checkpoint-N`` in ``output_dir`` (like transformers' get_last_checkpoint,
    which would also return a folder half-written when the run was killed)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), child) for child in folder.iterdir()
                    if (m := _CHECKPOINT.fullmatch(child.name)) and child.is_dir()), reverse=True)
    for _, child in found:
        if checkpoint_step(child) is not None:
            return str(child)
        logger.warning("skipping %s: incomplete checkpoint (no readable trainer_state.json)", child)
    return None


def resolve_resume(value, output_dir) -> str | None:
    """``--resume_from_checkpoint``: a checkpoint folder, or 'last'/'true' (newest complete one in output_dir)."""
    if value is None or value is False:
        return None
    text = str(value).strip()
    if text.lower() in ("", "false", "no", "none"):
        return None
    if text.lower() in ("last", "true", "yes"):
        found = last_checkpoint(output_dir)
        if found is None:
            raise InputError(f"--resume_from_checkpoint {text}: no complete checkpoint-N folder in "
                             f"--output_dir {output_dir}")
        return found
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise InputError(f"--resume_from_checkpoint {text}: no such folder")
    if checkpoint_step(folder) is None:
        raise InputError(f"--resume_from_checkpoint {text}: not a complete Trainer checkpoint "
                         "(no readable trainer_state.json)")
    return str(folder)


def check_output_dir(path, flag: str = "--output_dir") -> Path | None:
    """Raise InputError unless ``path`` is (or can be created as) a writable folder; returns the top-most
    folder that training will create (None when ``path`` exists), so that a failed run can remove it if empty."""
    target = Path(os.path.abspath(os.path.expanduser(str(path))))
    if target.exists():
        if not target.is_dir():
            raise InputError(f"{flag} {path}: exists and is not a folder")
        if not os.access(target, os.W_OK | os.X_OK):
            raise InputError(f"{flag} {path}: folder is not writable")
        return None
    parent = target
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: cannot create it ({parent} is a file, not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: cannot create it ({parent} is not writable)")
    top = target
    while top.parent != parent:
        top = top.parent
    return top


def remove_empty_tree(top: Path | None) -> None:
    """Remove ``top`` and its sub-folders if none of them holds a file (a run that failed before writing)."""
    if top is None or not top.is_dir():
        return
    for dirpath, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(dirpath)  # refuses a folder that is not empty: nothing written is ever removed
        except OSError:
            return
