"""Cloze records: one dict per context, built from (context, answer, count) observations.

A record::

    {"id": "provo-01-002", "passage_id": 1, "word_position": 2, "context": "There",
     "corpus_word": "are", "answers": [{"word": "are", "count": 16}, ...],
     "num_answers": 40, "majority": "are"}

``answers`` holds normalised words, most frequent first (ties alphabetical); ``num_answers``
is the sum of their counts; ``majority`` is the first answer. Pure Python, no torch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ..errors import InputError
from .normalize import DEFAULT_NORMALIZER, Normalizer

__all__ = ["RECORD_KEYS", "make_record", "sort_answers", "validate_count"]

RECORD_KEYS = ("id", "passage_id", "word_position", "context", "corpus_word", "answers", "num_answers", "majority")


def sort_answers(counts: Counter | dict) -> list[dict]:
    """``{word: count}`` -> ``[{"word", "count"}]`` sorted by count (desc) then word."""
    return [{"word": w, "count": int(c)} for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def validate_count(value, where: str) -> int:
    """Parse a response count; positive integers only (``where`` names the file/row)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: count {value!r} is not a number (expected a positive integer)") from None
    if number != number or number <= 0 or number != int(number):
        raise InputError(f"{where}: count {value!r} is not a positive integer")
    return int(number)


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
