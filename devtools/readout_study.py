"""Readout study: which readout should be each backbone kind's default
(issue 11, item 2; written to docs/readouts.md).

Every readout the backbone's kind can use is trained with the project's
default `train` budget (or `--steps`) on the sentence-pair tasks and on a
sentiment and a topic task, one seed, scored on the full test sets, next to
each test set's majority class; model tuning (every backbone weight trained
with the prompt, the original readout) runs on the NLI tasks with the same
data and budget. Runs go one at a time (each uses both cores); finished runs
are kept in one JSON file per budget (docs/readouts/<steps>-steps.json, with
each test item's correctness), so an interrupted study resumes where it
stopped.

Run alone on a quiet machine::

    python -m devtools.readout_study                      # train what is missing, print the table
    python -m devtools.readout_study --steps 100 --write docs/readouts.md

Prints one JSON line per finished run on stderr and the markdown table on
stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from panda_core.paths import REPO_ROOT

from .markdown_block import write_block

NLI = ("vitaminc", "presuppositions", "epistemic")
OTHERS = ("mr", "bbc")
MODEL_TUNING = "model-tuning"
RESULTS = REPO_ROOT / "docs" / "readouts"


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson 95% interval, rounded for the saved results."""
    from panda_core.stats.intervals import wilson_interval

    low, high = wilson_interval(k, n)
    return round(low, 4), round(high, 4)


def majority(task: str) -> dict:
    from panda_core.data import load_split

    labels = [ex.label for ex in load_split(task, "test")]
    k = Counter(labels).most_common(1)[0][1]
    return {"acc": round(k / len(labels), 4), "k": k, "n": len(labels), "ci": wilson(k, len(labels))}


def run_one(backbone, task: str, readout: str, steps: int | None, seed: int) -> dict:
    """Train one (readout, task) cell, or model tuning when `readout` is MODEL_TUNING."""
    from panda_core.prompts import init_prompt, task_seed
    from panda_core.training import TrainConfig, train

    tune = readout == MODEL_TUNING
    knobs = {"seed": seed, "tune_model": tune} | ({"steps": steps} if steps else {})
    cfg = TrainConfig(**knobs) if tune else TrainConfig(**knobs, readout=readout)
    init = init_prompt(backbone.embeddings(), cfg.prompt_length, cfg.init, seed=task_seed(task, seed))
    t0 = time.perf_counter()
    result = train(backbone, task, cfg, init=init)
    correct = result.test_correct.bool().tolist()
    k, n = sum(correct), len(correct)
    return {"task": task, "readout": readout, "readout_used": result.readout, "acc": round(k / n, 4), "k": k,
            "n": n, "ci": wilson(k, n), "best_dev": round(result.best_dev, 4), "best_step": result.best_step,
            "steps": result.steps, "trainable_params": result.trainable_params,
            "seconds": round(time.perf_counter() - t0, 1), "config": cfg.to_dict(),
            "items": "".join("1" if c else "0" for c in correct)}


def cells(readouts: list[str], tasks: list[str], mt_tasks: list[str]) -> list[tuple[str, str]]:
    """(readout, task) in the order they run: the NLI tasks, their model tuning, the others."""
    return ([(r, t) for t in tasks if t in NLI for r in readouts] + [(MODEL_TUNING, t) for t in mt_tasks]
            + [(r, t) for t in tasks if t not in NLI for r in readouts])


def _with_interval(cell: dict) -> str:
    return f"{cell['acc']:.3f} [{cell['ci'][0]:.3f}, {cell['ci'][1]:.3f}]"


def render(data: dict) -> str:
    """The markdown table: one row per task, one column per readout, then model tuning."""
    runs, tasks = data["runs"], data["tasks"]
    columns = [r for r in data["readouts"] if any(f"{r}|{t}" in runs for t in tasks)]
    if any(f"{MODEL_TUNING}|{t}" in runs for t in tasks):
        columns.append(MODEL_TUNING)
    lines = [f"**{data['backbone']}, {data['steps']} steps** (test accuracy [95% Wilson interval]; "
             f"best-dev checkpoint, seed {data['seed']})", "",
             "| task | majority | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for t in tasks:
        m = data["majority"][t]
        row = [t, _with_interval(m)]
        for r in columns:
            cell = runs.get(f"{r}|{t}")
            row.append("" if cell is None else _with_interval(cell))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from panda_core.backbones import get_backbone
    from panda_core.prompts.readouts import READOUTS

    ap = argparse.ArgumentParser(prog="python -m devtools.readout_study", description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm")
    ap.add_argument("--tasks", nargs="+", default=[*NLI, *OTHERS])
    ap.add_argument("--readouts", nargs="+", help="default: every readout the backbone's kind can use")
    ap.add_argument("--mt-tasks", nargs="*", default=list(NLI), help="tasks that also get model tuning")
    ap.add_argument("--steps", type=int, help="training steps (default: TrainConfig's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, help="finished runs (resumable); default docs/readouts/<steps>-steps.json")
    ap.add_argument("--write", type=Path, help="also write the table between the markers of this markdown file")
    ap.add_argument("--no-train", action="store_true", help="only render what is stored")
    args = ap.parse_args(argv)

    from panda_core.training import TrainConfig

    bb = get_backbone(args.backbone)
    readouts = args.readouts or [r.name for r in READOUTS if bb.kind in r.kinds]
    steps = args.steps or TrainConfig().steps
    results = args.results or RESULTS / f"{steps}-steps.json"
    data = json.loads(results.read_text()) if results.exists() else {}
    data.setdefault("runs", {})
    data.update(backbone=bb.name, seed=args.seed, steps=steps, tasks=list(args.tasks), readouts=readouts)
    data["majority"] = {t: majority(t) for t in args.tasks}
    for readout, task in ([] if args.no_train else cells(readouts, args.tasks, args.mt_tasks)):
        key = f"{readout}|{task}"
        if key in data["runs"]:
            continue
        print(f"{time.strftime('%H:%M:%S')} {readout} on {task}", file=sys.stderr, flush=True)
        data["runs"][key] = run_one(bb, task, readout, steps, args.seed)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(data, indent=1, sort_keys=True))
        print(json.dumps({k: v for k, v in data["runs"][key].items() if k not in ("items", "config")}),
              file=sys.stderr, flush=True)
    table = render(data)
    print(table)
    if args.write:
        write_block(args.write, f"readout-table:{steps}", table)

if __name__ == "__main__":
    main()
