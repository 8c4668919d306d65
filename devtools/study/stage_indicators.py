"""Stage `indicators`: does each registered indicator rank sources the way
transfer actually goes? For every measure of transfer the study has (the
zero-shot matrix; PoT's and PANDA's gain over PT, mean over seeds, from the
PANDA vs PoT study), each indicator gets

- Spearman and Kendall over all (source, target) pairs with bootstrap
  intervals over the pairs (`stats.rank_correlation_ci`);
- the mean over targets of the per-target Spearman (ranking sources for one
  target, as PANDA evaluates it) with a bootstrap interval over targets;
- the retrieval view a user acts on: NDCG@k and how often the top-ranked
  source beats the target's median source (`stats.retrieval_summary`).
"""

from __future__ import annotations

import numpy as np

from panda_core.indicators import INDICATORS, rank_correlation
from panda_core.indicators.validation import MEASURES, Measure
from panda_core.stats import bootstrap_mean_ci, rank_correlation_ci, retrieval_summary

from .config import PT
from .context import Study
from .stage_zero_shot import zero_shot_measure


def measured(study: Study, measure: Measure) -> np.ndarray | None:
    """The (source, target) matrix of `measure` from this study's runs (None: not measured)."""
    if measure.relative:
        zs = study.data.get("zero_shot")
        return np.array(zs["relative"]) if zs and measure == zero_shot_measure() else None
    runs = (study.data.get("panda_vs_pot") or {}).get("runs") or []
    pt = {(r["target"], r["seed"]): r["test_acc"] for r in runs if r["arm"] == PT}
    gains: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        if r["arm"] == measure.method and (r["target"], r["seed"]) in pt:
            gains.setdefault((r["source"], r["target"]), []).append(measure.of(r["test_acc"], pt[r["target"],
                                                                                                 r["seed"]]))
    if not gains:
        return None
    idx = {t: i for i, t in enumerate(study.tasks)}
    G = np.full((len(idx), len(idx)), np.nan)
    for (s, t), g in gains.items():
        if s in idx and t in idx:
            G[idx[s], idx[t]] = float(np.mean(g))
    return G


def validate(predicted: np.ndarray, truth: np.ndarray, k: int) -> dict:
    """Every number the page shows for one (indicator, measure)."""
    off = ~np.eye(len(truth), dtype=bool) & ~np.isnan(truth)
    x, y = predicted[off], truth[off]
    base = rank_correlation(predicted, truth)
    low, high = bootstrap_mean_ci(base["spearman_per_target"])
    return base | {"spearman_ci": rank_correlation_ci(x, y, "spearman"), "kendall_ci": rank_correlation_ci(x, y, "kendall"),
                   "spearman_mean_ci": [low, high]} | retrieval_summary(predicted, truth, k=k)


def indicators(study: Study) -> None:
    from panda_core.indicators.similarity import similarity_table

    truths = {m.name: M for m in MEASURES if (M := measured(study, m)) is not None}
    out, matrices = {}, {}
    for metric in INDICATORS.names():
        study.log(f"indicator {metric} {study.elapsed()}")
        table = similarity_table(metric, study.bb.name, study.tasks, study.cfg.pt.prompt_length,
                                 n_inputs=study.cfg.n_inputs)
        order = [table["tasks"].index(t) for t in study.tasks]
        P = np.array(table["matrix"])[np.ix_(order, order)]
        matrices[metric] = P.tolist()
        out[metric] = {name: validate(P, M, study.cfg.retrieval_k) for name, M in truths.items()}
    study.data["indicators"] = out
    study.data["indicator_matrices"] = matrices
    study.data["indicator_measures"] = {name: MEASURES.get(name).label for name in truths}
