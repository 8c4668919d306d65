"""`python -m panda_core COMMAND`: the command-line contract of DESIGN.md.

With --json, exactly one JSON document goes to stdout; logs and progress bars
go to stderr. Bad input exits 2 with one ``error: ...`` line on stderr and no
traceback - refused at the boundary, before any model is loaded and before
anything is written.

The package: `base` (the `COMMANDS` registry, `Prepared`, logging),
`args` (shared arguments; choices read from the registries), `checks` (the
boundary validation), one ``commands_*`` module per group of commands, and
`parser` (`build_parser`, built from `COMMANDS`). Adding a command is one
``@command(...)`` in a commands module; a new transfer method, indicator or
backbone appears in the choices with no edit here.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Any

from ..errors import PandaError
from .base import COMMANDS, Prepared, log, one_line, stage_progress, tqdm_progress
from .parser import build_parser

__all__ = ["COMMANDS", "build_parser", "log", "main", "stage_progress", "tqdm_progress"]


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """One parser per process (its registry choices are read when used, so it never goes stale)."""
    return build_parser()


def _execute(args: Any) -> Any:
    """Run the command; a checked one is validated and planned first, and with
    --check its plan is the output."""
    out = COMMANDS.get(args.command).handler(args)
    if not isinstance(out, Prepared):
        return out
    plan = out.plan()  # also validates what the run reads from the store, before anything loads
    if getattr(args, "check", False):
        return {"check": "ok", **plan}
    return out.run()


def main(argv: list[str] | None = None) -> int:
    if not os.environ.get("PANDA_ALLOW_HUB"):  # hub access only when the user opts in
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error, already printed as one line (2)
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
    try:
        out = _execute(args)
    except PandaError as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.command == "doctor" and not out["ok"] and not args.fix:
        print(json.dumps(out, default=str))
        return 1
    print(json.dumps(out, default=str) if getattr(args, "json", False) else json.dumps(out, indent=2, default=str))
    return 0
