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

import csv
import json
import os
from collections import Counter
from pathlib import Path

from ..errors import InputError
from .normalize import DEFAULT_NORMALIZER, Normalizer
from .records import make_record, validate_count

__all__ = ["load_cloze_file"]


def _read_rows(path: Path, encoding: str):
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            with open(path, encoding=encoding) as fh:
                for i, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise InputError(f"{path}:{i}: invalid JSON ({err.msg})") from None
                    if not isinstance(row, dict):
                        raise InputError(f"{path}:{i}: expected a JSON object per line")
                    yield i, row
        elif suffix in (".tsv", ".csv", ".txt"):
            delimiter = "," if suffix == ".csv" else "\t"
            with open(path, encoding=encoding, newline="") as fh:
                reader = csv.DictReader(fh, delimiter=delimiter)
                if reader.fieldnames is None:
                    raise InputError(f"{path}: file is empty (expected a header row)")
                for i, row in enumerate(reader, start=2):
                    yield i, row
        else:
            raise InputError(f"{path}: unsupported extension {suffix!r} (expected .tsv, .csv or .jsonl)")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: cannot be decoded as {encoding} at byte {err.start}") from None
    except LookupError:
        raise InputError(f"--encoding {encoding!r}: unknown encoding") from None


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
    source = source or path.stem
    groups: dict[tuple, dict] = {}
    order: list[tuple] = []
    checked_columns = False
    for line, row in _read_rows(path, encoding):
        where = f"{path}:{line}"
        if not checked_columns:
            missing = [c for c in (context_column, answer_column) if c not in row]
            if missing:
                raise InputError(
                    f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(map(str, row))};"
                    " set the column names with --context-column/--answer-column)"
                )
            checked_columns = True
        context = str(row[context_column] or "").strip()
        if not context:
            raise InputError(f"{where}: empty context")
        answer = row[answer_column]
        if answer is None:
            raise InputError(f"{where}: missing answer")
        count = validate_count(row[count_column], where) if count_column and row.get(count_column) not in (None, "") else 1
        passage = row.get(passage_column) if passage_column else None
        key = (str(passage) if passage not in (None, "") else None, context)
        if key not in groups:
            groups[key] = {"answers": [], "where": where, "target": None}
            order.append(key)
        groups[key]["answers"].append((str(answer), count))
        if target_column and row.get(target_column) not in (None, ""):
            groups[key]["target"] = str(row[target_column])
    if not order:
        raise InputError(f"{path}: no data rows")
    # Passage ids: given ones in order of appearance; else contexts extending the previous one share it.
    passage_ids: dict[tuple, int] = {}
    named: dict[str, int] = {}
    previous_context, current = None, 0
    for key in order:
        name, context = key
        if name is not None:
            passage_ids[key] = named.setdefault(name, len(named) + 1)
        else:
            if previous_context is None or not context.startswith(previous_context + " "):
                current += 1
            passage_ids[key] = current
            previous_context = context
    records, seen_ids = [], set()
    for key in order:
        group = groups[key]
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
