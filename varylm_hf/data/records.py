"""Cloze records: one dict per context, built from (context, answer, count) observations.

A record::

    {"id": "provo-01-002", "passage_id": 1, "word_position": 2, "context": "There",
     "corpus_word": "are", "answers": [{"word": "are", "count": 16}, ...],
     "num_answers": 40, "majority": "are"}

``answers`` holds normalised words, most frequent first (ties alphabetical); ``num_answers``
is the sum of their counts; ``majority`` is the first answer. Pure Python, no torch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from ..errors import InputError
from .normalize import DEFAULT_NORMALIZER, Normalizer

__all__ = ["MAX_COUNT", "RECORD_KEYS", "make_record", "sort_answers", "validate_count"]

RECORD_KEYS = ("id", "passage_id", "word_position", "context", "corpus_word", "answers", "num_answers", "majority")
#: Counts and ``num_answers`` are stored as int32 in the dataset's parquet files.
MAX_COUNT = 2**31 - 1


def sort_answers(counts: Counter | dict) -> list[dict]:
    """``{word: count}`` -> ``[{"word", "count"}]`` sorted by count (desc) then word."""
    return [{"word": w, "count": int(c)} for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def validate_count(value, where: str) -> int:
    """Parse a response count; positive integers up to :data:`MAX_COUNT` only (``where`` names the file/row).

    Accepts ints, integral floats and their text (``"3"``, ``"3.0"``, ``"1e3"``); refuses booleans,
    lists, NaN, infinities, fractions and counts that do not fit the dataset's int32 column.
    """
    if isinstance(value, bool):
        raise InputError(f"{where}: count {str(value).lower()} is a boolean, not a number (expected a positive integer)")
    if not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: count {value!r} is not a number (expected a positive integer)")
    if isinstance(value, int):
        number = value
    else:
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{where}: count {value!r} is not a number (expected a positive integer)") from None
        if not math.isfinite(number):
            raise InputError(f"{where}: count {value!r} is not a finite number (expected a positive integer)")
        if number != int(number):
            raise InputError(f"{where}: count {value!r} is not a positive integer")
        number = int(number)
    if number <= 0:
        raise InputError(f"{where}: count {value!r} is not a positive integer")
    if number > MAX_COUNT:
        raise InputError(f"{where}: count {value!r} is too large (at most {MAX_COUNT:,}, the int32 column of the dataset)")
    return number


def make_record(
    *,
    record_id: str,
    passage_id: int,
    word_position: int,
    context: str,
    corpus_word: str | None,
    raw_answers: Iterable[tuple[str, int]],
    normalizer: Normalizer = DEFAULT_NORMALIZER,
    where: str = "",
    stats: Counter | None = None,
) -> dict:
    """Build one record from raw ``(answer, count)`` pairs, normalising and merging answers.

    Answers that normalise to ``""`` (dash-only, punctuation-only) are dropped and counted in
    ``stats["dropped_answers"]``. A context left without any answer raises :class:`InputError`.
    """
    counts: Counter = Counter()
    for answer, count in raw_answers:
        word = normalizer(answer)
        if not word:
            if stats is not None:
                stats["dropped_answers"] += count
                stats["dropped_rows"] += 1
            continue
        counts[word] += count
    if not counts:
        raise InputError(f"{where or record_id}: context {context[-40:]!r} has no usable answers")
    total = sum(counts.values())
    if total > MAX_COUNT:
        raise InputError(f"{where or record_id}: context {context[-40:]!r} has {total:,} answers in all, more than the "
                         f"dataset's int32 column holds ({MAX_COUNT:,})")
    answers = sort_answers(counts)
    return {
        "id": record_id,
        "passage_id": int(passage_id),
        "word_position": int(word_position),
        "context": context,
        "corpus_word": corpus_word or "",
        "answers": answers,
        "num_answers": sum(a["count"] for a in answers),
        "majority": answers[0]["word"],
    }
