"""Stage `pt`: prompt tuning on every offline task (the source prompts of
every transfer), each next to its baselines on the same full test split:
the majority class, the untrained prompt it started from (`init_test_acc`)
and a random Gaussian prompt, with PT's paired difference from each."""

from __future__ import annotations

from panda_core.stats import result_items
from panda_core.training import TrainConfig

from ..pt_table import done_train_run
from .analysis import accuracy, paired
from .baselines import majority_items
from .context import Study, ci_of


def prompt_tuning(study: Study) -> None:
    from panda_core.ops import train_prompt
    from panda_core.prompts import task_seed

    cfg = TrainConfig(**{**study.cfg.pt.to_dict(), "seed": study.cfg.seed})
    rows = []
    for task in study.tasks:
        done = done_train_run(task, study.bb.name, cfg)
        if done is None:
            study.log(f"PT {task} ({cfg.steps} steps) {study.elapsed()}")
            done = train_prompt(task, study.bb.name, cfg)
        n = done.get("n_test") or study.test_sizes.get(task)
        pt_items = result_items(done)
        rand = study.baselines.items(task, "random", task_seed(task, cfg.seed), cfg)
        major = majority_items(task, len(rand))
        row = {"task": task, "family": study.data["families"][task], "n_test": n,
               "majority": accuracy(major), "random_prompt": accuracy(rand),
               "untrained": {"acc": done["init_test_acc"], "ci": ci_of(done["init_test_acc"], n)},
               "dev_acc": done["dev_acc"], "test_acc": done["test_acc"],
               "test_acc_ci": done.get("test_acc_ci") or ci_of(done["test_acc"], n),
               "seconds": done["seconds"], "prompt_id": done["prompt_id"]}
        if pt_items is not None:
            row["pt_vs_random"] = paired(pt_items, rand)
            row["pt_vs_majority"] = paired(pt_items, major)
        rows.append(row)
    study.data["pt"] = rows
