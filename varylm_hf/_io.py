"""Small file-system helpers shared by the writers of output folders, and checks of weight files.

* :func:`atomic_folder` — write an output folder all at once; every folder it writes carries a
  manifest (:data:`MANIFEST`) of the files varylm put there, and only such a folder, holding nothing
  else, is ever replaced (nothing a user put there is removed);
* :func:`check_replaceable` — the same check, for callers that want to refuse before slow work;
* :func:`check_safetensors` / :func:`check_gguf` — a one-line :class:`InputError` for a truncated or
  corrupt weight file, before it reaches a loader or the Hub.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import time
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .errors import InputError
from .secrets import redact_text

__all__ = ["MANIFEST", "STALE_SECONDS", "atomic_folder", "check_replaceable", "check_safetensors", "check_gguf",
           "current_umask"]

#: Marker written into every folder :func:`atomic_folder` makes: the list of files varylm wrote there.
MANIFEST = ".varylm_manifest.json"
#: A hidden temporary folder of a live process older than this is stale too (seconds).
STALE_SECONDS = 3600
_TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".txt", ".csv", ".tsv", ".yaml", ".yml")


def current_umask() -> int:
    """The process umask (read from /proc where possible, so that it is never changed, even briefly)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _entries(folder: Path) -> tuple[set[str], set[str]]:
    """Relative POSIX paths of the files (and links) and of the folders under ``folder`` (links not followed)."""
    files, dirs = set(), set()
    for root, dirnames, filenames in os.walk(folder, followlinks=False):
        base = Path(root)
        for name in dirnames:
            rel = (base / name).relative_to(folder).as_posix()
            (files if (base / name).is_symlink() else dirs).add(rel)
        for name in filenames:
            files.add((base / name).relative_to(folder).as_posix())
    files.discard(MANIFEST)
    return files, dirs


def _read_manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    return data


def check_replaceable(out: str | os.PathLike) -> None:
    """Raise :class:`InputError` unless ``out`` may be replaced without losing anything of the user's.

    Replaceable: a path that does not exist, an empty folder, or a folder that varylm wrote — it
    carries :data:`MANIFEST` and holds only the files listed there (files varylm wrote and the user
    may have deleted since are fine; anything added is not).
    """
    out = Path(out)
    if out.is_symlink():
        raise InputError(f"--out {out}: is a symbolic link; refusing to replace it (give the real folder)")
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    manifest = _read_manifest(out)
    if manifest is None:
        raise InputError(f"--out {out}: not replaced, varylm did not write this folder (no {MANIFEST}); "
                         "choose a new --out or remove the folder yourself")
    files, dirs = _entries(out)
    extra = sorted((files - set(manifest["files"])) | (dirs - set(manifest.get("dirs", []))))
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise InputError(f"--out {out}: not replaced, it holds {extra[0]}{more} that varylm did not write; "
                         "choose a new --out or move those files away")


def _remove_listed(folder: Path) -> bool:
    """Delete the files and folders a manifest lists, then the manifest and ``folder`` if empty.

    Anything not listed is left in place. Returns whether ``folder`` is gone.
    """
    manifest = _read_manifest(folder) or {"files": [], "dirs": []}
    for rel in manifest["files"]:
        path = folder / rel
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
    for rel in sorted(manifest.get("dirs", []), key=lambda r: r.count("/"), reverse=True):
        try:
            (folder / rel).rmdir()
        except OSError:
            pass
    (folder / MANIFEST).unlink(missing_ok=True)
    try:
        folder.rmdir()
        return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


def _clean_stale(out: Path) -> None:
    """Remove varylm's own leftovers beside ``out``: temporary folders of a dead (or >1 h old) writer.

    ``.<name>.tmp-<pid>-<random>`` folders are removed when process ``pid`` is gone or the folder is
    older than :data:`STALE_SECONDS`; ``.<name>.old-<pid>`` backups of a replaced run lose only the
    files their manifest lists. Nothing else is touched.
    """
    pattern = re.compile(r"^\." + re.escape(out.name) + r"\.(tmp|old)-(\d+)(?:-[A-Za-z0-9_]+)?$")
    legacy = re.compile(r"^\." + re.escape(out.name) + r"\.tmp-[a-z0-9_]{8}$")  # mkdtemp names of older versions
    try:
        siblings = list(out.parent.iterdir())
    except OSError:
        return
    now = time.time()
    for path in siblings:
        if path.is_symlink() or not path.is_dir():
            continue
        match = pattern.match(path.name)
        try:
            old = now - path.stat().st_mtime > STALE_SECONDS
        except OSError:
            continue
        if match:
            pid = int(match.group(2))
            if pid == os.getpid() or (_pid_alive(pid) and not old):
                continue
            if match.group(1) == "tmp":
                shutil.rmtree(path, ignore_errors=True)
            else:
                _remove_listed(path)
        elif legacy.match(path.name) and old:
            shutil.rmtree(path, ignore_errors=True)


