"""Total variation distance between model and human next-word distributions (an ``evaluate`` module).

Self-contained: it needs only ``evaluate`` (and ``datasets``, which ``evaluate`` installs). The
same maths lives in ``varylm_hf.metrics`` (tests check that both agree, to float rounding).
"""

import random

import datasets
import evaluate

_DESCRIPTION = """\
Total variation distance (TVD) between the distribution of a model's next words and the
distribution of human next-word answers, per context, averaged over contexts (Ilia & Aziz, 2024;
"Learning to vary", 2025):

    TVD(p, q) = 1/2 * sum_w |p(w) - q(w)|

where p is the relative frequency of each word among the human answers of a context (cloze norms
such as Provo: ~40 answers per context) and q its relative frequency among the model's samples
(e.g. 40 ancestral samples, each cut to its first word). TVD is in [0, 1]; lower is better.

The optional oracle splits each context's human answers at random into two disjoint halves of
equal size (one answer dropped first when their number is odd) and reports the TVD between the
halves: how much two groups of people disagree, the level a model can hope to reach.

Words are compared exactly as given: normalise model words and human answers the same way first
(lower-case, strip punctuation; varylm_hf.data.normalize does this). Keep samples that produced no
word as an explicit outcome (e.g. "<no-word>") rather than dropping them.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): per context, the model's sampled words (a bag: a word
        appears once per sample).
    references (`list` of `list`): per context, the human answers, either a bag of words
        (`["the", "the", "a"]`) or a list of `{"word": str, "count": number}` dicts (counts or
        weights: finite numbers >= 0; the two shapes may be mixed). Bad input raises `ValueError`
        naming the argument and index, e.g. `references[2][0]['count']`.
    oracle (`bool`, defaults to `False`): also return the mean oracle TVD (human half vs human half).
    oracle_seed (`int`, defaults to `42`): seed of the oracle split (one split per context and seed).
    return_per_context (`bool`, defaults to `False`): also return the per-context values.

Returns:
    tvd (`float`): mean TVD over contexts, in [0, 1]; lower is better.
    oracle_tvd (`float`, with `oracle=True`): mean oracle TVD over contexts.
    per_context_tvd (`list` of `float`, with `return_per_context=True`).
    per_context_oracle_tvd (`list` of `float`, with both options).

Examples:
    >>> tvd = evaluate.load("metrics/tvd")  # or evaluate.load("varylm/tvd") from the Hub
    >>> tvd.compute(predictions=[["the", "the", "a", "a"]], references=[["the", "the", "the", "a"]])
    {'tvd': 0.25}
    >>> refs = [[{"word": "are", "count": 3}, {"word": "is", "count": 1}]]
    >>> tvd.compute(predictions=[["is", "is", "are", "<no-word>"]], references=refs, oracle=True)
    {'tvd': 0.5, 'oracle_tvd': 0.5}
"""

_CITATION = """\
@inproceedings{ilia-aziz-2024-predict,
    title = "Predict the Next Word: <Humans exhibit uncertainty in this task and language models _____>",
    author = "Ilia, Evgenia and Aziz, Wilker",
    booktitle = "Proceedings of EACL 2024 (Volume 2: Short Papers)",
    year = "2024",
}
@misc{groot-lacunes-ilia-2025-learning,
    title = "Learning to vary: Teaching LMs to reproduce human linguistic variability in next-word prediction",
    author = "Groot, Tobias and Lacunes, Salo and Ilia, Evgenia",
    year = "2025",
}
"""


#: The oracle expands a context's answers to one entry per answer; larger bags are refused.
MAX_ORACLE_ANSWERS = 10_000_000


def _check_count(count, where):
    """A count/weight: a finite number >= 0 (not a bool, a string or None); returned as float."""
    if count is None or isinstance(count, (bool, str, bytes)):
        raise ValueError(f"{where}: count must be a number >= 0, got {count!r}")
    try:
        value = float(count)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: count must be a number >= 0, got {count!r}") from None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise ValueError(f"{where}: count must be a finite number >= 0, got {count!r}")
    return value


def _check_word(word, where):
    if not isinstance(word, str):
        raise ValueError(f"{where}: expected a word (str), got {type(word).__name__}: {word!r}")
    return word


def _is_sequence(value):
    return isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and hasattr(value, "__getitem__")
                                                and not isinstance(value, (str, bytes, dict)))


