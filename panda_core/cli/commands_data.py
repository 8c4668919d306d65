"""Set-up and listings: `setup`, `data`, `tasks` (list, add a user task) and
`backbones`."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import PandaError
from .base import command, stage_progress


# ------------------------------------------------------------ data, tasks
@command("setup", "prepare backbones and the offline task suite (idempotent)")
def cmd_setup(args: argparse.Namespace) -> Any:
    from ..backbones import prepare_backbones
    from ..data import prepare

    return {"backbones": prepare_backbones(progress=stage_progress), "tasks": prepare(progress=stage_progress)}


def _data_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", choices=["prepare"])
    sp.add_argument("--tasks", nargs="*")


@command("data", "data prepare: build the offline task suite into the cache", _data_arguments)
def cmd_data(args: argparse.Namespace) -> Any:
    from ..data import prepare

    return {"tasks": prepare(args.tasks or None, progress=stage_progress)}


def _tasks_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", nargs="?", choices=["list", "add"])
    sp.add_argument("--name")
    sp.add_argument("--file")
    sp.add_argument("--text-col", default="text")
    sp.add_argument("--text-b-col")
    sp.add_argument("--label-col", default="label")
    sp.add_argument("--label-names", help="comma-separated label names in id order")


@command("tasks", "list tasks, or add a user task from a file", _tasks_arguments)
def cmd_tasks(args: argparse.Namespace) -> Any:
    from ..data import add_user_task, list_tasks

    if args.action != "add":
        return list_tasks()
    if not args.name or not args.file:
        raise PandaError("tasks add needs --name and --file")
    labels = args.label_names.split(",") if args.label_names else None
    return add_user_task(args.name, args.file, text_col=args.text_col, label_col=args.label_col,
                         text_b_col=args.text_b_col, label_names=labels)


@command("backbones", "list backbones")
def cmd_backbones(args: argparse.Namespace) -> Any:
    from ..backbones import list_backbones

    return list_backbones()
