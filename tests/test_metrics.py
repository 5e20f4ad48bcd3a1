"""varylm_hf.metrics: hand-computed values, input shapes, errors, and no torch import."""

import math
import subprocess
import sys
from collections import Counter

import pytest

from varylm_hf import metrics as M
from varylm_hf.data.normalize import NO_WORD


def test_input_shapes_agree():
    bag = ["the", "the", "a", "cat"]
    shapes = [
        bag,
        Counter(bag),
        {"the": 0.5, "a": 0.25, "cat": 0.25},
        [{"word": "the", "count": 2}, {"word": "a", "count": 1}, {"word": "cat", "count": 1}],
        [("the", 2), ("a", 1), ("cat", 1)],
    ]
    for s in shapes:
        assert M.as_distribution(s) == {"the": 0.5, "a": 0.25, "cat": 0.25}


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="single string"):
        M.tvd("the", ["the"])
    with pytest.raises(ValueError, match="empty"):
        M.tvd([], ["a"])
    with pytest.raises(ValueError, match=">= 0"):
        M.as_distribution({"a": -1})
    with pytest.raises(ValueError, match="'word'"):
        M.as_distribution([{"count": 3}])
    with pytest.raises(ValueError, match="integer"):
        M.expand_bag({"a": 0.5})


def test_tvd_hand_computed():
    # p = {a: .5, b: .5}, q = {a: .25, b: .75} -> 1/2 (.25 + .25) = .25
    assert M.tvd(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.25)
    # p = {a: 2/3, b: 1/3}, q = {c: 1} -> disjoint -> 1
    assert M.tvd(["a", "a", "b"], ["c"]) == pytest.approx(1.0)
    assert M.tvd(["a", "b"], ["b", "a"]) == 0.0
    # p = {a:.5,b:.3,c:.2}, q = {a:.2,b:.3,d:.5}: 1/2(.3 + 0 + .2 + .5) = .5
    assert M.tvd({"a": 5, "b": 3, "c": 2}, {"a": 2, "b": 3, "d": 5}) == pytest.approx(0.5)
    # symmetric
    assert M.tvd(["x", "y", "y"], ["y"]) == M.tvd(["y"], ["x", "y", "y"])


def test_no_word_is_an_outcome():
    # 40 samples, 10 failures: the failures count as model mass outside the human words
    human = ["a"] * 40
    model = ["a"] * 30 + [NO_WORD] * 10
    assert M.tvd(human, model) == pytest.approx(0.25)
    assert M.failure_rate(model) == pytest.approx(0.25)
    assert M.failure_rate(["a"]) == 0.0


def test_oracle_split_properties():
    bag = [{"word": "a", "count": 21}, {"word": "b", "count": 10}, {"word": "c", "count": 10}]  # 41: odd
    x, y = M.oracle_split(bag, seed=7)
    assert len(x) == len(y) == 20
    # disjoint halves of the bag: together they are the bag minus one answer
    both = Counter(x) + Counter(y)
    assert sum((Counter(M.expand_bag(bag)) - both).values()) == 1
    assert not both - Counter(M.expand_bag(bag))
    # seeded and independent of the order answers are listed in
    assert M.oracle_split(bag, seed=7) == M.oracle_split(list(reversed(bag)), seed=7)
    assert M.oracle_split(bag, seed=7) != M.oracle_split(bag, seed=8)
    with pytest.raises(ValueError, match="at least 2"):
        M.oracle_split(["a"])


def test_oracle_splits_are_independent_across_contexts():
    """Mean oracle TVD over many contexts barely moves with the seed (no shared permutation)."""
    import random

    rng = random.Random(1)
    bags = [rng.choices("abcdefgh", weights=[8, 5, 3, 2, 1, 1, 1, 1], k=40) for _ in range(300)]
    means = [sum(M.oracle_tvd(b, seed) for b in bags) / len(bags) for seed in (42, 123, 456, 7, 8)]
    assert M.mean_sd(means)[1] < 0.01


def test_oracle_tvd_values():
    # all answers identical -> halves identical -> 0
    assert M.oracle_tvd(["a"] * 40) == 0.0
    # 2 answers "a","b": halves are {a} and {b} -> 1
    assert M.oracle_tvd(["a", "b"]) == 1.0
    # brute force over seeds: the value is the TVD of the halves it reports
    bag = ["a"] * 5 + ["b"] * 3 + ["c"] * 2
    for seed in range(5):
        x, y = M.oracle_split(bag, seed)
        assert M.oracle_tvd(bag, seed) == pytest.approx(M.tvd(x, y))


def test_matched_size_tvd():
    human = ["a"] * 20 + ["b"] * 20
    # a model that only says "a": each human half has TVD 1/2 with an all-"a" subset of the same size
    assert M.matched_size_tvd(human, ["a"] * 40) == pytest.approx(0.5)
    # fewer samples than two halves: independent subsets still work; too few raises
    assert M.matched_size_tvd(human, ["a"] * 25) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 20"):
        M.matched_size_tvd(human, ["a"] * 5)


