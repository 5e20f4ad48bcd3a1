"""Bring your own cloze norms: a TSV, CSV or JSONL file with context, answer and count columns.

One row per (context, answer), e.g. (TSV)::

    passage   context                 answer   count
    cat       The cat sat on the      mat      12
    cat       The cat sat on the      floor     7

Column names are configurable. ``count`` is optional (each row then counts once); a
``passage`` column is optional: without one, a context that extends the previous one
(same text plus more words) is put in the same passage, so passage-level splits still keep
related contexts together. An optional ``target`` column gives the original corpus word.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .normalize import DEFAULT_NORMALIZER, Normalizer
from .records import make_record, validate_count

__all__ = ["load_cloze_file"]


#: Longest CSV/TSV field accepted (characters). A cloze context is one passage prefix; a longer
#: field is almost always an unbalanced quote that swallowed the rest of the file.
MAX_FIELD_CHARS = 131_072


def _open_encoding(encoding: str) -> str:
    """``utf-8`` reads with ``utf-8-sig``: a byte-order mark (Excel's "CSV UTF-8") is accepted."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"--encoding {encoding!r}: unknown encoding") from None
    return "utf-8-sig" if name == "utf-8" else encoding


def _no_duplicate_keys(where: str):
    def hook(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise InputError(f"{where}: key {key!r} appears twice in one object")
            seen.add(key)
        return dict(pairs)

    return hook


def _read_rows(path: Path, encoding: str):
    """Yield ``(line, row)``: the line number where the row starts (1 = the header of a CSV/TSV) and a dict."""
    suffix = path.suffix.lower()
    open_encoding = _open_encoding(encoding)
    try:
        if suffix in (".jsonl", ".json"):
            with open(path, encoding=open_encoding) as fh:
                for i, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line, object_pairs_hook=_no_duplicate_keys(f"{path}:{i}"))
                    except json.JSONDecodeError as err:
                        raise InputError(f"{path}:{i}: invalid JSON ({err.msg})") from None
                    except RecursionError:
                        raise InputError(f"{path}:{i}: JSON nested too deeply") from None
                    if not isinstance(row, dict):
                        raise InputError(f"{path}:{i}: expected a JSON object per line")
                    yield i, row
        elif suffix in (".tsv", ".csv", ".txt"):
            delimiter = "," if suffix == ".csv" else "\t"
            previous_limit = csv.field_size_limit(MAX_FIELD_CHARS)
            try:
                with open(path, encoding=open_encoding, newline="") as fh:
                    reader = csv.reader(fh, delimiter=delimiter)
                    header, start = None, 1
                    try:
                        for fields in reader:
                            if header is None:
                                if not any(f.strip() for f in fields):
                                    start = reader.line_num + 1
                                    continue  # blank lines before the header
                                header = [f.strip() for f in fields]
                                _check_header(header, f"{path}:{reader.line_num}")
                                start = reader.line_num + 1
                                continue
                            line = start
                            start = reader.line_num + 1
                            if not any(f.strip() for f in fields):
                                continue  # a blank line
                            if len(fields) != len(header):
                                raise InputError(
                                    f"{path}:{line}: {len(fields)} field(s), the header has {len(header)} "
                                    f"({', '.join(header)}); quote fields that hold a {'comma' if delimiter == ',' else 'tab'}"
                                )
                            yield line, dict(zip(header, fields))
                    except csv.Error as err:
                        detail = str(err)
                        if "field larger than field limit" in detail:
                            detail = (f"a field is longer than {MAX_FIELD_CHARS:,} characters "
                                      "(an unbalanced quote \" in this row or above?)")
                        raise InputError(f"{path}:{reader.line_num}: {detail}") from None
                    if header is None:
                        raise InputError(f"{path}: file is empty (expected a header row)")
            finally:
                csv.field_size_limit(previous_limit)
        else:
            raise InputError(f"{path}: unsupported extension {suffix!r} (expected .tsv, .csv or .jsonl)")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: cannot be decoded as {encoding} at byte {err.start} (give --encoding)") from None


def _check_header(header: list[str], where: str) -> None:
    seen = set()
    for name in header:
        if not name:
            raise InputError(f"{where}: the header has an empty column name")
        if name in seen:
            raise InputError(f"{where}: column {name!r} appears twice in the header")
        seen.add(name)


def _text(value, column: str, where: str, *, numbers: bool = False) -> str:
    """A cell as text: strings (and, where ``numbers``, JSON numbers); lists, objects, booleans refused."""
    if isinstance(value, str):
        return value
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    kind = {bool: "a boolean", list: "a list", dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
    raise InputError(f"{where}: {column!r} must be a string, got {kind} ({json.dumps(value)[:40]})")


@dataclass(frozen=True)
class _Columns:
    """The column names of :func:`load_cloze_file` (``None``: the column is not used)."""

    context: str
    answer: str
    count: str | None
    passage: str | None
    target: str | None


def _check_columns(path: Path, row: dict, columns: _Columns) -> None:
    """The first row must carry the context and answer columns (named in the error)."""
    missing = [c for c in (columns.context, columns.answer) if c not in row]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(map(str, row))};"
            " set the column names with --context-column/--answer-column)"
        )


