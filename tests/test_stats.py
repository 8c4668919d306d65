"""The statistics layer (panda_core.stats): per-item encoding, Wilson intervals
against closed-form and textbook values, paired differences (identity, exact
McNemar, refusals) and the coverage of their bootstrap intervals in seeded
simulations where the true difference is known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panda_core.errors import PandaError
from panda_core.stats import (
    PairedDifference,
    accuracy_with_ci,
    bootstrap_mean_ci,
    cell_means,
    decode_items,
    encode_items,
    hierarchical_bootstrap,
    majority_accuracy,
    mcnemar_exact,
    ndcg_at_k,
    paired_difference,
    paired_ratio_ci,
    rank_correlation_ci,
    result_items,
    retrieval_summary,
    sign_flip_test,
    top_beats_median,
    wilson_interval,
)

Z95 = 1.959963984540054


# ------------------------------------------------------------------ items
@given(st.lists(st.booleans(), max_size=400))
def test_items_round_trip(values):
    text = encode_items(values)
    assert len(text) == len(values) and set(text) <= {"0", "1"}
    assert decode_items(text).tolist() == values


def test_items_accept_arrays_and_tensors_in_order():
    torch = pytest.importorskip("torch")
    assert encode_items(np.array([1, 0, 0, 1])) == "1001"
    assert encode_items(torch.tensor([True, False, True])) == "101"
    assert result_items({"test_correct": "0110"}).tolist() == [False, True, True, False]
    assert result_items({"test_acc": 0.5}) is None and result_items(None) is None


@pytest.mark.parametrize("bad", ["0102", "1 0", "yes"])
def test_decode_refuses_other_characters(bad):
    with pytest.raises(PandaError, match="only the characters"):
        decode_items(bad)


def test_encode_refuses_non_binary_values():
    with pytest.raises(PandaError, match="0/1"):
        encode_items([0, 2, 1])
    with pytest.raises(PandaError, match="1-D"):
        encode_items(np.zeros((2, 2)))


# -------------------------------------------------------------- intervals
def wilson_closed_form(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_the_closed_form(kn):
    k, n = kn
    low, high = wilson_interval(k, n)
    lo2, hi2 = wilson_closed_form(k, n)
    assert low == pytest.approx(max(lo2, 0.0), abs=1e-9) and high == pytest.approx(min(hi2, 1.0), abs=1e-9)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_textbook_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # z^2/(n+z^2)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    narrow, wide = wilson_interval(50, 100, 0.80), wilson_interval(50, 100, 0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(PandaError):
        wilson_interval(5, 3)
    with pytest.raises(PandaError, match="confidence"):
        wilson_interval(1, 3, confidence=1.5)


def test_accuracy_with_ci_and_majority():
    out = accuracy_with_ci([True] * 30 + [False] * 10)
    assert out["acc"] == 0.75 and out["n"] == 40
    assert out["ci"] == [round(x, 4) for x in wilson_interval(30, 40)]
    assert majority_accuracy(["pos", "neg", "pos", "pos"]) == 0.75
    assert majority_accuracy(np.array([0, 1, 2, 2, 1, 2])) == 0.5
    assert math.isnan(majority_accuracy([]))


def test_bootstrap_mean_ci_brackets_the_mean():
    values = np.array([0.71, 0.74, 0.69, 0.73, 0.75])
    low, high = bootstrap_mean_ci(values)
    assert low < values.mean() < high and high - low < 0.06
    assert bootstrap_mean_ci([0.7, 0.7, 0.7]) == (0.7, 0.7)
    assert all(math.isnan(x) for x in bootstrap_mean_ci([0.7]))


# ----------------------------------------------------------------- paired
def test_identical_inputs_differ_by_zero_with_p_one():
    rng = np.random.default_rng(3)
    a = rng.random(250) < 0.7
    res = paired_difference(a, a.copy())
    assert (res.diff, res.low, res.high, res.p_value, res.n) == (0.0, 0.0, 0.0, 1.0, 250)
    assert res.within_noise and res.to_dict()["within_noise"] is True


def test_mcnemar_exact_on_a_known_table():
    # 8 items only a got right, 2 only b, 20 both, 10 neither: p = 2 * P(X >= 8 | Bin(10, 1/2)) = 112 / 1024
    a = np.array([1] * 8 + [0] * 2 + [1] * 20 + [0] * 10, dtype=bool)
    b = np.array([0] * 8 + [1] * 2 + [1] * 20 + [0] * 10, dtype=bool)
    assert mcnemar_exact(a, b) == pytest.approx(112 / 1024)
    res = paired_difference(a, b)
    assert res.diff == pytest.approx(6 / 40) and res.p_value == pytest.approx(112 / 1024)
    assert res.low < res.diff < res.high
    swapped = paired_difference(b, a)
    assert swapped.diff == pytest.approx(-res.diff) and swapped.p_value == pytest.approx(res.p_value)


def test_paired_difference_refuses_different_items():
    with pytest.raises(PandaError, match="same test items; got 3 and 4"):
        paired_difference([1, 0, 1], [1, 0, 1, 1])
    with pytest.raises(PandaError, match="at least one"):
        paired_difference([], [])


def test_a_clear_difference_is_not_within_noise():
    a = np.ones(200, dtype=bool)
    b = np.array([True, False] * 100)
    res = paired_difference(a, b)
    assert not res.within_noise and res.low > 0.4 and res.p_value < 1e-20
    assert isinstance(res, PairedDifference) and res.confidence == 0.95


def simulate_pair(rng: np.random.Generator, n: int, joint: tuple[float, float, float, float]):
    """n items whose (a, b) outcome is (1,1), (1,0), (0,1), (0,0) with probabilities `joint`."""
    cell = rng.choice(4, size=n, p=joint)
    return np.isin(cell, (0, 1)), np.isin(cell, (0, 2))


@pytest.mark.parametrize("joint", [(0.55, 0.15, 0.08, 0.22), (0.40, 0.10, 0.10, 0.40)])
def test_bootstrap_interval_covers_the_true_difference_at_its_nominal_rate(joint):
    true_diff = joint[1] - joint[2]
    rng = np.random.default_rng(20261201)
    hits = 0
    for sim in range(200):
        a, b = simulate_pair(rng, 300, joint)
        res = paired_difference(a, b, n_resamples=1000, seed=sim)
        hits += res.low <= true_diff <= res.high
    assert 0.90 <= hits / 200 <= 0.99


def test_paired_ratio_interval_covers_the_true_ratio():
    """Zero-shot over the target's own prompt: the interval of mean(a) / mean(b) on the
    same items covers the true ratio at about its nominal rate, and refuses other items."""
    joint = (0.50, 0.05, 0.25, 0.20)  # P(a) = 0.55, P(b) = 0.75
    true_ratio = (joint[0] + joint[1]) / (joint[0] + joint[2])
    rng = np.random.default_rng(11)
    hits = 0
    for sim in range(100):
        a, b = simulate_pair(rng, 300, joint)
        low, high = paired_ratio_ci(a, b, n_resamples=1000, seed=sim)
        assert low <= a.mean() / b.mean() <= high
        hits += low <= true_ratio <= high
    assert 0.88 <= hits / 100 <= 1.0
    assert all(math.isnan(x) for x in paired_ratio_ci([1, 0], [0, 0]))
    with pytest.raises(PandaError, match="same, non-empty test items"):
        paired_ratio_ci([1, 0, 1], [1, 0])


def test_a_shifted_truth_is_rarely_covered():
    """The interval is not simply wide: a value 0.08 away from the truth is covered far less often."""
    joint = (0.55, 0.15, 0.08, 0.22)
    rng = np.random.default_rng(7)
    hits = 0
    for sim in range(100):
        a, b = simulate_pair(rng, 300, joint)
        res = paired_difference(a, b, n_resamples=1000, seed=sim)
        hits += res.low <= (joint[1] - joint[2]) + 0.08 <= res.high
    assert hits / 100 < 0.25


# ----------------------------------------------------------- hierarchical
def simulate_study(rng: np.random.Generator, targets: int, sources: int, seeds: int, items: int, effect: float,
                   sd=(0.02, 0.01, 0.01)) -> list[dict]:
    """A study whose true mean difference is `effect`: each target, source and seed shifts it by
    normal noise (sd per level), and arm a gets right what b does on the same items plus the shift."""
    cells = []
    for t in range(targets):
        e_t, base = effect + rng.normal(0, sd[0]), rng.uniform(0.55, 0.75)
        for s in range(sources):
            e_s = e_t + rng.normal(0, sd[1])
            for k in range(seeds):
                u = rng.random(items)
                cells.append({"target": f"t{t}", "source": f"s{s}", "seed": k,
                              "a": u < base + e_s + rng.normal(0, sd[2]), "b": u < base})
    return cells


def test_hierarchical_interval_covers_a_known_effect():
    rng = np.random.default_rng(11)
    hits = 0
    for sim in range(200):
        res = hierarchical_bootstrap(simulate_study(rng, 6, 3, 2, 200, 0.03), n_resamples=1000, seed=sim)
        hits += res.low <= 0.03 <= res.high
    assert 0.85 <= hits / 200 <= 0.99


def test_hierarchical_estimate_weighs_levels_and_refuses_bad_cells():
    ones, zeros = np.ones(10, dtype=bool), np.zeros(10, dtype=bool)
    half = np.array([True, False] * 5)
    cells = [  # target x: one source at +1; target y: sources at 0 and (seeds +0.5, -0.5 -> 0)
        {"target": "x", "source": "a", "seed": 0, "a": ones, "b": zeros},
        {"target": "y", "source": "a", "seed": 0, "a": half, "b": half},
        {"target": "y", "source": "b", "seed": 0, "a": ones, "b": half},
        {"target": "y", "source": "b", "seed": 1, "a": half, "b": ones},
    ]
    res = hierarchical_bootstrap(cells, n_resamples=200)
    assert res.diff == pytest.approx(0.5)  # mean over targets of (1.0, mean(0, 0)); a pooled mean would be 0.25
    assert (res.n_targets, res.n_cells, res.n_runs, res.n_items) == (2, 3, 4, 40)
    assert cell_means(cells) == {("x", "a"): 1.0, ("y", "a"): 0.0, ("y", "b"): 0.0}
    with pytest.raises(PandaError, match="same non-empty test items"):
        hierarchical_bootstrap([{"target": "x", "source": "a", "seed": 0, "a": ones, "b": ones[:5]}])
    with pytest.raises(PandaError, match="appears twice"):
        hierarchical_bootstrap(cells + cells[:1])
    with pytest.raises(PandaError, match="missing"):
        hierarchical_bootstrap([{"target": "x", "a": ones, "b": ones}])


def test_hierarchical_interval_is_wider_than_pooling_items_when_targets_differ():
    rng = np.random.default_rng(5)
    cells = simulate_study(rng, 5, 3, 2, 300, 0.02, sd=(0.08, 0.01, 0.01))
    res = hierarchical_bootstrap(cells)
    pooled = paired_difference(np.concatenate([c["a"] for c in cells]), np.concatenate([c["b"] for c in cells]),
                               n_resamples=500)
    assert (res.high - res.low) > 2 * (pooled.high - pooled.low)
    same = [c | {"b": c["a"]} for c in cells]
    null = hierarchical_bootstrap(same, n_resamples=200)
    assert (null.diff, null.low, null.high, null.p_value) == (0.0, 0.0, 0.0, 1.0) and null.within_noise


def brute_force_sign_flip(d: list[float]) -> float:
    obs = abs(sum(d))
    sums = [abs(sum(s * x for s, x in zip(signs, d, strict=True)))
            for signs in itertools.product((1, -1), repeat=len(d))]
    return sum(v >= obs - 1e-9 for v in sums) / len(sums)


def test_sign_flip_exact_p_value_on_known_cases():
    assert sign_flip_test([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)  # only all-plus and all-minus reach |6|
    assert sign_flip_test([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx(2 / 32)
    assert sign_flip_test([1.0, -1.0]) == 1.0 and sign_flip_test([0.0, 0.0]) == 1.0
    with pytest.raises(PandaError):
        sign_flip_test([])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-5, 5).map(lambda v: v / 100), min_size=1, max_size=11))
def test_sign_flip_matches_brute_force_enumeration(d):
    assert sign_flip_test(d) == pytest.approx(brute_force_sign_flip(d))


def test_sign_flip_beyond_twenty_cells_is_a_seeded_monte_carlo():
    d = np.random.default_rng(0).normal(0.3, 1.0, size=24)
    p = sign_flip_test(d, seed=1)
    assert p == sign_flip_test(d, seed=1) and 0.0 < p < 1.0
    assert sign_flip_test(np.full(24, 0.1)) < 1e-4  # all 24 cells agree: 2 / 2^24 exactly, MC gives ~1e-5


# ---------------------------------------------------------------- ranking
def test_ndcg_at_3_known_values():
    assert ndcg_at_k([3, 2, 1], [3, 2, 1]) == pytest.approx(1.0)
    # reversed: gains shifted to (0, 1, 2); DCG = 0 + 1/log2(3) + 2/2, ideal = 2 + 1/log2(3) + 0
    expected = (1 / math.log2(3) + 1) / (2 + 1 / math.log2(3))
    assert ndcg_at_k([3, 2, 1], [1, 2, 3]) == pytest.approx(expected)
    # five sources, only the top three count; the best source ranked 2nd
    gains = [0.1, 0.5, 0.2, 0.0, 0.3]
    scores = [5, 4, 3, 2, 1]  # order: 0.1, 0.5, 0.2 | 0.0, 0.3
    dcg = 0.1 + 0.5 / math.log2(3) + 0.2 / 2
    ideal = 0.5 + 0.3 / math.log2(3) + 0.2 / 2
    assert ndcg_at_k(scores, gains, k=3) == pytest.approx(dcg / ideal)
    # a tie at the top shares the first two discounts
    assert ndcg_at_k([1, 1, 0], [1, 0, 0]) == pytest.approx((0.5 * (1 + 1 / math.log2(3))) / 1.0)
    assert math.isnan(ndcg_at_k([1, 2], [0.3, 0.3])) and math.isnan(ndcg_at_k([1], [0.3]))
    assert ndcg_at_k([1, 2, 3], [0.2, 0.1, float("nan")]) == pytest.approx(ndcg_at_k([1, 2], [0.2, 0.1]))


def test_top_beats_median_and_the_summary_over_targets():
    assert top_beats_median([0.9, 0.1, 0.5], [0.3, 0.1, 0.2]) is True
    assert top_beats_median([0.1, 0.9, 0.5], [0.3, 0.1, 0.2]) is False
    assert top_beats_median([1.0], [0.2]) is None
    measured = np.array([[np.nan, 0.3, 0.1], [0.2, np.nan, 0.9], [0.4, 0.1, np.nan]])
    predicted = np.array([[9.0, 1.0, 0.0], [0.0, 9.0, 1.0], [1.0, 0.0, 9.0]])  # the diagonal is never ranked
    out = retrieval_summary(predicted, measured, k=3)
    assert out["top_beats_median_per_target"] == [True, True, True] and out["top_beats_median_rate"] == 1.0
    assert out["ndcg_at_3"] == pytest.approx(1.0) and out["n_targets_ranked"] == 3
    out = retrieval_summary(-predicted, measured, k=3)
    # two sources a target, worst first: the better one (shifted gain g) sits 2nd, DCG = g / log2(3) of g
    assert out["top_beats_median_rate"] == 0.0 and out["ndcg_at_3"] == pytest.approx(1 / math.log2(3))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6)), min_size=4, max_size=25))
def test_vectorised_rank_statistics_match_scipy(pairs):
    from scipy.stats import kendalltau, spearmanr

    x, y = (np.array(v, dtype=float) for v in zip(*pairs, strict=True))
    for method, ref in (("spearman", spearmanr), ("kendall", kendalltau)):
        out = rank_correlation_ci(x, y, method, n_resamples=200)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            assert math.isnan(out["rho"])
        else:
            assert out["rho"] == pytest.approx(float(ref(x, y).statistic))
            assert out["low"] <= out["high"]


def test_rank_correlation_interval_reflects_strength_and_size():
    rng = np.random.default_rng(2)
    x = rng.normal(size=60)
    strong = rank_correlation_ci(x, x + 0.3 * rng.normal(size=60))
    weak = rank_correlation_ci(x, rng.normal(size=60), "kendall")
    assert strong["n"] == 60 and 0.8 < strong["low"] <= strong["rho"] <= strong["high"] <= 1.0
    assert weak["low"] < 0 < weak["high"] and weak["p_value"] > 0.05
    x = rng.normal(size=200)
    noisy = x + 1.5 * rng.normal(size=200)
    many, few = rank_correlation_ci(x, noisy), rank_correlation_ci(x[:10], noisy[:10])
    assert (few["high"] - few["low"]) > 2 * (many["high"] - many["low"])
    assert rank_correlation_ci([1, 2, float("nan"), 4], [1, 2, 3, float("nan")])["n"] == 2
    with pytest.raises(ValueError):
        rank_correlation_ci(x, x, "pearson")


def test_importing_the_statistics_loads_neither_torch_nor_scipy_stats():
    """The CLI reaches panda_core.stats (through ops and the indicators) on every call, refusals included."""
    import subprocess
    import sys

    code = ("import sys, panda_core.stats, panda_core.indicators, panda_core.indicators.validation; "
            "print('torch' in sys.modules, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr
