"""Stage `projectors`: each backbone pair's projector, trained both ways where
it can be (distance needs the target backbone's PT prompt). The projection
run scores the projected, random and own-PT prompts on the same test items:
each accuracy has its Wilson interval, and projected - random is a paired
difference (runs stored before that keep Wilson intervals from the accuracy
and the number of items, and no paired difference)."""

from __future__ import annotations

from panda_core import store
from panda_core.crossmodel import ProjectorMethod

from .analysis import accuracy
from .baselines import majority_items
from .context import Study, ci_of


def projectors(study: Study) -> None:
    from panda_core.ops import run_projection

    cfg, rows = study.cfg, []
    for a, b in cfg.projector_pairs:
        for method in (ProjectorMethod.TASK.value, ProjectorMethod.DISTANCE.value):
            if method == ProjectorMethod.DISTANCE and store.latest_prompt_id(
                    cfg.projector_train_task, b, "pt", cfg.pt.prompt_length) is None:
                study.log(f"projector {a}->{b} distance: skipped (no PT prompt of {cfg.projector_train_task} on {b})")
                continue
            study.log(f"projector {a} -> {b} ({method}) {study.elapsed()}")
            res = run_projection(a, b, cfg.projector_train_task, method,
                                 eval_tasks=[t for t in cfg.projector_eval_tasks if t in study.tasks],
                                 steps=cfg.projector_steps, seed=cfg.seed, prompt_length=cfg.pt.prompt_length,
                                 test_limit=cfg.projector_test_limit)
            for r in res["results"]:
                n = min(cfg.projector_test_limit or 10**9, study.test_sizes[r["task"]])
                cis = {f"{k}_ci": r.get(f"{k}_ci") or ci_of(r[k], n)
                       for k in ("test_acc", "random_prompt_acc", "target_pt_acc") if r.get(k) is not None}
                rows.append({"source_backbone": a, "target_backbone": b, "method": method,
                             "train_task": cfg.projector_train_task, "n_test": n,
                             "majority": accuracy(majority_items(r["task"], n))["acc"]} | r | cis)
    study.data["projectors"] = rows
