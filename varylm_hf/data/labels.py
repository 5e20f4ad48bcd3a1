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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import InputError
from .normalize import DEFAULT_NORMALIZER, Normalizer

__all__ = ["LABEL_MODES", "LabelMode", "register_label_mode", "label_counts", "label_distribution"]


@dataclass(frozen=True)
class LabelMode:
    """One label view: a name, a one-line description (CLI help, model cards) and its counting function.

    ``counts(record, k, seed, normalizer)`` returns ``[(word, count), ...]`` (positive integer counts,
    most frequent first): the augmented rows of the instruct recipe and, normalised, the target
    distribution of the word-level loss. ``needs_k``: the view takes the ``k`` argument;
    ``needs_answers``: it reads the human answers (a record without any is an error).
    """

    name: str
    description: str
    counts: Callable[..., list[tuple[str, int]]]
    needs_k: bool = False
    needs_answers: bool = True


#: Every label view by name: the one declaration CLI choices, help and card text are derived from.
LABEL_MODES: dict[str, LabelMode] = {}


def register_label_mode(mode: LabelMode) -> LabelMode:
    """Add (or replace) a label view; it is then accepted everywhere a ``label_mode`` is (returns it)."""
    LABEL_MODES[mode.name] = mode
    return mode


def _answers(record: Mapping) -> list:
    answers = record.get("answers") or []
    if not answers:
        raise InputError(f"record {record.get('id')}: no answers")
    return answers


def _corpus(record, k, seed, normalizer):
    word = normalizer(record["corpus_word"])
    if not word:
        raise InputError(f"record {record.get('id')}: corpus word {record['corpus_word']!r} is empty after normalisation")
    return [(word, 1)]


def _majority(record, k, seed, normalizer):
    return [(record["majority"], 1)]


def _all(record, k, seed, normalizer):
    return [(a["word"], int(a["count"])) for a in _answers(record) if int(a["count"]) > 0]


def _sample_k(record, k, seed, normalizer):
    if not isinstance(k, int) or k < 1:
        raise InputError(f"`k` must be a positive integer for label mode 'sample_k', got {k!r}")
    bag = [a["word"] for a in _answers(record) for _ in range(a["count"])]
    rng = random.Random(f"{seed}:{record.get('id')}")
    drawn = Counter(rng.sample(bag, k) if k < len(bag) else bag)
    return sorted(drawn.items(), key=lambda kv: (-kv[1], kv[0]))


register_label_mode(LabelMode("corpus", "one-hot target on the original corpus word (the paper's \"FT orig\" "
                              "baseline)", _corpus, needs_answers=False))
register_label_mode(LabelMode("majority", "one-hot target on the most frequent human answer (the paper's "
                              "\"FT maj\" baseline)", _majority, needs_answers=False))
register_label_mode(LabelMode("all", "soft labels: the relative frequency of every human answer, p(w∣c) "
                              "(the paper's L_Var)", _all))
register_label_mode(LabelMode("sample_k", "k human answers sampled per context (the paper's label-count "
                              "ablation)", _sample_k, needs_k=True))


def label_counts(
    record: Mapping,
    mode: str = "all",
    k: int | None = None,
    seed: int = 42,
    normalizer: Normalizer = DEFAULT_NORMALIZER,
) -> list[tuple[str, int]]:
    """``[(word, count), ...]`` of ``record`` under label view ``mode``: one augmented row per count.

    ``all``: every human answer with its count; ``majority``/``corpus``: one word once (the corpus word
    normalised as the human answers are, ``"Apple."`` -> ``"apple"``); ``sample_k``: ``k`` answers drawn
    without replacement, the same for the same ``(seed, record id)`` in any run and any record order.

    >>> rec = {"id": "x", "corpus_word": "Mat.", "majority": "floor",
    ...        "answers": [{"word": "floor", "count": 3}, {"word": "mat", "count": 1}]}
    >>> label_counts(rec, "all"), label_counts(rec, "corpus")
    ([('floor', 3), ('mat', 1)], [('mat', 1)])
    """
    view = LABEL_MODES.get(mode)
    if view is None:
        raise InputError(f"`label_mode` must be one of {', '.join(LABEL_MODES)}, got {mode!r}")
    pairs = view.counts(record, k, seed, normalizer)
    if not pairs or any(not w or c < 1 for w, c in pairs):
        raise InputError(f"record {record.get('id', '?')}: no usable {mode} answer")
    return pairs


def label_distribution(
    record: Mapping,
    mode: str = "all",
    k: int | None = None,
    seed: int = 42,
    normalizer: Normalizer = DEFAULT_NORMALIZER,
) -> list[tuple[str, float]]:
    """Target distribution of ``record`` under label view ``mode`` as ``[(word, prob), ...]``.

    :func:`label_counts` normalised: probabilities sum to 1, most probable first. With ``k`` at
    least the number of answers ``sample_k`` equals ``all``.

    >>> rec = {"id": "x", "corpus_word": "Mat.", "majority": "floor",
    ...        "answers": [{"word": "floor", "count": 3}, {"word": "mat", "count": 1}]}
    >>> label_distribution(rec, "all")
    [('floor', 0.75), ('mat', 0.25)]
    >>> label_distribution(rec, "corpus")
    [('mat', 1.0)]
    """
    pairs = label_counts(record, mode, k, seed, normalizer)
    total = sum(c for _, c in pairs)
    return [(w, c / total) for w, c in pairs]
