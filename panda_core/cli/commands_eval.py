"""The commands that read stored prompts: `similarity` (an indicator matrix),
`project` (a cross-backbone projector) and `measurements` (transfer measured
elsewhere, imported from a CSV, and the indicators validated against it).
They validate their parameters first and resolve the stored prompts they read
(refusing the missing ones with the command that trains or imports them)."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import PandaError
from . import checks
from .args import add_check, add_prompt_type, metric_choices, projector_choices, prompt_type_choices
from .base import Prepared, command, log, tqdm_progress


def _prompt_length(value: Any) -> int:
    from ..training import check_field

    check_field("prompt_length", value)
    return value


def _stored_length(backbone: str, prompt_type: str) -> int:
    """--prompt-len when it is not given: 20, unless the backbone's task prompts
    all have another length (published prompts: 100 tokens on roberta-base)."""
    if not checks.store_exists():
        return 20
    from .. import store

    lengths = {r["length"] for r in store.list_prompts(backbone=backbone, method="pt", prompt_type=prompt_type)}
    return lengths.pop() if len(lengths) == 1 else 20


# ------------------------------------------------------------- similarity
def _similarity_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--metric", required=True, **metric_choices().argument())
    sp.add_argument("--backbone", default="minilm")
    sp.add_argument("--tasks", nargs="*")
    sp.add_argument("--prompt-len", type=int,
                    help="prompt length (default 20, or the one length the backbone's stored prompts have)")
    add_prompt_type(sp)
    sp.add_argument("--layers", help="ON layer window start:end (end exclusive)")
    sp.add_argument("--n-inputs", type=int, default=32, help="target inputs for the PANDA metric")
    sp.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="another option the indicator declares (e.g. inputs=prompt_alone for on, delta=true); "
                         "repeatable")
    add_check(sp)


@command("similarity", "indicator matrix over the cached prompts of a backbone", _similarity_arguments,
         checked=True)
def cmd_similarity(args: argparse.Namespace) -> Prepared:
    given = None if args.prompt_len is None else _prompt_length(args.prompt_len)
    n_inputs = checks.count(args.n_inputs, "--n-inputs")
    tasks = checks.tasks(args.tasks, "--tasks") or None
    metric = metric_choices().resolve(args.metric)
    kind = prompt_type_choices().resolve(args.prompt_type or "input")
    bb = checks.backbone(args.backbone, model=False)  # embedding indicators need no model
    length = given if given is not None else _stored_length(bb["name"], kind)
    window = checks.layer_window(args.layers, bb)
    extra = checks.indicator_options(metric, args.option)
    if bb["origin"] == "stored":
        from ..indicators import INDICATORS

        if INDICATORS.get(metric).needs_backbone or extra.get("delta"):
            from ..backbones.foreign import not_installed_message

            raise PandaError(not_installed_message(bb["name"]))

    def plan() -> dict:
        from .. import store
        from ..indicators import INDICATORS
        from ..indicators.similarity import task_prompts

        checks.require_store(f"the {metric} matrix", bb["name"], length, (tasks or [None])[0])
        prompts = task_prompts(bb["name"], tasks, length, kind)
        ind = INDICATORS.get(metric)
        accepted = {o.name for o in ind.options}
        options = {k: v for k, v in (("layers", window), ("n_inputs", n_inputs)) if k in accepted} | extra
        return {"command": "similarity", "metric": metric, "label": ind.label, "family": ind.family,
                "needs_backbone": ind.needs_backbone, "backbone": bb, "prompt_length": length, "prompt_type": kind,
                "tasks": [p.task for p in prompts], "prompt_ids": [p.prompt_id for p in prompts],
                "prompt_origins": [store.prompt_origin(p) for p in prompts], "options": options}

    def run() -> Any:
        from ..indicators.similarity import similarity_table

        return similarity_table(metric, args.backbone, tasks, prompt_length=length, layers=window,
                                n_inputs=n_inputs, options=extra, prompt_type=kind)

    return Prepared(plan, run)


# ---------------------------------------------------------------- project
def _project_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--source-backbone", default="minilm")
    sp.add_argument("--target-backbone", required=True)
    sp.add_argument("--train-task", required=True)
    sp.add_argument("--method", **projector_choices().argument("task"))
    sp.add_argument("--eval-tasks", nargs="*")
    sp.add_argument("--steps", type=int, default=200)
    sp.add_argument("--prompt-len", type=int, default=20)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--test-limit", type=int, default=None,
                    help="score each projected prompt on at most this many test examples (default: all)")
    add_check(sp)


@command("project", "train a cross-backbone projector and evaluate projected prompts", _project_arguments,
         checked=True)
def cmd_project(args: argparse.Namespace) -> Prepared:
    from ..training import check_field

    check_field("steps", args.steps)
    check_field("seed", args.seed)
    if args.test_limit is not None:
        check_field("test_limit", args.test_limit)
    length = _prompt_length(args.prompt_len)
    train_task = checks.task(args.train_task, available=True).name
    eval_tasks = checks.tasks(args.eval_tasks, "--eval-tasks", available=True) or [train_task]
    method = projector_choices().resolve(args.method)
    source = checks.backbone(args.source_backbone, "--source-backbone")
    target = checks.backbone(args.target_backbone, "--target-backbone")

    def plan() -> dict:
        from .. import store
        from ..crossmodel import projector_config, pt_prompt

        checks.require_store("the projector", source["name"], length, train_task)
        reads = [(t, source["name"]) for t in dict.fromkeys([train_task, *eval_tasks])]
        if method == "distance":
            reads.append((train_task, target["name"]))
        for task, backbone in reads:
            pt_prompt(task, backbone, length)  # refuses a missing prompt with the command that trains it
        config = projector_config(args.steps, prompt_length=length, seed=args.seed, test_limit=args.test_limit)
        return {"command": "project", "source_backbone": source, "target_backbone": target,
                "train_task": train_task, "method": method, "eval_tasks": eval_tasks, "config": config.to_dict(),
                "reads": [{"task": t, "backbone": b, "prompt_id": store.latest_prompt_id(t, b, "pt", length)}
                          for t, b in reads]}

    def run() -> Any:
        from ..ops import run_projection

        log(f"projector {args.source_backbone} -> {args.target_backbone} ({method}) on {train_task}")
        return run_projection(args.source_backbone, args.target_backbone, train_task, method,
                              eval_tasks=args.eval_tasks or None, steps=args.steps, prompt_length=length,
                              seed=args.seed, test_limit=args.test_limit, progress=tqdm_progress(args.steps, "projector"))

    return Prepared(plan, run)


# ------------------------------------------------------------ measurements
def _measurements_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", nargs="?", choices=["list", "import", "validate"])
    sp.add_argument("target", nargs="?", help="import: a CSV of source,target,score[,backbone,metric,n,note]; "
                                              "validate: the name of an imported measurement")
    sp.add_argument("--name", help="import: the measurement's name (default: the file's stem)")
    sp.add_argument("--backbone", help="import: the backbone the numbers are of, unless the CSV has a backbone "
                                       "column; list: only this backbone's")
    sp.add_argument("--measure", help="import: what the scores are, a measure name (default zero-shot: relative "
                                      "performance), unless the CSV has a metric column")
    sp.add_argument("--replace", action="store_true", help="import: replace a measurement of the same name")
    sp.add_argument("--metrics", nargs="*", help="validate: the indicators (default: every one this backbone can "
                                                 "compute)")
    sp.add_argument("--tasks", nargs="*", help="validate: a subset of its tasks")
    sp.add_argument("--prompt-len", type=int, help="validate: prompt length (default: the one recorded at import)")


@command("measurements", "transfer measured elsewhere: import a CSV, list them, validate indicators against one",
         _measurements_arguments)
def cmd_measurements(args: argparse.Namespace) -> Any:
    from ..indicators import external

    if args.action in (None, "list"):
        return external.list_measurements(args.backbone)
    if not args.target:
        raise PandaError(f"measurements {args.action} needs a FILE (import) or a NAME (validate)")
    if args.action == "import":
        return external.import_measurement(args.target, args.name, args.backbone, args.measure, replace=args.replace)
    length = None if args.prompt_len is None else _prompt_length(args.prompt_len)
    tasks = checks.tasks(args.tasks, "--tasks") or None
    metrics = [metric_choices().resolve(m) for m in args.metrics or []] or None
    found = external.load_measurement(args.target)
    from ..indicators.validation import validate_indicators

    return validate_indicators(found.backbone, tasks, external.PREFIX + found.name, metrics, length)
