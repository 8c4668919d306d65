"""Stage `zero_shot`: every task's PT prompt scored on every task as it is,
relative to the target's own prompt on the same test items (Su et al.'s
relative performance), and the relative performance of a random prompt per
target, so transfer reads as "above doing nothing", not only as a ratio."""

from __future__ import annotations

import numpy as np

from panda_core.indicators.validation import MEASURES, Measure
from panda_core.stats import bootstrap_mean_ci, common_prefix, paired_difference, result_items
from panda_core.training import TrainConfig

from .analysis import accuracy
from .context import Study, ci_of


def zero_shot_measure() -> Measure:
    """The relative measure (zero-shot transfer / the target's own prompt): what the matrix measures."""
    return next(m for m in MEASURES if m.relative)


def zero_shot(study: Study) -> None:
    from panda_core.prompts import task_seed

    measure, tasks = zero_shot_measure(), study.tasks
    k = len(tasks)
    acc, n = np.zeros((k, k)), np.zeros((k, k), dtype=int)
    items: dict[tuple[int, int], np.ndarray | None] = {}
    tcfg = TrainConfig(**{**study.cfg.pt.to_dict(), "test_limit": study.cfg.zero_shot_test_limit,
                          "seed": study.cfg.seed})
    study.log(f"zero-shot matrix {k} x {k} {study.elapsed()}")
    for i, s in enumerate(tasks):
        for j, t in enumerate(tasks):
            res = study.transfer(s, t, measure.method, tcfg)
            acc[i, j], n[i, j] = res["test_acc"], res.get("n_test") or min(tcfg.test_limit, study.test_sizes[t])
            items[i, j] = result_items(res)
    own = np.array([acc[j, j] for j in range(k)])
    rel = measure.of(acc, own[None, :])
    fam = [study.data["families"][t] for t in tasks]
    within = [rel[i, j] for i in range(k) for j in range(k) if i != j and fam[i] == fam[j]]
    across = [rel[i, j] for i in range(k) for j in range(k) if fam[i] != fam[j]]
    targets = []
    for j, t in enumerate(tasks):
        rand = study.baselines.items(t, "random", task_seed(t, study.cfg.seed), tcfg)
        r = accuracy(rand)
        row = {"target": t, "own": {"acc": own[j], "ci": ci_of(own[j], int(n[j, j]))},
               "random_prompt": r, "random_relative": round(r["acc"] / own[j], 4) if own[j] else None,
               "sources_mean_relative": round(float(np.mean([rel[i, j] for i in range(k) if i != j])), 4)}
        # how many sources beat the random prompt on these items (paired, 95% interval above 0)
        above = [paired_difference(*common_prefix(items[i, j], rand)).low > 0
                 for i in range(k) if i != j and items[i, j] is not None]
        row["sources_above_random"] = [sum(above), len(above)] if above else None
        targets.append(row)
    study.data["zero_shot"] = {
        "acc": acc.tolist(), "relative": rel.tolist(), "n": n.tolist(), "targets": targets,
        "within_family_mean": _mean_ci(within), "cross_family_mean": _mean_ci(across)}


def _mean_ci(values: list[float]) -> dict | None:
    if not values:
        return None
    low, high = bootstrap_mean_ci(values)
    return {"mean": round(float(np.mean(values)), 4), "low": round(low, 4), "high": round(high, 4), "n": len(values)}
