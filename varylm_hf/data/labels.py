"""Label views: the target distribution p(w|c) a training run uses for a record.

* ``corpus``: the original word of the text (one-hot; "FT orig" in the paper);
* ``majority``: the most frequent human answer (one-hot; "FT maj");
* ``all``: the full human answer distribution ("FT mul. labels");
* ``sample_k``: ``k`` answers drawn without replacement from the human bag, seeded per
  record (the paper's label-count ablation, k = 1, 2, 4, 16, 32).

Pure Python (no torch).
"""

from __future__ import annotations

import random
from collections import Counter

from ..errors import InputError
from .normalize import DEFAULT_NORMALIZER, Normalizer

__all__ = ["LABEL_MODES", "label_distribution"]

LABEL_MODES = ("corpus", "majority", "all", "sample_k")


def label_distribution(
    record: dict,
    mode: str = "all",
    k: int | None = None,
    seed: int = 42,
    normalizer: Normalizer = DEFAULT_NORMALIZER,
) -> list[tuple[str, float]]:
    """Target distribution of ``record`` under label view ``mode`` as ``[(word, prob), ...]``.

    Probabilities sum to 1; words are normalised and listed most probable first.
    ``sample_k`` draws the same ``k`` answers for the same ``(seed, record id)`` in any run
    and any order of records; with ``k`` at least the number of answers it equals ``all``.

    >>> rec = {"id": "x", "corpus_word": "Mat.", "majority": "floor",
    ...        "answers": [{"word": "floor", "count": 3}, {"word": "mat", "count": 1}]}
    >>> label_distribution(rec, "all")
    [('floor', 0.75), ('mat', 0.25)]
    >>> label_distribution(rec, "corpus")
    [('mat', 1.0)]
    """
    if mode == "corpus":
        word = normalizer(record["corpus_word"])
        if not word:
            raise InputError(f"record {record.get('id')}: corpus word {record['corpus_word']!r} is empty after normalisation")
        return [(word, 1.0)]
    if mode == "majority":
        return [(record["majority"], 1.0)]
    answers = record["answers"]
    if not answers:
        raise InputError(f"record {record.get('id')}: no answers")
    if mode == "all":
        total = sum(a["count"] for a in answers)
        return [(a["word"], a["count"] / total) for a in answers]
    if mode == "sample_k":
        if not isinstance(k, int) or k < 1:
            raise InputError(f"`k` must be a positive integer for label mode 'sample_k', got {k!r}")
        bag = [a["word"] for a in answers for _ in range(a["count"])]
        rng = random.Random(f"{seed}:{record.get('id')}")
        drawn = Counter(rng.sample(bag, k) if k < len(bag) else bag)
        return [(w, c / sum(drawn.values())) for w, c in sorted(drawn.items(), key=lambda kv: (-kv[1], kv[0]))]
    raise InputError(f"`label_mode` must be one of {', '.join(LABEL_MODES)}, got {mode!r}")
