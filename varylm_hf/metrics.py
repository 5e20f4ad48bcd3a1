"""Distances between human and model next-word distributions (pure Python, no torch).

Every function takes *bags* or *distributions* in any of these shapes and treats them alike:

* a list of words (a bag: ``["the", "the", "a"]``);
* a list of ``{"word": w, "count": n}`` dicts (the dataset's ``answers`` column);
* a list of ``(word, weight)`` pairs (e.g. :func:`varylm_hf.data.label_distribution`);
* a mapping ``{word: weight}`` (a :class:`collections.Counter` of counts, or probabilities).

Weights are counts or probabilities; they are normalised to sum to one. Words are compared
as given: normalise human answers and model samples with the same
:class:`~varylm_hf.data.normalize.Normalizer` first (the samplers and loaders do).

Definitions (after Ilia & Aziz, 2024, and "Learning to vary", 2025):

* ``tvd(p, q) = 1/2 sum_w |p(w) - q(w)|`` in [0, 1], lower is better;
* the *oracle* TVD of a context splits its human answers at random into two disjoint halves of
  equal size (one answer dropped first when the count is odd) and takes the TVD of the halves;
* the *exact* TVD from exact model probabilities ``q(w)`` of the human words ``H`` only:
  ``1/2 (sum_{w in H} |p(w) - q(w)| + (1 - sum_{w in H} q(w)))`` (all mass outside ``H``
  counts as disagreement, since ``p`` is zero there).
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from .data.normalize import NO_WORD

__all__ = [
    "SAMPLED_METRICS",
    "register_sampled_metric",
    "as_counts",
    "as_distribution",
    "expand_bag",
    "tvd",
    "oracle_split",
    "oracle_tvd",
    "perfect_model_tvd",
    "matched_size_tvd",
    "exact_tvd",
    "entropy",
    "unique_word_coverage",
    "hit_rate",
    "failure_rate",
    "js_divergence",
    "mean_sd",
    "counts_of",
    "NO_WORD",
]

#: :func:`expand_bag` (and so the oracle) refuses bags of more answers than this.
MAX_BAG = 10_000_000


def as_counts(bag) -> dict[str, float]:
    """Turn any accepted bag/distribution shape (see the module docstring) into ``{word: weight}``.

    Weights of repeated words are added. Raises ``ValueError`` on a negative or non-numeric
    weight, or an entry that is neither a word, a ``{word, count}`` dict nor a ``(word, weight)`` pair.
    """
    out: dict[str, float] = {}

    def add(word, weight):
        if not isinstance(word, str):
            raise ValueError(f"expected a word (str), got {type(word).__name__}: {word!r}")
        if isinstance(weight, (bool, str, bytes)):
            raise ValueError(f"weight of {word!r} is not a number: {weight!r}")
        try:
            weight = float(weight)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"weight of {word!r} is not a number: {weight!r}") from None
        if weight < 0 or not math.isfinite(weight):
            raise ValueError(f"weight of {word!r} must be a finite number >= 0, got {weight}")
        out[word] = out.get(word, 0.0) + weight

    if isinstance(bag, Mapping):
        for word, weight in bag.items():
            add(word, weight)
        return out
    if isinstance(bag, str):
        raise ValueError(f"expected a bag of words, got the single string {bag!r}; wrap it in a list")
    for item in bag:
        if isinstance(item, str):
            add(item, 1)
        elif isinstance(item, Mapping):
            if "word" not in item:
                raise ValueError(f"answer {item!r} has no 'word' key (expected {{'word': w, 'count': n}})")
            add(item["word"], item.get("count", 1))
        elif isinstance(item, Sequence) and len(item) == 2:
            add(item[0], item[1])
        else:
            raise ValueError(f"cannot read {item!r} as a word, a {{word, count}} dict or a (word, weight) pair")
    return out


def as_distribution(bag) -> dict[str, float]:
    """Normalise a bag/distribution (any accepted shape) to probabilities summing to one.

    Words with weight zero are dropped. Raises ``ValueError`` if the total weight is zero.

    >>> as_distribution(["a", "a", "b", "c"])
    {'a': 0.5, 'b': 0.25, 'c': 0.25}
    """
    counts = as_counts(bag)
    total = sum(counts.values())
    if total <= 0:
        raise ValueError("empty bag: a distribution needs at least one word with positive weight")
    return {w: c / total for w, c in counts.items() if c > 0}


def expand_bag(bag) -> list[str]:
    """A list with each word repeated by its (integer) count, most frequent first, ties by word.

    Needs integer counts (a bag, not probabilities). ``[{"word": "a", "count": 2}]`` -> ``["a", "a"]``.
    """
    counts = as_counts(bag)
    if sum(counts.values()) > MAX_BAG:
        raise ValueError(f"a bag of {sum(counts.values()):g} answers is too large to expand (at most {MAX_BAG:,})")
    words: list[str] = []
    for word, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if count != int(count):
            raise ValueError(f"count of {word!r} is not an integer ({count}); a bag needs integer counts")
        words.extend([word] * int(count))
    return words


def tvd(p, q) -> float:
    """Total variation distance ``1/2 sum_w |p(w) - q(w)|`` between two bags or distributions.

    In [0, 1]; 0 when identical, 1 when the supports are disjoint. Lower is better.

    >>> tvd(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    0.25
    """
    dp, dq = as_distribution(p), as_distribution(q)
    # sorted: a fixed summation order, so the float is identical whatever PYTHONHASHSEED is
    total = sum(abs(dp.get(w, 0.0) - dq.get(w, 0.0)) for w in sorted(dp.keys() | dq.keys()))
    return min(1.0, 0.5 * total)


def oracle_split(bag, seed: int = 42) -> tuple[list[str], list[str]]:
    """Split a bag of human answers at random into two disjoint halves of equal size.

    The bag is expanded to one entry per answer (sorted, so the result does not depend on the
    order answers are listed in); when the number of answers is odd one answer is dropped at
    random first. The random generator is seeded with ``seed`` *and the bag itself*: one seed
    gives one split per bag, and different contexts get independent splits (one shared
    permutation for every bag of the same size would correlate the splits across contexts and
    inflate the seed-to-seed spread of a mean oracle TVD ~5x).

    Returns:
        ``(half_a, half_b)``, each of length ``n // 2``.
    """
    words = sorted(expand_bag(bag))
    if len(words) < 2:
        raise ValueError(f"the oracle needs at least 2 answers, got {len(words)}")
    rng = random.Random(f"{int(seed)}\x00" + "\x1f".join(words))  # str seeds hash deterministically
    if len(words) % 2 == 1:
        words.pop(rng.randrange(len(words)))
    rng.shuffle(words)
    half = len(words) // 2
    return words[:half], words[half:]


def oracle_tvd(bag, seed: int = 42) -> float:
    """TVD between the two halves of :func:`oracle_split` (the paper's 'Oracle' baseline).

    It estimates how much two groups of people disagree on a context; a model cannot be
    expected to do better (see :func:`matched_size_tvd` for a comparison at equal sample sizes).
    """
    half_a, half_b = oracle_split(bag, seed)
    return tvd(half_a, half_b)


def perfect_model_tvd(bag, num_samples: int, seed: int = 42) -> float:
    """The floor of the sampled TVD: a model whose q equals the human p, sampled ``num_samples`` times.

    ``num_samples`` answers are drawn with replacement from the bag (seeded by ``seed`` and the bag,
    like :func:`oracle_split`) and compared with the whole bag. With 40 samples this is ~0.2 on Provo
    test contexts, not 0: sampled TVDs below it are not reachable, and the gap grows with the spread
    of p, so spread-out models are biased more than peaked ones.

    >>> perfect_model_tvd([{"word": "mat", "count": 3}], 40)
    0.0
    """
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be >= 1, got {num_samples}")
    words = sorted(expand_bag(bag))
    if not words:
        raise ValueError("`bag` is empty")
    rng = random.Random(f"{int(seed)}\x00perfect\x00" + "\x1f".join(words))
    return tvd(bag, [rng.choice(words) for _ in range(num_samples)])


def matched_size_tvd(human, model_samples, seed: int = 42) -> float:
    """Model-vs-human TVD measured at the oracle's sample sizes.

    TVD between two *empirical* distributions grows as the samples shrink, so the oracle
    (two halves of ~20 answers) is inflated relative to a model scored with 40 samples against
    all ~40 answers: a perfect model sampled that way scores *below* the oracle on average.
    This variant splits the human bag exactly as :func:`oracle_split` does (same seed), compares
    each half with a random subset of the model samples of the same size (disjoint subsets when
    there are enough samples) and averages the two TVDs. A model that samples from the human
    distribution then has the same expected value as :func:`oracle_tvd`.
    """
    half_a, half_b = oracle_split(human, seed)
    samples = expand_bag(model_samples)
    m = len(half_a)
    if len(samples) < m:
        raise ValueError(f"matched-size TVD needs at least {m} model samples, got {len(samples)}")
    rng = random.Random(f"{int(seed)}\x01" + "\x1f".join(samples))
    if len(samples) >= 2 * m:
        picked = rng.sample(samples, 2 * m)
        sub_a, sub_b = picked[:m], picked[m:]
    else:
        sub_a, sub_b = rng.sample(samples, m), rng.sample(samples, m)
    return 0.5 * (tvd(half_a, sub_a) + tvd(half_b, sub_b))


def exact_tvd(human, model_probs: Mapping[str, float], tolerance: float = 1e-6) -> float:
    """TVD from exact model probabilities of the human words only.

    ``1/2 (sum_{w in H} |p(w) - q(w)| + (1 - sum_{w in H} q(w)))``: the model mass outside the
    human words ``H`` all counts as disagreement. ``model_probs`` maps each human word to
    ``q(w)`` (missing words count as ``q = 0``; extra words are ignored).

    Raises ``ValueError`` if ``sum_{w in H} q(w)`` exceeds one by more than ``tolerance``
    (overlapping outcomes, e.g. a word probability without an end-of-word term).

    >>> round(exact_tvd(["a", "a", "b", "c"], {"a": 0.5, "b": 0.1}), 6)
    0.4
    """
    p = as_distribution(human)
    q = {w: float(model_probs.get(w, 0.0)) for w in p}
    for w, v in q.items():
        if v < 0 or math.isnan(v):
            raise ValueError(f"model probability of {w!r} must be in [0, 1], got {v}")
    mass = sum(q.values())
    if mass > 1.0 + tolerance:
        raise ValueError(
            f"model probabilities of the human words sum to {mass:.6f} > 1: the outcomes overlap "
            "(use an end-of-word word probability, definition='eow')"
        )
    diff = sum(abs(p[w] - q[w]) for w in p)
    return min(1.0, max(0.0, 0.5 * (diff + max(0.0, 1.0 - mass))))


def entropy(bag, base: float = 2.0) -> float:
    """Shannon entropy of a bag/distribution, in bits by default (``base=math.e`` for nats).

    >>> entropy(["a", "b"])
    1.0
    """
    d = as_distribution(bag)
    h = -sum(v * math.log(v) for v in d.values() if v > 0)
    return h / math.log(base) + 0.0


def unique_word_coverage(human, model, ignore=(NO_WORD,)) -> float:
    """Fraction of the distinct human words that the model also produced (paper Fig. 7).

    ``ignore`` lists outcomes that never count as produced words (the failure outcome).

    >>> unique_word_coverage(["a", "a", "b", "c", "d"], ["a", "c", "x"])
    0.5
    """
    h = {w for w, c in as_counts(human).items() if c > 0}
    m = {w for w, c in as_counts(model).items() if c > 0 and w not in ignore}
    if not h:
        raise ValueError("empty human bag: coverage is undefined")
    return len(h & m) / len(h)


def hit_rate(samples, target) -> float:
    """Fraction of the samples equal to ``target`` (a word, or a collection of accepted words).

    Used for tasks with one right answer (the paper's WebQuestions check).

    >>> hit_rate(["paris", "paris", "lyon", "<no-word>"], "paris")
    0.5
    """
    targets = {target} if isinstance(target, str) else set(target)
    d = as_distribution(samples)
    return sum(v for w, v in d.items() if w in targets)


def failure_rate(samples, failure: str = NO_WORD) -> float:
    """Fraction of the samples that produced no word (the :data:`NO_WORD` outcome)."""
    return as_distribution(samples).get(failure, 0.0)


def js_divergence(p, q, base: float = 2.0) -> float:
    """Jensen-Shannon divergence between two bags/distributions (bits by default; in [0, 1] for base 2).

    ``JS = 1/2 KL(p || m) + 1/2 KL(q || m)`` with ``m = (p + q) / 2``.

    >>> js_divergence(["a"], ["b"])
    1.0
    """
    dp, dq = as_distribution(p), as_distribution(q)
    total = 0.0
    for w in sorted(dp.keys() | dq.keys()):  # fixed summation order (PYTHONHASHSEED-independent)
        a, b = dp.get(w, 0.0), dq.get(w, 0.0)
        m = 0.5 * (a + b)
        if a > 0:
            total += 0.5 * a * math.log(a / m)
        if b > 0:
            total += 0.5 * b * math.log(b / m)
    return max(0.0, total / math.log(base))


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``n - 1`` denominator; 0.0 for a single value).

    Used for 'mean ± SD over seeds' (each value is one seed's mean over contexts).
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_sd needs at least one value")
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return statistics.fmean(vals), sd


def counts_of(samples: Iterable[str]) -> dict[str, int]:
    """``{word: count}`` of a list of sampled words, most frequent first (a plain dict for JSON)."""
    return dict(sorted(Counter(samples).items(), key=lambda kv: (-kv[1], kv[0])))


# --------------------------------------------------------------------------- the metrics of a sampled row

#: Per-context metrics of one seed's samples: ``name -> fn(record, samples, seed)`` (a float, or ``None`` when
#: it does not apply). Each becomes a key of the sampled rows and of ``summary["sampled"]`` (per-seed means,
#: mean ± SD over seeds, :func:`varylm_hf.report.summarize`). A new metric is one function in this module and
#: one entry here (or a :func:`register_sampled_metric` call from outside).
SAMPLED_METRICS: dict = {
    "tvd": lambda rec, s, seed: tvd(rec["answers"], s),
    "oracle_tvd": lambda rec, s, seed: oracle_tvd(rec["answers"], seed),
    "perfect_tvd": lambda rec, s, seed: perfect_model_tvd(rec["answers"], len(s), seed),
    "matched_tvd": lambda rec, s, seed: (matched_size_tvd(rec["answers"], s, seed)
                                         if len(s) >= rec["num_answers"] // 2 else None),
    "entropy": lambda rec, s, seed: entropy(s),
    "human_entropy": lambda rec, s, seed: entropy(rec["answers"]),
    "coverage": lambda rec, s, seed: unique_word_coverage(rec["answers"], s),
    "failure_rate": lambda rec, s, seed: failure_rate(s),
    "js": lambda rec, s, seed: js_divergence(rec["answers"], s),
}
#: Sampled-row keys that are not averaged into the summary (the human side is summarised once, elsewhere).
_NOT_SUMMARISED = ("human_entropy",)


def register_sampled_metric(name: str, fn) -> None:
    """Add (or replace) a per-context metric of the samples: ``fn(record, samples, seed) -> float | None``."""
    SAMPLED_METRICS[name] = fn
