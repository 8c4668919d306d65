"""The commands that train prompts: `train`, `transfer` and `sweep`.

Each validates its parameters in the order cheap -> costly (numbers through
`TrainConfig`/`TransferConfig`, task names, registry names, the source/target
relation, the backbone) and returns a `Prepared` whose plan resolves what
the run reads from the store; nothing is loaded or written before `run()`.
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import replace
from typing import Any

from ..errors import PandaError
from . import checks
from .args import (
    add_budget,
    add_check,
    add_limits,
    add_prompt_type,
    kd_form_choices,
    method_choices,
    readout_choices,
    student_init_choices,
    teacher_choices,
)
from .base import Prepared, command, log, tqdm_progress

EXECUTORS = ("local", "ray")  # ops.sweep.run_sweep's executors


def add_seeds(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--seeds", type=int, default=1,
                    help="repeat over N consecutive seeds from --seed and report the mean with a t-interval")


# ------------------------------------------------------------------ train
def _train_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--task", required=True)
    sp.add_argument("--backbone", default="minilm")
    add_budget(sp)
    sp.add_argument("--head", action="store_true", help="also train a per-task linear head")
    sp.add_argument("--readout", **readout_choices().argument(help="how classes are read (default auto: the kind's)"))
    add_prompt_type(sp)
    add_seeds(sp)
    add_limits(sp)
    add_check(sp)


@command("train", "prompt tuning from scratch", _train_arguments, checked=True)
def cmd_train(args: argparse.Namespace) -> Prepared:
    cfg = checks.train_config(args)
    n_seeds = checks.seeds(args.seeds, cfg.seed)
    task = checks.task(args.task, available=True).name
    bb = checks.backbone(args.backbone)

    def plan() -> dict:
        from ..ops import estimate_seconds

        seconds = estimate_seconds(bb["name"], [task], cfg.steps) if checks.store_exists() else None
        return {"command": "train", "task": task, "backbone": bb, "config": cfg.to_dict(),
                "seeds": list(range(cfg.seed, cfg.seed + n_seeds)),
                "estimate_seconds": None if seconds is None else round(seconds, 1),
                "writes": ["a PT prompt", "a train run"]}

    def run() -> Any:
        from ..ops import train_prompt

        log(f"training a {cfg.prompt_length}-token prompt on {task} with {args.backbone} ({cfg.steps} steps)")
        from ..ops.seeds import over_seeds

        return over_seeds(lambda seed: train_prompt(task, args.backbone, replace(cfg, seed=seed),
                                                    progress=tqdm_progress(cfg.steps, f"{task} seed {seed}")),
                          cfg.seed, n_seeds)

    return Prepared(plan, run)


# --------------------------------------------------------------- transfer
def _transfer_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--source", help="source task; several comma-separated for multi-source methods")
    sp.add_argument("--target", required=True)
    sp.add_argument("--method", required=True, **method_choices().argument())
    sp.add_argument("--backbone", default="minilm")
    add_budget(sp)
    sp.add_argument("--lambda-max", type=float, default=1.0)
    sp.add_argument("--fixed-lambda", type=float, help="use this distillation weight instead of the metric")
    sp.add_argument("--kd-form", **kd_form_choices().argument("scaled"))
    sp.add_argument("--teacher", **teacher_choices().argument("pot"))
    sp.add_argument("--student-init", **student_init_choices().argument("source"))
    sp.add_argument("--readout", **readout_choices().argument(help="how classes are read (default auto: the kind's)"))
    add_prompt_type(sp)
    sp.add_argument("--from-source", action="store_true",
                    help="model tuning: start from the source prompt (default: a fresh prompt, no source)")
    sp.add_argument("--no-reuse", action="store_true", help="rerun even if an identical run is stored")
    add_seeds(sp)
    add_limits(sp)
    add_check(sp)


def transfer_pair(source: str | None, target: str, method: str, from_source: bool = False) -> tuple[Any, tuple[str, ...]]:
    """The method and its source tasks, checked against the target: known
    tasks, the number of sources the method takes, a source equal to the target."""
    from ..ops.transfer import parse_sources
    from ..transfer import METHODS, Sources

    m = METHODS.get(method)
    if from_source and m.sources is not Sources.OPTIONAL:
        raise PandaError(f"--from-source applies to methods with an optional source, not '{m.name}'")
    sources = parse_sources(None if source is None else checks.name(source, "--source"), m, from_source)
    for s in sources:
        checks.task(s)
    if target in sources and not m.allows_self:
        raise PandaError(f"the source '{target}' is the target: {m.name} transfers from another task; "
                         f"choose a different --source")
    return m, sources


@command("transfer", "transfer a prompt from a source task to a target task", _transfer_arguments, checked=True)
def cmd_transfer(args: argparse.Namespace) -> Prepared:
    cfg = checks.transfer_config(args)
    n_seeds = checks.seeds(args.seeds, cfg.train.seed)
    target = checks.task(args.target, available=True).name
    m, sources = transfer_pair(args.source, target, method_choices().resolve(args.method), cfg.from_source)
    bb = checks.backbone(args.backbone)

    def plan() -> dict:
        from .. import store
        from ..ops import plan_transfer

        if m.requires(cfg):  # it reads stored prompts (or PANDA's teacher run)
            checks.require_store(f"method '{m.name}'", bb["name"], cfg.train.prompt_length, (*sources, target)[0])
        p = plan_transfer(list(sources) or None, target, m.name, bb["name"], cfg)
        exists = checks.store_exists()
        teacher = p.teacher and {"method": p.teacher.method.name, "key": p.teacher.key,
                                 "stored": exists and store.done_run_for_key(p.teacher.key) is not None}
        return {"command": "transfer", "method": m.name, "label": m.label, "sources": list(p.sources),
                "target": target, "backbone": bb, "config": cfg.to_dict(), "key": p.key,
                "seeds": list(range(cfg.train.seed, cfg.train.seed + n_seeds)),
                "reads": {"source_prompts": list(p.source_ids), "target_prompt": p.target_id},
                "teacher": teacher or None,
                "reused": bool(exists and not args.no_reuse and store.done_run_for_key(p.key))}

    def run() -> Any:
        from ..ops import run_transfer

        log(f"{m.name}: {','.join(sources) or '-'} -> {target} on {args.backbone}")
        from ..ops.seeds import over_seeds

        def one(seed: int) -> dict:
            seeded = replace(cfg, train=replace(cfg.train, seed=seed))
            return run_transfer(list(sources) or None, target, m.name, args.backbone, seeded,
                                progress=tqdm_progress(cfg.train.steps, f"{m.name} seed {seed}"),
                                reuse=not args.no_reuse)

        return over_seeds(one, cfg.train.seed, n_seeds)

    return Prepared(plan, run)


# ------------------------------------------------------------------ sweep
def _sweep_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--sources", nargs="+", required=True)
    sp.add_argument("--targets", nargs="+", required=True)
    sp.add_argument("--methods", nargs="+", **method_choices().argument(["pot", "panda"]))
    sp.add_argument("--backbone", default="minilm")
    sp.add_argument("--executor", choices=EXECUTORS, default="local")
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    add_budget(sp, lr=False, batch=False)
    add_prompt_type(sp)
    sp.add_argument("--train-limit", type=int, help="use only the first N training examples of each target")
    add_check(sp)


@command("sweep", "many transfers (sources x targets x methods), resumable", _sweep_arguments, checked=True)
def cmd_sweep(args: argparse.Namespace) -> Prepared:
    train = checks.train_config(args)
    workers = checks.count(args.workers, "--workers")
    sources = checks.tasks(args.sources, "--sources")
    targets = checks.tasks(args.targets, "--targets", available=True)
    methods = [method_choices().resolve(m) for m in args.methods]
    if len(set(methods)) < len(methods):
        raise PandaError(f"--methods lists a method twice: {' '.join(methods)}")
    if args.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise PandaError("the ray executor needs the `ray` package: pip install -r requirements.txt")
    from ..ops.sweep import cores, needed_prompts
    from ..ops.sweep import plan as plan_jobs
    from ..transfer import TransferConfig

    cfg = TransferConfig(train=train)
    jobs = plan_jobs(sources, targets, methods)  # refuses methods a sweep cannot plan
    bb = checks.backbone(args.backbone)

    def plan() -> dict:
        from .. import store

        needed = needed_prompts(jobs, sources + targets)
        have = store.latest_prompts(bb["name"], "pt", train.prompt_length, needed,
                                    train.prompt_type) if checks.store_exists() else {}
        return {"command": "sweep", "backbone": bb, "executor": args.executor, "workers": workers,
                "threads_per_worker": max(1, cores() // workers), "config": cfg.to_dict(), "jobs": jobs,
                "needed_prompts": needed, "missing_prompts": [t for t in needed if t not in have]}

    def run() -> Any:
        from ..ops import run_sweep

        return run_sweep(sources, targets, methods, args.backbone, cfg, executor=args.executor, workers=workers,
                         ray_address=args.ray_address, log=log)

    return Prepared(plan, run)