def _redact_text_files(folder: Path) -> None:
    """Rewrite any text file that holds a secret (see :mod:`varylm_hf.secrets`) with it redacted."""
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if not name.endswith(_TEXT_SUFFIXES) or path.is_symlink():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            clean = redact_text(text)
            if clean != text:
                path.write_text(clean, encoding="utf-8")


def _write_manifest(folder: Path) -> None:
    files, dirs = _entries(folder)
    (folder / MANIFEST).write_text(json.dumps(
        {"written_by": "varylm-hf", "version": __version__, "files": sorted(files), "dirs": sorted(dirs)},
        indent=1) + "\n", encoding="utf-8")


@contextmanager
def atomic_folder(out: str | os.PathLike):
    """Write a folder all at once: yields a temporary folder beside ``out``.

    When the block succeeds, secrets are redacted from the text files written, a manifest
    (:data:`MANIFEST`) of the files is added, and the temporary folder takes the place of ``out``.
    An existing non-empty ``out`` is replaced only if varylm wrote it and it holds nothing else
    (:func:`check_replaceable`, checked before the block runs and again before the swap); the old
    folder's listed files are removed only once the new one is in place. When the block fails, the
    temporary folder is deleted and ``out`` is left as it was. Callers decide beforehand whether
    replacing an existing ``out`` is allowed (``--overwrite``). The new folder gets the permissions
    the umask allows (not ``mkdtemp``'s 0700), and stale temporary folders of an earlier, killed
    write are cleaned up first.
    """
    out = Path(out)
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    tmp.mkdir(mode=0o700)
    try:
        tmp.chmod(0o777 & ~current_umask())
        yield tmp
        _redact_text_files(tmp)
        _write_manifest(tmp)
        check_replaceable(out)  # the user may have put something there meanwhile
        if out.exists() and not out.is_symlink():
            backup = out.with_name(f".{out.name}.old-{os.getpid()}")
            if backup.exists():
                _remove_listed(backup)
            out.rename(backup)
            try:
                tmp.rename(out)
            except BaseException:
                backup.rename(out)
                raise
            _remove_listed(backup)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------- weight files
_ST_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
              "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}
_ST_MAX_HEADER = 100 * 1024 * 1024


@contextmanager
def _read_weights(path: str | os.PathLike, name: str):
    """Open the weight file ``path`` for reading: yields ``(file, size in bytes)``.

    An ``OSError`` (missing, unreadable, a read that fails) becomes an :class:`InputError` naming ``name``.
    """
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as fh:
            yield fh, size
    except OSError as err:
        raise InputError(f"{name}: cannot read it ({err.strerror or err})") from None


def check_safetensors(path: str | os.PathLike, what: str | None = None) -> None:
    """Raise :class:`InputError` unless ``path`` is a complete safetensors file.

    Checked without loading any tensor: the 8-byte little-endian header length, a JSON header that
    parses to an object of ``{dtype, shape, data_offsets}`` entries, and a data section whose length
    is exactly what the header says (a truncated download or copy fails here). ``what`` prefixes the
    message (default: the path).
    """
    path = Path(path)
    name = what or str(path)
    with _read_weights(path, name) as (fh, size):
        head = fh.read(8)
        if len(head) < 8:
            raise InputError(f"{name}: not a complete safetensors file ({size} bytes, shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > _ST_MAX_HEADER or 8 + n > size:
            raise InputError(f"{name}: not a complete safetensors file (header of {n} bytes in a {size}-byte file; "
                             "truncated or not safetensors)")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InputError(f"{name}: not a valid safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise InputError(f"{name}: not a valid safetensors file (its header is not a JSON object)")
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            start, stop = info["data_offsets"]
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            ok = 0 <= int(start) <= int(stop) and (info["dtype"] not in _ST_DTYPES
                                                   or int(stop) - int(start) == count * _ST_DTYPES[info["dtype"]])
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"{name}: not a valid safetensors file (bad entry for tensor {key!r})")
        end = max(end, int(stop))
    if 8 + n + end != size:
        raise InputError(f"{name}: truncated or corrupt safetensors file ({size} bytes, its header describes "
                         f"{8 + n + end}); download or save it again")


def check_gguf(path: str | os.PathLike, what: str | None = None) -> None:
    """Raise :class:`InputError` unless ``path`` is a complete GGUF file (magic, metadata, all tensor data)."""
    path = Path(path)
    name = what or str(path)
    with _read_weights(path, name) as (fh, size):
        magic = fh.read(4)
    if magic != b"GGUF":
        raise InputError(f"{name}: not a GGUF file (it does not start with 'GGUF')")
    try:
        from gguf import GGUFReader  # heavy: gguf, optional; the CLI parser and report import this module
    except ImportError:
        return  # transformers needs the gguf package anyway and says so
    try:
        reader = GGUFReader(str(path))
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as err:  # noqa: BLE001 - any parse failure means a broken file
        raise InputError(f"{name}: truncated or corrupt GGUF file ({size} bytes; "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if end > size:
        raise InputError(f"{name}: truncated GGUF file ({size} bytes, its tensors need {end})")
