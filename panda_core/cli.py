"""`python -m panda_core COMMAND`: the command-line contract of DESIGN.md.

With --json, exactly one JSON document goes to stdout; logs and progress bars
go to stderr. Bad input exits non-zero with a one-line error, no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from .errors import PandaError

COMMANDS: dict[str, Callable[[argparse.Namespace], Any]] = {}


def command(name: str):
    def wrap(fn):
        COMMANDS[name] = fn
        return fn

    return wrap


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tqdm_progress(total: int, desc: str):
    """A progress callback for train-loop dicts, drawn with tqdm on stderr.
    The bar appears with the first progress report, so an early error stays
    a clean one-line message."""
    from tqdm import tqdm

    state: dict = {}

    def update(info: dict) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
        bar.n = info.get("step", bar.n)
        post = {"loss": f"{info['loss']:.3f}"} if "loss" in info else {}
        if "dev_acc" in info:
            post["dev"] = f"{info['dev_acc']:.3f}"
        bar.set_postfix(post, refresh=False)
        bar.refresh()
        if bar.n >= total:
            bar.close()

    return update


def stage_progress(stage: str, fraction: float) -> None:
    log(f"[{fraction * 100:5.1f}%] {stage}")


def _limits(args) -> dict:
    """--train-limit/--dev-limit/--test-limit given on the command line."""
    out = {}
    for name in ("train_limit", "dev_limit", "test_limit"):
        value = getattr(args, name, None)
        if value is not None:
            if value < 1:
                raise PandaError(f"--{name.replace('_', '-')} must be at least 1")
            out[name] = value
    return out


def add_limits(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--train-limit", type=int, help="use only the first N training examples")
    sp.add_argument("--dev-limit", type=int, help="evaluate on the first N dev examples (default 500)")
    sp.add_argument("--test-limit", type=int, help="report test accuracy on the first N test examples")


# ------------------------------------------------------------------ commands
@command("setup")
def cmd_setup(args) -> Any:
    from . import backbones, tasks

    return {"backbones": backbones.prepare_backbones(progress=stage_progress),
            "tasks": tasks.prepare(progress=stage_progress)}


@command("data")
def cmd_data(args) -> Any:
    from . import tasks

    if args.action != "prepare":
        raise PandaError(f"unknown data action '{args.action}'; use: data prepare")
    return {"tasks": tasks.prepare(args.tasks or None, progress=stage_progress)}


@command("tasks")
def cmd_tasks(args) -> Any:
    from . import tasks

    if args.action == "add":
        if not args.name or not args.file:
            raise PandaError("tasks add needs --name and --file")
        labels = args.label_names.split(",") if args.label_names else None
        return tasks.add_user_task(args.name, args.file, text_col=args.text_col, label_col=args.label_col,
                                   text_b_col=args.text_b_col, label_names=labels)
    if args.action not in (None, "list"):
        raise PandaError(f"unknown tasks action '{args.action}'; use: tasks [list] | tasks add")
    return tasks.list_tasks()


@command("backbones")
def cmd_backbones(args) -> Any:
    from . import backbones

    return backbones.list_backbones()


@command("train")
def cmd_train(args) -> Any:
    from .runs import train_prompt
    from .train import TrainConfig

    cfg = TrainConfig(steps=args.steps, prompt_length=args.prompt_len, seed=args.seed, lr=args.lr,
                      batch_size=args.batch_size, head=args.head, eval_every=args.eval_every,
                      **_limits(args))
    log(f"training a {args.prompt_len}-token prompt on {args.task} with {args.backbone} ({args.steps} steps)")
    return train_prompt(args.task, args.backbone, cfg, progress=tqdm_progress(args.steps, args.task))


@command("prompts")
def cmd_prompts(args) -> Any:
    from . import export, store

    if args.action in (None, "list"):
        return store.list_prompts(backbone=args.backbone, task=args.task)
    if not args.target:
        raise PandaError(f"prompts {args.action} needs a FILE (import) or an ID (export)")
    if args.action == "import":
        return export.import_prompt(args.target, backbone=args.backbone, task=args.task)
    return export.export_prompt(args.target, args.format, args.out)


@command("doctor")
def cmd_doctor(args) -> Any:
    from .doctor import check

    return check(fix=args.fix)


@command("transfer")
def cmd_transfer(args) -> Any:
    from .train import TrainConfig
    from .transfer import TransferConfig, run_transfer

    cfg = TransferConfig(
        train=TrainConfig(steps=args.steps, prompt_length=args.prompt_len, seed=args.seed, lr=args.lr,
                          eval_every=args.eval_every, **_limits(args)),
        lambda_max=args.lambda_max, kd_form=args.kd_form, teacher=args.teacher, student_init=args.student_init,
        fixed_lambda=args.fixed_lambda,
    )
    log(f"{args.method}: {args.source or '-'} -> {args.target} on {args.backbone}")
    return run_transfer(args.source, args.target, args.method, args.backbone, cfg,
                        progress=tqdm_progress(args.steps, args.method), reuse=not args.no_reuse)


@command("similarity")
def cmd_similarity(args) -> Any:
    from .similarity import similarity_table

    window = tuple(int(x) for x in args.layers.split(":")) if args.layers else None
    return similarity_table(args.metric, args.backbone, args.tasks or None, prompt_length=args.prompt_len,
                            layers=window, n_inputs=args.n_inputs)


@command("project")
def cmd_project(args) -> Any:
    from .projector import run_projection

    log(f"projector {args.source_backbone} -> {args.target_backbone} ({args.method}) on {args.train_task}")
    return run_projection(args.source_backbone, args.target_backbone, args.train_task, args.method,
                          eval_tasks=args.eval_tasks or None, steps=args.steps, prompt_length=args.prompt_len,
                          seed=args.seed, progress=tqdm_progress(args.steps, "projector"))


@command("report")
def cmd_report(args) -> Any:
    from .report import StudyConfig, rerender, run_study

    if args.render_only:
        return rerender()
    cfg = StudyConfig(backbone=args.backbone, seed=args.seed)
    return run_study(cfg, stages=args.stages or None, log=log)


@command("sweep")
def cmd_sweep(args) -> Any:
    from .sweep import run_sweep
    from .train import TrainConfig
    from .transfer import TransferConfig

    cfg = TransferConfig(train=TrainConfig(steps=args.steps, prompt_length=args.prompt_len, seed=args.seed,
                                           eval_every=args.eval_every, train_limit=args.train_limit))
    return run_sweep(args.sources, args.targets, args.methods, args.backbone, cfg, executor=args.executor,
                     workers=args.workers, ray_address=args.ray_address, log=log)


@command("bench")
def cmd_bench(args) -> Any:
    from .bench import run_bench, write_docs

    out = run_bench(quick=args.quick, backbones=args.backbones or None, log=log)
    if args.write_docs:
        log(f"wrote {write_docs(out)}")
    return out


@command("pt-table")
def cmd_pt_table(args) -> Any:
    from .pt_table import pt_rows, render, update_readme
    from .train import TrainConfig

    cfg = TrainConfig()
    # larger backbones may be tabled with a smaller budget; the table says which
    other = TrainConfig(**{**cfg.to_dict(), **{k: v for k, v in (("steps", args.steps), ("eval_every", args.eval_every),
                                                                ("test_limit", args.test_limit)) if v is not None}})
    configs = {b: cfg if b == "minilm" else other for b in args.backbones}
    rows = {b: pt_rows(b, configs[b], train_missing=args.train, log=log,
                       tasks=args.tasks if b != "minilm" else None) for b in args.backbones}
    update_readme(render(rows, cfg, configs))
    return rows


@command("worker")
def cmd_worker(args) -> Any:
    from .jobs import work

    return {"run_id": args.run_id, "exit": work(args.run_id)}


# -------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m panda_core", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        return sp

    add("setup", "prepare backbones and the offline task suite (idempotent)")
    sp = add("data", "data prepare: build the offline task suite into the cache")
    sp.add_argument("action", choices=["prepare"])
    sp.add_argument("--tasks", nargs="*")
    sp = add("tasks", "list tasks, or add a user task from a file")
    sp.add_argument("action", nargs="?", choices=["list", "add"])
    sp.add_argument("--name")
    sp.add_argument("--file")
    sp.add_argument("--text-col", default="text")
    sp.add_argument("--text-b-col")
    sp.add_argument("--label-col", default="label")
    sp.add_argument("--label-names", help="comma-separated label names in id order")
    add("backbones", "list backbones")
    sp = add("train", "prompt tuning from scratch")
    sp.add_argument("--task", required=True)
    sp.add_argument("--backbone", default="minilm")
    sp.add_argument("--steps", type=int, default=300)
    sp.add_argument("--prompt-len", type=int, default=20)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--lr", type=float)
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--eval-every", type=int, default=50)
    sp.add_argument("--head", action="store_true", help="also train a per-task linear head")
    add_limits(sp)
    sp = add("transfer", "transfer a prompt from a source task to a target task")
    sp.add_argument("--source")
    sp.add_argument("--target", required=True)
    sp.add_argument("--method", required=True, choices=["zero-shot", "pt", "pot", "panda", "model-tuning"])
    sp.add_argument("--backbone", default="minilm")
    sp.add_argument("--steps", type=int, default=300)
    sp.add_argument("--prompt-len", type=int, default=20)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--lr", type=float)
    sp.add_argument("--eval-every", type=int, default=50)
    sp.add_argument("--lambda-max", type=float, default=1.0)
    sp.add_argument("--fixed-lambda", type=float, help="use this distillation weight instead of the metric")
    sp.add_argument("--kd-form", choices=["scaled", "code"], default="scaled")
    sp.add_argument("--teacher", choices=["pot", "source"], default="pot")
    sp.add_argument("--student-init", choices=["source", "random"], default="source")
    sp.add_argument("--no-reuse", action="store_true", help="rerun even if an identical run is stored")
    add_limits(sp)
    sp = add("similarity", "indicator matrix over the cached prompts of a backbone")
    sp.add_argument("--metric", required=True, choices=["e_concat", "e_avg", "c_concat", "c_avg", "spot", "on", "panda"])
    sp.add_argument("--backbone", default="minilm")
    sp.add_argument("--tasks", nargs="*")
    sp.add_argument("--prompt-len", type=int, default=20)
    sp.add_argument("--layers", help="ON layer window start:end (end exclusive)")
    sp.add_argument("--n-inputs", type=int, default=32, help="target inputs for the PANDA metric")
    sp = add("project", "train a cross-backbone projector and evaluate projected prompts")
    sp.add_argument("--source-backbone", default="minilm")
    sp.add_argument("--target-backbone", required=True)
    sp.add_argument("--train-task", required=True)
    sp.add_argument("--method", choices=["distance", "task"], default="task")
    sp.add_argument("--eval-tasks", nargs="*")
    sp.add_argument("--steps", type=int, default=200)
    sp.add_argument("--prompt-len", type=int, default=20)
    sp.add_argument("--seed", type=int, default=0)
    sp = add("report", "run the seeded reproduction study; writes docs/results.md")
    sp.add_argument("--backbone", default="minilm")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--stages", nargs="*", choices=["pt", "zero_shot", "transfers", "indicators", "projectors"])
    sp.add_argument("--render-only", action="store_true",
                    help="rewrite docs/results.md from docs/results/results.json without computing")
    sp = add("sweep", "many transfers (sources x targets x methods), resumable")
    sp.add_argument("--sources", nargs="+", required=True)
    sp.add_argument("--targets", nargs="+", required=True)
    sp.add_argument("--methods", nargs="+", default=["pot", "panda"])
    sp.add_argument("--backbone", default="minilm")
    sp.add_argument("--executor", choices=["local", "ray"], default="local")
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    sp.add_argument("--steps", type=int, default=300)
    sp.add_argument("--prompt-len", type=int, default=20)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--eval-every", type=int, default=50)
    sp.add_argument("--train-limit", type=int, help="use only the first N training examples of each target")
    sp = add("bench", "the performance harness: ours against PEFT, the hardware floor and naive loops")
    sp.add_argument("--quick", action="store_true", help="minilm only, small sizes, few repetitions (CI)")
    sp.add_argument("--backbones", nargs="*", help="backbones of the step cases (default: minilm mpnet)")
    sp.add_argument("--write-docs", action="store_true", help="render docs/performance.md from this run")
    sp = add("pt-table", "write the README's prompt-tuning table from stored runs")
    sp.add_argument("--backbones", nargs="*", default=["minilm"])
    sp.add_argument("--tasks", nargs="*", help="tasks for the non-default backbones")
    sp.add_argument("--train", action="store_true", help="train the missing runs first")
    sp.add_argument("--steps", type=int, help="training steps on the non-default backbones")
    sp.add_argument("--eval-every", type=int, help="dev evaluation interval on the non-default backbones")
    sp.add_argument("--test-limit", type=int, help="test examples on the non-default backbones")
    sp = add("worker", "run one queued background job (used by the app)")
    sp.add_argument("run_id")
    sp = add("prompts", "list, import or export prompts")
    sp.add_argument("action", nargs="?", choices=["list", "import", "export"])
    sp.add_argument("target", nargs="?", help="FILE or PEFT folder (import), prompt ID (export)")
    sp.add_argument("--backbone")
    sp.add_argument("--task")
    sp.add_argument("--format", choices=["safetensors", "peft"], default="safetensors")
    sp.add_argument("--out", default=".")
    sp = add("doctor", "check the cache: checksums, orphans, half-written files, database")
    sp.add_argument("--fix", action="store_true", help="remove half-written/orphan files, mark dead runs failed")
    return p


def main(argv: list[str] | None = None) -> int:
    if not os.environ.get("PANDA_ALLOW_HUB"):  # hub access only when the user opts in
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        out = COMMANDS[args.command](args)
    except PandaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.command == "doctor" and not out["ok"] and not args.fix:
        print(json.dumps(out, default=str))
        return 1
    if getattr(args, "json", False):
        print(json.dumps(out, default=str))
    else:
        print(json.dumps(out, indent=2, default=str))
    return 0
