"""The statistics layer (panda_core.stats): per-item encoding, Wilson intervals
against closed-form and textbook values, paired differences (identity, exact
McNemar, refusals) and the coverage of their bootstrap intervals in seeded
simulations where the true difference is known."""

from __future__ import annotations

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
    decode_items,
    encode_items,
    majority_accuracy,
    mcnemar_exact,
    paired_difference,
    result_items,
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
