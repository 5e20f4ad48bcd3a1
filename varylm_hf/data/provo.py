"""The Provo Corpus predictability norms (Luke & Christianson 2018, CC BY 4.0).

Two sources give the same records:

* the copy shipped inside the package (default, offline): :func:`load_provo`;
* the official OSF file ``Provo_Corpus-Predictability_Norms.csv`` (cp1252 with MacRoman
  punctuation bytes): ``load_provo(path)``, or ``load_provo(download=True)`` to fetch it.

Both go through :func:`build_records`, so a defect is handled the same way in both.
Known defects of the norms and what we do (see dataset_card.md):

* passage 55 word 3 is missing and its answers are filed under passage 18 word 3, which
  therefore has ~82 answers from two different contexts: dropped by default
  (``merged_context="drop"``), kept with ``"keep"`` to reproduce the paper's 2,687 contexts;
* answers with no letter or digit (35 dash-only, a few ``.``/``,``) are dropped by the
  normaliser;
* 10 answers that pandas read as NaN in the public derived files are lost from the packaged
  copy; the official file read with ``keep_default_na=False`` keeps them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import urllib.request
from collections import Counter, defaultdict
from importlib import resources
from pathlib import Path

from ..errors import InputError
from .normalize import DEFAULT_NORMALIZER, Normalizer
from .records import make_record, validate_count

__all__ = [
    "PROVO_URL",
    "PROVO_SHA256",
    "PROVO_FILENAME",
    "MERGED_CONTEXT",
    "load_provo",
    "read_official_csv",
    "read_packaged",
    "build_records",
    "download_provo_csv",
    "repair_text",
]

PROVO_URL = "https://osf.io/download/e4a2m/"
PROVO_SHA256 = "965fb72eab55f51e08fc1b5622638b85b1085976ff513e2a7bee4adbbd4e6489"
PROVO_FILENAME = "Provo_Corpus-Predictability_Norms.csv"
#: (passage, word) that holds the answers of two contexts (18/3 and the missing 55/3).
MERGED_CONTEXT = (18, 3)
_REQUIRED = ("Text_ID", "Text", "Word_Number", "Response", "Response_Count")
# cp1252 renderings of MacRoman punctuation in the passage texts.
_TEXT_REPAIR = {"\u00d5": "\u2019", "\u00d4": "\u2018", "\u00d2": "\u201c", "\u00d3": "\u201d", "\u00d1": "\u2014"}


def repair_text(text: str) -> str:
    """Map the MacRoman-read-as-cp1252 punctuation of the norms back (``doesnÕt`` -> ``doesn’t``)."""
    return "".join(_TEXT_REPAIR.get(ch, ch) for ch in text)


def _passage_words(text: str) -> list[str]:
    """Split a passage into the norms' words: on spaces, dropping stray dash tokens (passage 36)."""
    return [w for w in repair_text(text).split() if w not in ("\u2014", "-", "\u2013")]


def build_records(
    passages: dict[int, str],
    responses,
    *,
    normalizer: Normalizer = DEFAULT_NORMALIZER,
    merged_context: str = "drop",
    source: str = "provo",
    stats: Counter | None = None,
) -> list[dict]:
    """Build one record per (passage, word) from passage texts and raw response rows.

    Args:
        passages: ``{Text_ID: passage text}``.
        responses: iterable of ``(Text_ID, Word_Number, response, count, where)`` where
            ``where`` names the source row for error messages.
        normalizer: the word normaliser (also applied to the corpus word for labels).
        merged_context: ``"drop"`` (default) or ``"keep"`` the context (18, 3), which holds
            the answers of two contexts.
        source: prefix of the record ids.
        stats: optional Counter that receives the numbers of dropped answers/contexts.

    Returns:
        Records sorted by passage and word position.
    """
    if merged_context not in ("drop", "keep"):
        raise InputError(f"`merged_context` must be 'drop' or 'keep', got {merged_context!r}")
    stats = stats if stats is not None else Counter()
    grouped: dict[tuple[int, int], list] = defaultdict(list)
    first_row: dict[tuple[int, int], str] = {}
    for tid, wn, response, count, where in responses:
        grouped[(tid, wn)].append((response, count))
        first_row.setdefault((tid, wn), where)
    words_cache: dict[int, list[str]] = {}
    records = []
    for (tid, wn) in sorted(grouped):
        where = first_row[(tid, wn)]
        if tid not in passages:
            raise InputError(f"{where}: Text_ID {tid} has no passage text")
        words = words_cache.setdefault(tid, _passage_words(passages[tid]))
        if not 2 <= wn <= len(words):
            raise InputError(f"{where}: Word_Number {wn} outside 2..{len(words)} for Text_ID {tid}")
        if (tid, wn) == MERGED_CONTEXT and merged_context == "drop":
            stats["dropped_contexts"] += 1
            stats["dropped_answers_merged"] += sum(c for _, c in grouped[(tid, wn)])
            continue
        records.append(
            make_record(
                record_id=f"{source}-{tid:02d}-{wn:03d}",
                passage_id=tid,
                word_position=wn,
                context=" ".join(words[: wn - 1]),
                corpus_word=words[wn - 1],
                raw_answers=grouped[(tid, wn)],
                normalizer=normalizer,
                where=where,
                stats=stats,
            )
        )
    return records


def read_packaged() -> tuple[dict[int, str], list[tuple]]:
    """Passages and response rows of the Provo copy shipped in the package."""
    ref = resources.files("varylm_hf.data").joinpath("provo").joinpath("provo_norms.json.gz")
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        payload = json.load(fh)
    passages = {int(k): v for k, v in payload["passages"].items()}
    rows = [(t, w, r, c, f"packaged Provo row {i + 1}") for i, (t, w, r, c) in enumerate(payload["responses"])]
    return passages, rows


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_official_csv(
    path: str | os.PathLike, *, encoding: str = "cp1252", sha256: str | None = None
) -> tuple[dict[int, str], list[tuple]]:
    """Read the official ``Provo_Corpus-Predictability_Norms.csv``.

    Args:
        path: the CSV file.
        encoding: the file's encoding (``cp1252``, the official one; ``mac_roman`` also works).
        sha256: when given, the file's digest must match (use :data:`PROVO_SHA256` for the
            official release).

    Returns:
        ``(passages, rows)`` for :func:`build_records`. The passage text of each Text_ID is the
        largest of its ``Text`` values (passage 27 comes in two spellings).
    """
    import pandas as pd  # heavy: pandas; the CLI parser imports varylm_hf.data

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (expected the Provo norms CSV)")
    try:
        "".encode(encoding)
    except LookupError:
        raise InputError(f"--encoding {encoding!r}: unknown encoding") from None
    if sha256 and _sha256(path) != sha256.lower():
        raise InputError(f"{path}: sha256 {_sha256(path)} does not match the expected {sha256}")
    try:
        frame = pd.read_csv(path, encoding=encoding, keep_default_na=False, dtype=str)
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: cannot be decoded as {encoding} at byte {err.start}") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty (expected the Provo norms CSV)") from None
    except pd.errors.ParserError as err:  # ragged rows, unbalanced quotes (the message gives the line)
        raise InputError(f"{path}: cannot be parsed as CSV ({str(err).strip().splitlines()[0]})") from None
    # a byte-order mark (Excel's "CSV UTF-8"), read as UTF-8 or as cp1252, is not part of the first column name
    frame.columns = [str(c).lstrip("\ufeff").removeprefix("\u00ef\u00bb\u00bf") for c in frame.columns]
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (expected the Provo norms CSV header)")
    if frame.empty:
        raise InputError(f"{path}: no data rows")
    passages: dict[int, str] = {}
    rows = []
    for i, rec in enumerate(frame[list(_REQUIRED)].itertuples(index=False), start=2):
        where = f"{path}:{i}"
        try:
            tid, wn = int(rec.Text_ID), int(float(rec.Word_Number))
        except (ValueError, OverflowError):
            raise InputError(f"{where}: Text_ID/Word_Number {rec.Text_ID!r}/{rec.Word_Number!r} are not integers") from None
        if rec.Text and rec.Text > passages.get(tid, ""):
            passages[tid] = rec.Text
        if rec.Response == "" and rec.Response_Count in ("", "0"):
            continue  # a word nobody answered for: no observation
        rows.append((tid, wn, rec.Response, validate_count(rec.Response_Count, where), where))
    return passages, rows


def download_provo_csv(
    dest: str | os.PathLike, *, url: str = PROVO_URL, sha256: str | None = PROVO_SHA256, timeout: float = 60.0
) -> Path:
    """Download the official norms from OSF to ``dest`` (a folder or file path), checking its sha256.

    The file is written to a temporary name and moved into place only when complete and
    verified, so a failed download leaves nothing behind. Returns the file's path.
    """
    dest = Path(dest)
    target = dest / PROVO_FILENAME if dest.is_dir() or not dest.suffix else dest
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".provo-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        if sha256 and _sha256(Path(tmp)) != sha256.lower():
            raise InputError(f"{url}: downloaded file's sha256 does not match {sha256}")
        os.replace(tmp, target)
    except OSError as err:
        raise InputError(f"{url}: download failed ({err})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_provo(
    path: str | os.PathLike | None = None,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    encoding: str = "cp1252",
    sha256: str | None = None,
    normalizer: Normalizer = DEFAULT_NORMALIZER,
    merged_context: str = "drop",
    stats: Counter | None = None,
) -> list[dict]:
    """Load the Provo cloze norms as records (one per context).

    Args:
        path: the official CSV; ``None`` reads the copy shipped in the package.
        download: fetch the official CSV from OSF into ``cache_dir`` (default
            ``~/.cache/varylm``) when ``path`` is ``None``; the sha256 is checked.
        encoding: encoding of the official CSV.
        sha256: expected digest of ``path`` (optional).
        normalizer: the word normaliser.
        merged_context: ``"drop"`` or ``"keep"`` passage 18 word 3 (see the module docstring).
        stats: optional Counter receiving the numbers of dropped answers and contexts.

    Example:
        >>> records = load_provo()
        >>> len(records), records[0]["context"], records[0]["majority"]
        (2686, 'There', 'are')
    """
    if path is None and download:
        cache = Path(cache_dir or Path.home() / ".cache" / "varylm")
        path = cache / PROVO_FILENAME
        if not path.is_file():
            download_provo_csv(path)
        sha256 = sha256 or PROVO_SHA256
    if path is None:
        passages, rows = read_packaged()
    else:
        passages, rows = read_official_csv(path, encoding=encoding, sha256=sha256)
    return build_records(passages, rows, normalizer=normalizer, merged_context=merged_context, stats=stats)
