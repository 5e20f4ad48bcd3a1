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
        (`["the", "the", "a"]`) or a list of `{"word": str, "count": int}` dicts.
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


def _counts(bag):
    """``{word: count}`` of a bag of words or a list of ``{"word", "count"}`` dicts."""
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
    words = set(p_counts) | set(q_counts)
    return min(1.0, 0.5 * sum(abs(p_counts.get(w, 0) / tp - q_counts.get(w, 0) / tq) for w in words))


def _oracle_split(counts, seed):
    """Two disjoint random halves of the answers (same algorithm as varylm_hf.metrics.oracle_split)."""
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
                        "references": datasets.List({"word": datasets.Value("string"), "count": datasets.Value("int64")}),
                    }
                ),
            ],
            reference_urls=["https://aclanthology.org/2024.eacl-short.22/"],
        )

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
                if oracle:
                    a, b = _oracle_split(human, oracle_seed)
                    per_oracle.append(_tvd(_counts(a), _counts(b)))
            except ValueError as err:
                raise ValueError(f"context {i}: {err}") from None
        result = {"tvd": sum(per_context) / len(per_context)}
        if oracle:
            result["oracle_tvd"] = sum(per_oracle) / len(per_oracle)
        if return_per_context:
            result["per_context_tvd"] = per_context
            if oracle:
                result["per_context_oracle_tvd"] = per_oracle
        return result
