"""Stage `nli`: is prompt tuning on sentence pairs above chance, and how far
from model tuning? Every NLI task gets PT and model tuning with the study's
budget and base seed (the same data and budget for both), next to the
majority class, the untrained and a random prompt on the same items, with
the paired differences PT - majority, model tuning - majority and PT - model
tuning. Issue 11's goal is PT within 0.10 of model tuning; where model tuning
itself stays at chance the page says so."""

from __future__ import annotations

from dataclasses import replace

from panda_core.stats import result_items

from .analysis import accuracy, paired
from .baselines import majority_items
from .config import MT, PT
from .context import Study

NLI_FAMILY = "nli"


def nli(study: Study) -> None:
    from panda_core.prompts import task_seed

    d = study.cfg.design
    if not d.nli:
        return
    cfg = replace(d.train, seed=study.cfg.seed)
    rows = []
    for task in (t for t in study.tasks if study.data["families"][t] == NLI_FAMILY):
        got = {}
        for method in (PT, MT):
            study.log(f"NLI {method} {task} {study.elapsed()}")
            got[method] = study.transfer(None, task, method, cfg)
        pt, mt = (result_items(got[m]) for m in (PT, MT))
        init = task_seed(task, cfg.seed)
        major = majority_items(task, len(pt))
        row = {"task": task, "n_test": len(pt), "majority": accuracy(major), "pt": accuracy(pt),
               "model_tuning": accuracy(mt),
               "untrained": accuracy(study.baselines.items(task, "vocab", init, cfg)),
               "random_prompt": accuracy(study.baselines.items(task, "random", init, cfg)),
               "pt_vs_majority": paired(pt, major), "mt_vs_majority": paired(mt, major), "pt_vs_mt": paired(pt, mt)}
        rows.append(row)
    study.data["nli"] = {"config": cfg.to_dict(), "rows": rows}
