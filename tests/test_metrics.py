"""Indicators against small hand-computed cases, and their contracts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from panda_core import metrics
from panda_core.errors import PandaError
from panda_core.prompts import SoftPrompt


def test_binary_cosine_is_overlap_over_geometric_mean_of_sizes():
    a = torch.tensor([[1, 1, 0, 0, 1], [1, 0, 0, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.float)
    on = metrics.binary_cosine(a)
    # |A0 n A1| = 2, |A0| = |A1| = 3  -> 2/3; A2 shares nothing with A0
    assert on[0, 1] == pytest.approx(2 / 3)
    assert on[0, 2] == 0
    assert torch.allclose(on.diagonal(), torch.ones(3, dtype=on.dtype))


def test_c_avg_of_two_2x2_prompts_matches_hand_computation():
    p1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p2 = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # cos pairs: (e1,[1,1])=1/sqrt2, (e1,e1)=1, (e2,[1,1])=1/sqrt2, (e2,e1)=0 -> mean
    expected = (1 / math.sqrt(2) + 1 + 1 / math.sqrt(2) + 0) / 4
    got = metrics.c_avg(torch.stack([p1, p2]))
    assert got[0, 1].item() == pytest.approx(expected)
    assert got[1, 0].item() == pytest.approx(expected)


def test_e_concat_e_avg_c_concat_spot_hand_cases():
    p1 = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p2 = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    P = torch.stack([p1, p2])
    assert metrics.e_concat(P)[0, 1].item() == pytest.approx(1 / (1 + 5))
    # token distances: |0-(3,4)|=5, |0-0|=0, twice -> mean 2.5
    assert metrics.e_avg(P)[0, 1].item() == pytest.approx(1 / (1 + 2.5))
    q1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    q2 = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    Q = torch.stack([q1, q2])
    # flattened (1,0,1,0).(0,1,2,0) = 2 ; norms sqrt2 * sqrt5
    assert metrics.c_concat(Q)[0, 1].item() == pytest.approx(2 / (math.sqrt(2) * math.sqrt(5)))
    # means (1,0) and (1,0.5)
    assert metrics.spot(Q)[0, 1].item() == pytest.approx(1 / math.sqrt(1.25))


@settings(max_examples=50, deadline=None)
@given(k=st.integers(2, 5), n=st.integers(1, 4), d=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_embedding_indicators_are_symmetric_with_unit_diagonal(k, n, d, seed):
    P = torch.randn(k, n, d, generator=torch.Generator().manual_seed(seed))
    for name, fn in metrics.EMBEDDING_FUNCS.items():
        M = fn(P)
        assert torch.allclose(M, M.T, atol=1e-9), name
        if name not in ("c_avg", "e_avg"):  # token-averaged: the diagonal compares a prompt's distinct tokens
            assert torch.allclose(M.diagonal(), torch.ones(k, dtype=M.dtype), atol=1e-9), name


def test_prompts_of_different_shapes_or_backbones_are_refused():
    a = SoftPrompt(tensor=torch.randn(4, 8), backbone="minilm", task="a")
    b = SoftPrompt(tensor=torch.randn(5, 8), backbone="minilm", task="b")
    c = SoftPrompt(tensor=torch.randn(4, 8), backbone="mpnet", task="c")
    with pytest.raises(PandaError, match="different shapes"):
        metrics.similarity("c_avg", [a, b])
    with pytest.raises(PandaError, match="different backbones"):
        metrics.similarity("c_avg", [a, c])
    with pytest.raises(PandaError, match="unknown metric"):
        metrics.similarity("nope", [a, a])


def test_rank_correlation_perfect_and_reversed():
    measured = np.array([[np.nan, 1.0, 3.0], [2.0, np.nan, 2.0], [3.0, 3.0, np.nan], [1.0, 2.0, 1.0]])
    good = rank_input = measured.copy()
    good = np.nan_to_num(rank_input, nan=0.0)
    res = metrics.rank_correlation(good, measured)
    assert res["spearman_pooled"] == pytest.approx(1.0)
    bad = metrics.rank_correlation(-good, measured)
    assert bad["spearman_pooled"] == pytest.approx(-1.0)
    assert res["n_pairs"] == 9


def test_steps_to_reach_finds_the_first_eval_at_the_threshold():
    from panda_core.validation import steps_to_reach

    curve = [(0, 0.5), (20, 0.69995), (40, 0.72), (60, 0.71)]
    assert steps_to_reach(curve, 0.7) == 20  # 4-decimal rounding of stored scores
    assert steps_to_reach(curve, 0.72) == 40
    assert steps_to_reach(curve, 0.9) is None
    assert steps_to_reach(curve, None) is None
