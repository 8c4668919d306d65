"""The mean paired difference of a whole study, with an interval that respects
how its cells are nested.

A study such as PANDA vs PoT has cells nested as targets -> sources -> seeds ->
test items. Items of one target are not independent of each other in the way
an item bootstrap assumes: the same target, source and seed share a prompt.
Treating all items of the study as one pool would give an interval far too
narrow, so `hierarchical_bootstrap` resamples at each level in turn (targets
with replacement; within each drawn target its sources; within each drawn
source its seeds; within each drawn seed its test items, keeping each item's
(a, b) pair together) and reports a percentile interval of the resampled
estimates. The estimate weighs every target equally, every source equally
within its target and every seed equally within its source.

`sign_flip_test` answers "is the mean difference over cells zero?" without
any distributional assumption: under the null each cell's difference is
symmetric about 0, so its sign is a coin flip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import PandaError
from .intervals import check_confidence
from .items import as_bool_array
from .paired import Difference

#: exact enumeration of all 2^k sign patterns up to this many cells; a seeded Monte Carlo above
EXACT_SIGN_FLIP_MAX = 20
#: sign patterns drawn by the Monte Carlo sign-flip test when there are more than 20 cells
MONTE_CARLO_SIGN_FLIPS = 100_000


@dataclass(frozen=True)
class HierarchicalDifference(Difference):
    """The study's mean paired difference a - b, its hierarchical bootstrap interval,
    the sign-flip p-value over (target, source) cells and the design's size."""

    diff: float
    low: float
    high: float
    p_value: float
    n_targets: int
    n_cells: int  # (target, source) pairs
    n_runs: int  # (target, source, seed) triples
    n_items: int
    confidence: float = 0.95


@dataclass(frozen=True)
class _Seed:
    """One (target, source, seed) run pair as the counts an item resample needs."""

    n: int
    p_up: float  # share of items only a got right
    p_down: float  # share of items only b got right

    @property
    def diff(self) -> float:
        return self.p_up - self.p_down


def _tree(cells: Iterable[Mapping[str, Any]]) -> dict[Any, dict[Any, list[_Seed]]]:
    """target -> source -> [seed], from records {"target", "source", "seed", "a", "b"}."""
    tree: dict[Any, dict[Any, dict[Any, _Seed]]] = {}
    for rec in cells:
        missing = {"target", "source", "seed", "a", "b"} - set(rec)
        if missing:
            raise PandaError(f"a study cell needs target, source, seed, a and b; missing {sorted(missing)}")
        where = f"{rec['target']}/{rec['source']}/seed {rec['seed']}"
        a, b = as_bool_array(rec["a"]), as_bool_array(rec["b"])
        if a.size != b.size or a.size == 0:
            raise PandaError(f"cell {where}: a and b must score the same non-empty test items "
                             f"(got {a.size} and {b.size})")
        seeds = tree.setdefault(rec["target"], {}).setdefault(rec["source"], {})
        if rec["seed"] in seeds:
            raise PandaError(f"cell {where} appears twice")
        seeds[rec["seed"]] = _Seed(a.size, float(np.mean(a & ~b)), float(np.mean(~a & b)))
    if not tree:
        raise PandaError("a study needs at least one cell")
    return {t: {s: list(k.values()) for s, k in srcs.items()} for t, srcs in tree.items()}


def cell_means(cells: Iterable[Mapping[str, Any]]) -> dict[tuple[Any, Any], float]:
    """(target, source) -> the mean over its seeds of mean(a) - mean(b): the cells of the sign-flip test."""
    return {(t, s): float(np.mean([k.diff for k in seeds]))
            for t, srcs in _tree(cells).items() for s, seeds in srcs.items()}


def _estimate(tree: Sequence[Sequence[Sequence[_Seed]]]) -> float:
    return float(np.mean([np.mean([np.mean([k.diff for k in seeds]) for seeds in srcs]) for srcs in tree]))


def _tables(tree: Sequence[Sequence[Sequence[_Seed]]]) -> tuple[np.ndarray, ...]:
    """The nested design as padded arrays: sources per target (T,), seeds per
    (target, source) (T, S), and items / discordant shares per run (T, S, K)."""
    n_t, n_s, n_k = len(tree), max(map(len, tree)), max(len(k) for srcs in tree for k in srcs)
    n_src = np.array([len(srcs) for srcs in tree])
    n_seed = np.ones((n_t, n_s), dtype=int)
    n, up, down = np.ones((n_t, n_s, n_k), dtype=int), np.zeros((n_t, n_s, n_k)), np.zeros((n_t, n_s, n_k))
    for i, srcs in enumerate(tree):
        for j, seeds in enumerate(srcs):
            n_seed[i, j] = len(seeds)
            for k, run in enumerate(seeds):
                n[i, j, k], up[i, j, k], down[i, j, k] = run.n, run.p_up, run.p_down
    return n_src, n_seed, n, up, down


