"""Which change moved a task's PT accuracy: segment ids on sentence pairs, or
the per-task seed of the fresh prompt? (`python -m devtools.pt_ablation`)

Issue 11 changed two things every PT run sees: sentence pairs carry their
segment ids into the model (`PromptScorer.splice`), and each task's fresh
prompt has its own seed (`prompts.task_seed`) instead of the run's seed. Before
both, epistemic reached 0.880 test at the default budget; after both, the
report's PT run stays at its majority class. This trains the task at `train`'s
defaults under each combination, on the same test items, and prints each
accuracy with its Wilson interval and each variant's paired difference from
the current code. Nothing is stored (the variants are not ordinary runs).
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager

#: name -> (segment ids on?, fresh prompt's seed: "task" (current) or "run" (before issue 11))
VARIANTS = {
    "current": (True, "task"),
    "no segments": (False, "task"),
    "run seed": (True, "run"),
    "before issue 11": (False, "run"),
}


@contextmanager
def segments(on: bool, bb):
    """Switch the backbone kind's segment table off (pairs then go in as segment 0 throughout)."""
    impl = bb.kind_impl
    original = impl.segment_embeddings
    if not on:
        impl.segment_embeddings = lambda model: None
    try:
        yield
    finally:
        impl.segment_embeddings = original


def run(task: str, backbone: str, variants: list[str], seed: int, steps: int) -> dict:
    from panda_core.backbones import get_backbone
    from panda_core.prompts import PROMPT_TYPES, task_seed
    from panda_core.stats import accuracy_with_ci, paired_difference
    from panda_core.training import TrainConfig
    from panda_core.training.tuning import train

    bb = get_backbone(backbone)
    config = TrainConfig(steps=steps, seed=seed)
    items, rows = {}, []
    for name in variants:
        on, which = VARIANTS[name]
        init_seed = task_seed(task, seed) if which == "task" else seed
        init = PROMPT_TYPES.get(config.prompt_type).init(bb, config.prompt_length, config.init, seed=init_seed)
        with segments(on, bb):
            res = train(bb, task, config, init=init, resume=False)
        items[name] = res.test_correct
        acc = accuracy_with_ci(res.test_correct)
        row = {"variant": name, "segments": on, "init_seed": init_seed, "dev_acc": res.best_dev,
               "test_acc": acc["acc"], "test_acc_ci": acc["ci"], "n_test": acc["n"],
               "dev_curve": res.dev_curve, "seconds": round(res.seconds, 1)}
        if name != variants[0]:
            row["vs_" + variants[0]] = paired_difference(items[name], items[variants[0]]).to_dict()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"task": task, "backbone": backbone, "seed": seed, "steps": steps, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="epistemic")
    ap.add_argument("--backbone", default="minilm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args(argv)
    run(args.task, args.backbone, args.variants, args.seed, args.steps)


if __name__ == "__main__":
    main()
