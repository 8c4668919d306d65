"""The argument parser, built from the registered commands.

`Parser` keeps the CLI's error contract for usage errors too: exit 2 and
exactly one ``error: ...`` line on stderr (argparse would print the usage
first). Values whose choices come from a registry (`RegistryChoices`) are
not checked while parsing: the command's boundary checks resolve them after
the cheap numeric checks, so a bad number is refused without importing the
registries' heavy modules, and an unknown name gets the registry's message.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from .args import RegistryChoices, add_json
from .base import COMMANDS, one_line

# the command modules, in the order --help lists their commands (each registers its own on import)
for _module in ("commands_data", "commands_train", "commands_eval", "commands_tools", "commands_zoo"):
    importlib.import_module(f".{_module}", __package__)

DESCRIPTION = """`python -m panda_core COMMAND`: the command-line contract of DESIGN.md.

With --json, exactly one JSON document goes to stdout; logs and progress bars
go to stderr. Bad input exits 2 with a one-line error, no traceback. train,
transfer, similarity, project and sweep take --check: validate everything and
print the resolved plan, run nothing."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one ``error:`` line (exit 2)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {one_line(message)} (see: {self.prog} --help)\n")
        raise SystemExit(2)

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if isinstance(action.choices, RegistryChoices):
            return  # resolved at the boundary by the registry (see the module docstring)
        super()._check_value(action, value)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered command (sub-parsers in registration order)."""
    p = Parser(prog="python -m panda_core", description=DESCRIPTION,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for cmd in COMMANDS:
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        add_json(sp)
        cmd.arguments(sp)
    return p
