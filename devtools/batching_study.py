"""Length-grouped vs random training batches (issue 12, item 2): does grouping
by length reach the same accuracy, and how much training time does it save?

Each task is trained twice with the project's default `train` budget, once
with `batching="random"` and once with `batching="length"`, same seed and
initialisation (the fresh prompt `train_prompt` starts from), and both are
scored on the full test split. The random arm is the default PT run: when the
store already has it (the report and pt-table train it), it is reused, and
its training seconds come from that run (the table marks them). The two runs
are compared on the same test items (paired bootstrap interval, McNemar p),
next to the training seconds and the fraction of computed tokens that are
real in the batches each drew. Finished runs are kept in
docs/batching/<steps>-steps.json (with each test item's correctness), so an
interrupted study resumes where it stopped.

Run alone on a quiet machine::

    python -m devtools.batching_study                 # mr, tweets, r8; writes the JSON, prints the table
    python -m devtools.batching_study --write docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from panda_core.paths import REPO_ROOT

from .markdown_block import write_block

TASKS = ("mr", "tweets", "r8")
BATCHINGS = ("random", "length")
RESULTS = REPO_ROOT / "docs" / "batching"
MARK = "batching-study"


def token_fraction(lengths, batch_size: int, steps: int, seed: int, grouped: bool) -> float:
    """Real / computed text tokens of the batches a run draws (no model)."""
    from panda_core.training.trainer import Stream

    stream = Stream(len(lengths), batch_size, seed, lengths=lengths if grouped else None)
    real = computed = 0
    for _ in range(steps):
        rows = lengths[next(stream)]
        real += int(rows.sum())
        computed += int(rows.max()) * len(rows)
    return real / computed


def run_one(backbone, task: str, batching: str, steps: int | None, seed: int) -> dict:
    """One arm on one task, from the same fresh prompt `train_prompt` starts
    from (the task's own seed). The random arm is the default PT run itself:
    when the store has that run (the report's and pt-table's, same config) its
    items, seconds and dev accuracy are reused ("reused": True) instead of
    training it again. The length arm is trained here and saves no prompt, so
    the task's PT prompt stays the random-batching one."""
    from panda_core.data import get_task, load_split
    from panda_core.ops.training import done_train_run
    from panda_core.prompts import PROMPT_TYPES, PromptScorer, task_seed
    from panda_core.stats import result_items
    from panda_core.training import TrainConfig, train
    from panda_core.training.tuning import n_train

    knobs = {"seed": seed, "batching": batching} | ({"steps": steps} if steps else {})
    cfg = TrainConfig(**knobs)
    done = done_train_run(task, backbone.name, cfg) if batching == "random" else None
    items = result_items(done) if done else None
    t0 = time.perf_counter()
    if items is not None:
        correct, best_dev, n_steps, seconds = items.tolist(), done["dev_acc"], done["steps"], done["seconds"]
    else:
        init = PROMPT_TYPES.get(cfg.prompt_type).init(backbone, cfg.prompt_length, cfg.init,
                                                      seed=task_seed(task, cfg.seed))
        result = train(backbone, task, cfg, init=init)
        correct, best_dev, n_steps, seconds = (result.test_correct.bool().tolist(), result.best_dev, result.steps,
                                               result.seconds)
    scorer = PromptScorer(backbone, get_task(task), cfg.prompt_length, cfg.max_length)
    enc = scorer.encode(load_split(task, "train"))
    lengths = enc.lengths[: n_train(cfg, enc)]
    return {"task": task, "batching": batching, "acc": round(sum(correct) / len(correct), 4),
            "n": len(correct), "best_dev": round(best_dev, 4), "steps": n_steps,
            "train_seconds": round(seconds, 1), "wall_seconds": round(time.perf_counter() - t0, 1),
            "reused": items is not None,
            "real_token_fraction": round(token_fraction(lengths, cfg.batch_size, cfg.steps, seed,
                                                        batching == "length"), 4),
            "config": cfg.to_dict(), "items": "".join("1" if c else "0" for c in correct)}


def render(data: dict) -> str:
    from panda_core.stats import accuracy_with_ci, decode_items, paired_difference

    lines = [f"**{data['backbone']}, {data['steps']} steps, seed {data['seed']}** (test accuracy [95% interval]; "
             "length - random paired on the same items)", "",
             "| task | random | length | length - random [95% CI], McNemar p | train s random / length "
             "| real/computed tokens random / length |", "|---|---|---|---|---|---|"]
    for task in data["tasks"]:
        a, b = (data["runs"].get(f"{k}|{task}") for k in BATCHINGS)
        if a is None or b is None:
            continue
        ia, ib = decode_items(a["items"]), decode_items(b["items"])
        ca, cb = accuracy_with_ci(ia), accuracy_with_ci(ib)
        d = paired_difference(ib, ia)
        lines.append(f"| {task} | {ca['acc']:.3f} [{ca['ci'][0]:.3f}, {ca['ci'][1]:.3f}] | {cb['acc']:.3f} "
                     f"[{cb['ci'][0]:.3f}, {cb['ci'][1]:.3f}] | {d.diff:+.3f} [{d.low:+.3f}, {d.high:+.3f}], "
                     f"p = {d.p_value:.3f}{' (within noise)' if d.within_noise else ''} | {a['train_seconds']:.0f}"
                     f"{'*' if a.get('reused') else ''} / "
                     f"{b['train_seconds']:.0f} | {a['real_token_fraction']:.2f} / {b['real_token_fraction']:.2f} |")
    if any(data["runs"].get(f"random|{t}", {}).get("reused") for t in data["tasks"]):
        lines += ["", "\\* the random arm is the stored default PT run (trained by the report or pt-table, "
                  "in another session): its seconds were measured then, not beside the length arm."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from panda_core.backbones import get_backbone
    from panda_core.training import TrainConfig

    ap = argparse.ArgumentParser(prog="python -m devtools.batching_study", description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--steps", type=int, help="training steps (default: TrainConfig's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", type=Path, help="also write the table between this study's markers in a markdown file")
    ap.add_argument("--no-train", action="store_true", help="only render what is stored")
    args = ap.parse_args(argv)

    bb = get_backbone(args.backbone)
    steps = args.steps or TrainConfig().steps
    path = RESULTS / f"{steps}-steps.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("runs", {})
    data.update(backbone=bb.name, seed=args.seed, steps=steps, tasks=list(args.tasks))
    for task in [] if args.no_train else args.tasks:
        for batching in BATCHINGS:
            key = f"{batching}|{task}"
            if key in data["runs"]:
                continue
            print(f"{time.strftime('%H:%M:%S')} {batching} batches on {task}", file=sys.stderr, flush=True)
            data["runs"][key] = run_one(bb, task, batching, args.steps, args.seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=1, sort_keys=True))
    table = render(data)
    print(table)
    if args.write:
        write_block(args.write, MARK, table)

if __name__ == "__main__":
    main()