def _resampled_estimates(tables: tuple[np.ndarray, ...], n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """`n_draws` estimates of the nested bootstrap, vectorised over draws: targets
    with replacement, then in each drawn target its sources, in each drawn source
    its seeds, and in each drawn seed its items (the counts of items only a / only b
    got right are redrawn binomially, which resamples (a, b) pairs of items)."""
    n_src, n_seed, n, up, down = tables
    n_t, n_s, n_k = n.shape
    t = rng.integers(n_t, size=(n_draws, n_t))
    ns = n_src[t]
    s = (rng.random((n_draws, n_t, n_s)) * ns[..., None]).astype(int)
    s_ok = np.arange(n_s) < ns[..., None]
    nk = n_seed[t[..., None], s]
    k = (rng.random((n_draws, n_t, n_s, n_k)) * nk[..., None]).astype(int)
    k_ok = np.arange(n_k) < nk[..., None]
    where = (t[..., None, None], s[..., None], k)
    items, p_up, p_down = n[where], up[where], down[where]
    n_up = rng.binomial(items, p_up)
    rest = np.divide(p_down, 1.0 - p_up, out=np.zeros_like(p_down), where=p_up < 1.0)
    n_down = rng.binomial(items - n_up, np.clip(rest, 0.0, 1.0))
    seed_means = ((n_up - n_down) / items * k_ok).sum(-1) / nk
    return ((seed_means * s_ok).sum(-1) / ns).mean(-1)


def hierarchical_bootstrap(cells: Iterable[Mapping[str, Any]], *, n_resamples: int = 2000, seed: int = 0,
                           confidence: float = 0.95) -> HierarchicalDifference:
    """Mean paired difference a - b of a study, with a percentile interval from a
    bootstrap that resamples targets, sources, seeds and test items in turn, and
    the sign-flip p-value over its (target, source) cells.

    `cells`: one record per (target, source, seed) with the per-item correctness
    of both arms on the same test items: {"target", "source", "seed", "a", "b"}."""
    check_confidence(confidence)
    cells = list(cells)
    tree = [list(srcs.values()) for srcs in _tree(cells).values()]
    rng, tables = np.random.default_rng(seed), _tables(tree)
    chunks = [min(500, int(n_resamples) - i) for i in range(0, int(n_resamples), 500)]  # bounded memory
    boots = np.concatenate([_resampled_estimates(tables, c, rng) for c in chunks])
    alpha = 1.0 - confidence
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    runs = [k for srcs in tree for seeds in srcs for k in seeds]
    return HierarchicalDifference(
        _estimate(tree), float(low), float(high), sign_flip_test(list(cell_means(cells).values()), seed=seed),
        len(tree), sum(len(srcs) for srcs in tree), len(runs), sum(k.n for k in runs), confidence)


def _sign_sums(d: np.ndarray) -> np.ndarray:
    """The sum of s_i * d_i for every sign pattern s of `d` (2^len(d) values)."""
    sums = np.zeros(1)
    for x in d:
        sums = np.concatenate([sums + x, sums - x])
    return sums


def _exact_sign_flip(d: np.ndarray) -> float:
    """Share of all 2^k sign patterns whose |sum| reaches the observed |sum|.
    Meet in the middle: the patterns of each half are enumerated (2^(k/2) sums
    each) and pairs are counted by sorting, so k = 20 takes milliseconds where
    listing 2^20 patterns would take seconds and hundreds of megabytes."""
    observed = abs(d.sum())
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))  # float ties count as reaching the observed value
    left, right = _sign_sums(d[: d.size // 2]), np.sort(_sign_sums(d[d.size // 2:]))
    # |l + r| >= obs  <=>  r >= obs - l  or  r <= -obs - l
    above = right.size - np.searchsorted(right, observed - left - tol, side="left")
    below = np.searchsorted(right, -observed - left + tol, side="right")
    both = np.where(observed - tol <= 0, np.minimum(above + below, right.size), above + below)
    return float(both.sum() / (left.size * right.size))


def sign_flip_test(cell_differences: Sequence[float] | np.ndarray, *, seed: int = 0) -> float:
    """Two-sided p-value of "the mean cell difference is 0" by flipping signs (a
    paired permutation test): exact over all 2^k sign patterns when k <= 20 cells,
    else `MONTE_CARLO_SIGN_FLIPS` seeded draws (`scipy.stats.permutation_test`)."""
    from scipy import stats  # on use (see the package docstring)
    d = np.asarray(cell_differences, dtype=float)
    if d.ndim != 1 or d.size == 0 or np.isnan(d).any():
        raise PandaError("the sign-flip test needs one finite difference per cell, at least one cell")
    if not np.any(d):
        return 1.0
    if d.size <= EXACT_SIGN_FLIP_MAX:
        return min(1.0, _exact_sign_flip(d))
    res = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=MONTE_CARLO_SIGN_FLIPS,
                                 vectorized=True, batch=10_000, alternative="two-sided",
                                 rng=np.random.default_rng(seed))
    return float(min(1.0, res.pvalue))
