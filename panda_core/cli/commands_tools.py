"""Prompt files (`prompts`), cache health (`doctor`), the job worker
(`worker`) and the measurement tools of `devtools` (`report`, `bench`,
`pt-table`; imported only when they run, so the library never imports them)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import PandaError
from .args import RegistryChoices
from .base import command, log


# ---------------------------------------------------------- prompts, doctor
def _prompts_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", nargs="?", choices=["list", "import", "export"])
    sp.add_argument("target", nargs="?",
                    help="import: a prompt file (.safetensors, .npy, torch .pt/.bin or a Prompt-Transferability "
                         "task_prompt), a PEFT adapter folder, or a folder / .zip of prompts (see "
                         "docs/formats.md); export: a prompt ID")
    sp.add_argument("--backbone", help="import: the backbone of prompts that do not name one (an id such as "
                                       "roberta-base is stored without loading it)")
    sp.add_argument("--task", help="import: the task of a single prompt whose file does not name it")
    sp.add_argument("--format", choices=["safetensors", "peft"], default="safetensors")
    sp.add_argument("--out", default=".")


@command("prompts", "list, import (safetensors, PEFT, .npy, torch, folders, .zip) or export prompts",
         _prompts_arguments)
def cmd_prompts(args: argparse.Namespace) -> Any:
    from .. import ops, store

    if args.action in (None, "list"):  # each prompt's accuracies with their 95% intervals
        rows = store.list_prompts(backbone=args.backbone, task=args.task)
        return [r | {"accuracy": a} for r, a in zip(rows, ops.prompt_accuracies(rows), strict=True)]
    if not args.target:
        raise PandaError(f"prompts {args.action} needs a FILE (import) or an ID (export)")
    if args.action == "import":
        return ops.import_prompt(args.target, backbone=args.backbone, task=args.task)
    return ops.export_prompt(args.target, args.format, args.out)


def _doctor_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--fix", action="store_true", help="remove half-written/orphan files, mark dead runs failed")


@command("doctor", "check the cache: checksums, orphans, half-written files, database", _doctor_arguments)
def cmd_doctor(args: argparse.Namespace) -> Any:
    from ..ops import check

    return check(fix=args.fix)


def _worker_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("run_id")


@command("worker", "run one queued background job (used by the app)", _worker_arguments)
def cmd_worker(args: argparse.Namespace) -> Any:
    from ..ops import work

    return {"run_id": args.run_id, "exit": work(args.run_id)}


# --------------------------------------------------------------- devtools
def _stage_choices() -> RegistryChoices:
    """The report's stages, read from `devtools.report.STAGES` when asked (never at import)."""

    def names() -> list[str]:
        from devtools.report import STAGES

        return list(STAGES)

    def resolve(name: str) -> str:
        if name not in names():
            raise PandaError(f"unknown report stage {name!r}; choose from {', '.join(names())}")
        return name

    return RegistryChoices("report stage", names, resolve)


def _report_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--backbone", default="minilm")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--stages", nargs="*", **_stage_choices().argument(help="the stages to run (default: all)"))
    sp.add_argument("--render-only", action="store_true",
                    help="rewrite docs/results.md from docs/results/results.json without computing")


@command("report", "run the seeded reproduction study; writes docs/results.md", _report_arguments)
def cmd_report(args: argparse.Namespace) -> Any:
    from devtools.report import StudyConfig, rerender, run_study

    if args.render_only:
        return rerender()
    return run_study(StudyConfig(backbone=args.backbone, seed=args.seed), stages=args.stages or None, log=log)


def _bench_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--quick", action="store_true", help="minilm only, small sizes, few repetitions (CI)")
    sp.add_argument("--backbones", nargs="*", help="backbones of the step cases (default: minilm mpnet)")
    sp.add_argument("--write-docs", action="store_true", help="render docs/performance.md from this run")
    sp.add_argument("--resume", action="store_true",
                    help="keep the case groups an interrupted run of the same settings finished (cache/bench)")


@command("bench", "the performance harness: ours against PEFT, the hardware floor and naive loops",
         _bench_arguments)
def cmd_bench(args: argparse.Namespace) -> Any:
    from devtools.bench import run_bench, write_docs

    out = run_bench(quick=args.quick, backbones=args.backbones or None, log=log, resume=args.resume)
    if args.write_docs:
        log(f"wrote {write_docs(out)}")
    return out


def _pt_table_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--backbones", nargs="*", default=["minilm"])
    sp.add_argument("--tasks", nargs="*", help="tasks for the non-default backbones")
    sp.add_argument("--train", action="store_true", help="train the missing runs first")
    sp.add_argument("--steps", type=int, help="training steps on the non-default backbones")
    sp.add_argument("--eval-every", type=int, help="dev evaluation interval on the non-default backbones")
    sp.add_argument("--test-limit", type=int, help="test examples on the non-default backbones")
    sp.add_argument("--from-results", metavar="RESULTS_JSON",
                    help="minilm's rows from a saved study's PT stage (docs/results/results.json) instead of the store")


@command("pt-table", "write the README's prompt-tuning table from stored runs", _pt_table_arguments)
def cmd_pt_table(args: argparse.Namespace) -> Any:
    from devtools.pt_table import command_line, pt_rows, render, rows_from_results, update_readme

    from ..training import TrainConfig

    cfg = TrainConfig()
    saved = None
    if args.from_results:
        path = Path(args.from_results)
        if not path.is_file():
            raise PandaError(f"--from-results: no file {path}")
        try:
            results = json.loads(path.read_text())
            saved, saved_cfg = rows_from_results(results)
            saved_backbone = results["config"]["backbone"]
        except (ValueError, KeyError, TypeError) as e:
            raise PandaError(f"--from-results: {path} is not a saved study's results.json ({e!r})") from None
        if saved_backbone != "minilm":
            raise PandaError(f"--from-results: {path} is a study on {saved_backbone}; the table's default "
                             "budget is minilm's")
        if saved_cfg.to_dict() != cfg.to_dict():
            raise PandaError(f"--from-results: {path} trained PT with other settings than train's defaults")
    # larger backbones may be tabled with a smaller budget; the table says which
    changed = {k: v for k, v in (("steps", args.steps), ("eval_every", args.eval_every),
                                 ("test_limit", args.test_limit)) if v is not None}
    other = TrainConfig.from_dict(cfg.to_dict() | changed)
    configs = {b: cfg if b == "minilm" else other for b in args.backbones}
    rows = {b: saved if b == "minilm" and saved is not None else
            pt_rows(b, configs[b], train_missing=args.train, log=log, tasks=args.tasks if b != "minilm" else None)
            for b in args.backbones}
    command = command_line(args.backbones, args.tasks, args.steps, args.eval_every, args.test_limit,
                           args.from_results or "", args.train)
    update_readme(render(rows, cfg, configs, source=args.from_results or "", command=command))
    return rows