def test_matched_size_tvd_unbiased_for_a_perfect_model():
    import random

    rng = random.Random(0)
    p = {"a": 0.5, "b": 0.2, "c": 0.2, "d": 0.1}
    words, weights = zip(*p.items())
    oracle, matched, full = [], [], []
    for i in range(400):
        human = rng.choices(words, weights, k=40)
        model = rng.choices(words, weights, k=40)
        oracle.append(M.oracle_tvd(human, seed=i))
        matched.append(M.matched_size_tvd(human, model, seed=i))
        full.append(M.tvd(human, model))
    mo, mm, mf = (sum(v) / len(v) for v in (oracle, matched, full))
    assert abs(mm - mo) < 0.02  # same sample sizes -> same expectation
    assert mf < mo - 0.03  # 40 vs 40 is systematically lower than the 20 vs 20 oracle


def test_exact_tvd_formula_matches_full_tvd():
    human = ["a", "a", "b", "c"]  # p = {a: .5, b: .25, c: .25}
    q = {"a": 0.5, "b": 0.1}  # c: 0, rest 0.4 elsewhere
    # 1/2 (|.5-.5| + |.25-.1| + |.25-0| + (1 - .6)) = 1/2 (.15 + .25 + .4) = .4
    assert M.exact_tvd(human, q) == pytest.approx(0.4)
    # same as the full TVD when the outside mass sits on any other words
    assert M.exact_tvd(human, q) == pytest.approx(M.tvd(human, {"a": 0.5, "b": 0.1, "x": 0.3, "y": 0.1}))
    # q identical to p -> 0; q all elsewhere -> 1
    assert M.exact_tvd(human, {"a": 0.5, "b": 0.25, "c": 0.25}) == pytest.approx(0.0)
    assert M.exact_tvd(human, {}) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="overlap"):
        M.exact_tvd(human, {"a": 0.9, "b": 0.3})


def test_entropy_coverage_hit_rate_js():
    assert M.entropy(["a", "b", "c", "d"]) == pytest.approx(2.0)
    assert M.entropy(["a"] * 7) == 0.0
    assert M.entropy(["a", "b"], base=math.e) == pytest.approx(math.log(2))
    # p = {a: .5, b: .25, c: .25}: H = .5*1 + 2 * .25 * 2 = 1.5 bits
    assert M.entropy({"a": 2, "b": 1, "c": 1}) == pytest.approx(1.5)

    assert M.unique_word_coverage(["a", "a", "b", "c", "d"], ["a", "c", "x"]) == 0.5
    # the failure outcome never counts as a produced word
    assert M.unique_word_coverage([NO_WORD, "a"], [NO_WORD]) == 0.0

    assert M.hit_rate(["paris"] * 3 + ["lyon"], "paris") == 0.75
    assert M.hit_rate(["paris"] * 3 + ["lyon"], {"paris", "lyon"}) == 1.0

    assert M.js_divergence(["a"], ["b"]) == pytest.approx(1.0)
    assert M.js_divergence(["a", "b"], ["b", "a"]) == pytest.approx(0.0)
    # p = {a: 1}, q = {a: .5, b: .5}: m = {a: .75, b: .25}
    # JS = 1/2 log2(1/.75) + 1/2 (.5 log2(.5/.75) + .5 log2(.5/.25))
    expected = 0.5 * math.log2(1 / 0.75) + 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(2))
    assert M.js_divergence(["a"], ["a", "b"]) == pytest.approx(expected)


def test_mean_sd():
    assert M.mean_sd([0.5]) == (0.5, 0.0)
    mean, sd = M.mean_sd([1.0, 2.0, 3.0])
    assert mean == 2.0 and sd == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.mean_sd([])


def test_metrics_does_not_import_torch():
    code = "import sys, varylm_hf.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_perfect_model_tvd_is_the_sampled_floor():
    bag = [{"word": "a", "count": 20}, {"word": "b", "count": 20}]
    assert M.perfect_model_tvd([{"word": "a", "count": 4}], 40) == 0.0  # one answer: any sample is exact
    values = [M.perfect_model_tvd(bag, 40, seed) for seed in range(200)]
    # |k/40 - 1/2| with k ~ Binomial(40, 1/2): mean ~ sqrt(40/(2 pi)) / 40 ~ 0.063
    assert 0.045 < sum(values) / len(values) < 0.08
    assert M.perfect_model_tvd(bag, 40, 1) == M.perfect_model_tvd(list(reversed(bag)), 40, 1)  # order-free
    with pytest.raises(ValueError, match="num_samples"):
        M.perfect_model_tvd(bag, 0)