def _parse_row(row: dict, columns: _Columns, where: str) -> tuple[tuple, str, int, str | None]:
    """``(key, answer, count, target)`` of one row; ``key`` is ``(passage name or None, context)``."""
    for column in (columns.context, columns.answer):
        if column not in row:  # JSONL: every line must carry the keys of the first
            raise InputError(f"{where}: missing key {column!r}")
    context = _text(row[columns.context], columns.context, where).strip()
    if not context:
        raise InputError(f"{where}: empty context")
    answer = _text(row[columns.answer], columns.answer, where, numbers=True)
    raw_count = row.get(columns.count) if columns.count else None
    count = validate_count(raw_count, where) if raw_count not in (None, "") else 1
    passage = row.get(columns.passage) if columns.passage else None
    if passage not in (None, ""):
        passage = _text(passage, columns.passage, where, numbers=True)
    key = (passage if passage not in (None, "") else None, context)
    target = None
    if columns.target and row.get(columns.target) not in (None, ""):
        target = _text(row[columns.target], columns.target, where, numbers=True)
    return key, answer, count, target


def _group_answers(path: Path, encoding: str, columns: _Columns) -> dict[tuple, dict]:
    """The rows grouped by ``(passage name or None, context)``, in order of first appearance.

    Each group: ``answers`` (``(answer, count)`` per row), ``where`` (its first row) and ``target`` (the last
    non-empty target of its rows, else ``None``).
    """
    groups: dict[tuple, dict] = {}
    for line, row in _read_rows(path, encoding):
        where = f"{path}:{line}"
        if not groups:
            _check_columns(path, row, columns)
        key, answer, count, target = _parse_row(row, columns, where)
        if key not in groups:
            groups[key] = {"answers": [], "where": where, "target": None}
        groups[key]["answers"].append((answer, count))
        if target is not None:
            groups[key]["target"] = target
    return groups


def _passage_ids(keys: list[tuple]) -> dict[tuple, int]:
    """Passage ids: given ones in order of appearance; else contexts extending the previous one share it."""
    passage_ids: dict[tuple, int] = {}
    named: dict[str, int] = {}
    previous_context, current = None, 0
    for key in keys:
        name, context = key
        if name is not None:
            passage_ids[key] = named.setdefault(name, len(named) + 1)
        else:
            if previous_context is None or not context.startswith(previous_context + " "):
                current += 1
            passage_ids[key] = current
            previous_context = context
    return passage_ids


def _make_records(groups: dict[tuple, dict], passage_ids: dict[tuple, int], source: str, normalizer: Normalizer,
                  stats: Counter | None) -> list[dict]:
    """One record per group, ids ``<source>-<passage>-<word position>`` (``b`` appended to a repeated id)."""
    records, seen_ids = [], set()
    for key, group in groups.items():
        pid, context = passage_ids[key], key[1]
        position = len(context.split()) + 1
        record_id = f"{source}-{pid:02d}-{position:03d}"
        while record_id in seen_ids:  # two contexts of one passage with the same length
            record_id += "b"
        seen_ids.add(record_id)
        records.append(
            make_record(
                record_id=record_id,
                passage_id=pid,
                word_position=position,
                context=context,
                corpus_word=group["target"],
                raw_answers=group["answers"],
                normalizer=normalizer,
                where=group["where"],
                stats=stats,
            )
        )
    return records


def load_cloze_file(
    path: str | os.PathLike,
    *,
    context_column: str = "context",
    answer_column: str = "answer",
    count_column: str | None = "count",
    passage_column: str | None = "passage",
    target_column: str | None = "target",
    encoding: str = "utf-8",
    normalizer: Normalizer = DEFAULT_NORMALIZER,
    source: str | None = None,
    stats: Counter | None = None,
) -> list[dict]:
    """Load cloze norms in the generic format (see the module docstring) as records.

    Args:
        path: a ``.tsv``, ``.csv`` or ``.jsonl`` file.
        context_column, answer_column: required columns.
        count_column: count per row; used when present in the file, else each row counts 1.
        passage_column: passage identifier; used when present, else passages are inferred.
        target_column: original next word; used when present.
        encoding: text encoding of the file.
        normalizer: the word normaliser.
        source: prefix of the record ids (default: the file's stem).
        stats: optional Counter receiving the numbers of dropped answers.

    Raises:
        InputError: missing file/columns, empty file, non-positive counts, a context whose
            answers are all empty — naming the file and row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    columns = _Columns(context_column, answer_column, count_column, passage_column, target_column)
    groups = _group_answers(path, encoding, columns)
    if not groups:
        raise InputError(f"{path}: no data rows")
    return _make_records(groups, _passage_ids(list(groups)), source or path.stem, normalizer, stats)
