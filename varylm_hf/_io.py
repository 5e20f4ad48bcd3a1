"""Small file-system helpers shared by the writers of output folders."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_folder"]


@contextmanager
def atomic_folder(out: str | os.PathLike):
    """Write a folder all at once: yields a temporary folder beside ``out``.

    When the block succeeds the temporary folder takes the place of ``out`` (an existing ``out`` is
    moved aside first and removed only once the new one is in place); when it fails, the temporary
    folder is deleted and ``out`` is left as it was. Callers decide beforehand whether replacing an
    existing ``out`` is allowed.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            backup = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(backup)
            try:
                tmp.rename(out)
            except BaseException:
                backup.rename(out)
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