def _check_inputs(predictions, references):
    """Validate the raw inputs before ``evaluate`` casts them (which truncates float counts, turns
    ``None`` into a word, or fails with a KeyError/OverflowError); returns ``(predictions, references)``
    with every reference as a list of ``{"word": str, "count": float}`` (one shape for all contexts).

    Raises ``ValueError`` naming the argument and index, e.g. ``references[2][0]["count"]``.
    """
    for name, value in (("predictions", predictions), ("references", references)):
        if value is None or isinstance(value, (str, bytes, dict)) or not _is_sequence(value):
            raise ValueError(f"`{name}` must be a list with one entry per context, got {type(value).__name__}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references (one of each per context)")
    if len(predictions) == 0:
        raise ValueError("`predictions` and `references` are empty: no contexts to evaluate")
    preds = []
    for i, pred in enumerate(predictions):
        if isinstance(pred, (str, bytes, dict)) or not _is_sequence(pred):
            raise ValueError(f"predictions[{i}]: expected a list of words (context {i}), got {type(pred).__name__}")
        if len(pred) == 0:
            raise ValueError(f"predictions[{i}]: no model words (context {i} needs at least one)")
        preds.append([_check_word(w, f"predictions[{i}][{j}]") for j, w in enumerate(pred)])
    refs = []
    for i, ref in enumerate(references):
        if isinstance(ref, dict) and "word" in ref:  # datasets hands a list of dicts over as a dict of lists
            words, counts = ref.get("word"), ref.get("count")
            if counts is None or not _is_sequence(words) or not _is_sequence(counts) or len(words) != len(counts):
                raise ValueError(f"references[{i}]: a dict of lists needs 'word' and 'count' lists of equal length")
            ref = [{"word": w, "count": c} for w, c in zip(words, counts)]
        if isinstance(ref, (str, bytes, dict)) or not _is_sequence(ref):
            raise ValueError(f"references[{i}]: expected a list of words or of {{'word', 'count'}} dicts "
                             f"(context {i}), got {type(ref).__name__}")
        if len(ref) == 0:
            raise ValueError(f"references[{i}]: no human answers (context {i} needs at least one)")
        entries = []
        for j, item in enumerate(ref):
            where = f"references[{i}][{j}]"
            if isinstance(item, dict):
                if "word" not in item:
                    raise ValueError(f"{where}: missing 'word' (expected {{'word': str, 'count': number}})")
                if "count" not in item:
                    raise ValueError(f"{where}: missing 'count' (expected {{'word': str, 'count': number}})")
                entries.append({"word": _check_word(item["word"], f"{where}['word']"),
                                "count": _check_count(item["count"], f"{where}['count']")})
            else:
                entries.append({"word": _check_word(item, where), "count": 1.0})
        refs.append(entries)
    return preds, refs


def _counts(bag):
    """``{word: count}`` of a (validated) bag of words or list of ``{"word", "count"}`` dicts."""
    counts = {}
    if isinstance(bag, dict) and "word" in bag:  # datasets may hand a list of dicts over as a dict of lists
        bag = [{"word": w, "count": c} for w, c in zip(bag["word"], bag["count"])]
    for item in bag:
        if isinstance(item, dict):
            word, count = item["word"], item.get("count", 1)
        else:
            word, count = item, 1
        if count < 0:
            raise ValueError(f"count of {word!r} must be >= 0, got {count}")
        counts[word] = counts.get(word, 0) + count
    return counts


def _tvd(p_counts, q_counts):
    tp, tq = sum(p_counts.values()), sum(q_counts.values())
    if tp <= 0 or tq <= 0:
        raise ValueError("every context needs at least one model word and one human answer")
    words = sorted(set(p_counts) | set(q_counts))  # a fixed summation order: identical floats in every run
    return min(1.0, 0.5 * sum(abs(p_counts.get(w, 0) / tp - q_counts.get(w, 0) / tq) for w in words))


def _oracle_split(counts, seed):
    """Two disjoint random halves of the answers (same algorithm as varylm_hf.metrics.oracle_split)."""
    for word, c in counts.items():
        if c != int(c):
            raise ValueError(f"the oracle needs integer counts, got {c} for {word!r}")
    if sum(counts.values()) > MAX_ORACLE_ANSWERS:
        raise ValueError(f"the oracle expands the answers one by one: {sum(counts.values()):g} answers is more "
                         f"than {MAX_ORACLE_ANSWERS:,}")
    words = sorted(w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) for _ in range(int(c)))
    if len(words) < 2:
        raise ValueError(f"the oracle needs at least 2 answers, got {len(words)}")
    rng = random.Random(f"{int(seed)}\x00" + "\x1f".join(words))
    if len(words) % 2 == 1:
        words.pop(rng.randrange(len(words)))
    rng.shuffle(words)
    half = len(words) // 2
    return words[:half], words[half:]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Tvd(evaluate.Metric):
    """TVD between model and human next-word distributions, with an optional human oracle."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("string")),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("string")),
                        "references": datasets.List({"word": datasets.Value("string"), "count": datasets.Value("float64")}),
                    }
                ),
            ],
            reference_urls=["https://aclanthology.org/2024.eacl-short.22/"],
        )

    # The inputs are validated before ``evaluate`` casts them to the features above.
    def compute(self, *, predictions=None, references=None, **kwargs):
        """Validate the inputs (``ValueError`` naming the argument and index), then compute.
"""
        if predictions is not None or references is not None:
            predictions, references = _check_inputs(predictions, references)
        return super().compute(predictions=predictions, references=references, **kwargs)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Validate a batch of contexts, then add it."""
        predictions, references = _check_inputs(predictions, references)
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Validate one context, then add it."""
        (prediction,), (reference,) = _check_inputs([prediction], [reference])
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(self, predictions, references, oracle=False, oracle_seed=42, return_per_context=False):
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references (one of each per context)")
        if not predictions:
            raise ValueError("no contexts to evaluate")
        per_context, per_oracle = [], []
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            human = _counts(ref)
            try:
                per_context.append(_tvd(human, _counts(pred)))
            except ValueError as err:
                raise ValueError(f"context {i}: {err}") from None
            if oracle:
                try:
                    a, b = _oracle_split(human, oracle_seed)
                except ValueError as err:
                    raise ValueError(f"references[{i}] (context {i}): {err}") from None
                per_oracle.append(_tvd(_counts(a), _counts(b)))
        result = {"tvd": sum(per_context) / len(per_context)}
        if oracle:
            result["oracle_tvd"] = sum(per_oracle) / len(per_oracle)
        if return_per_context:
            result["per_context_tvd"] = per_context
            if oracle:
                result["per_context_oracle_tvd"] = per_oracle
        return result
