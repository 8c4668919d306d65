"""The pieces every command module shares: the `COMMANDS` registry, what a
checked command returns (`Prepared`), and logging / progress on stderr.

A command is one `Command` registered with `@command(...)` in a
``commands_*`` module: its name and help, a function adding its arguments to
its sub-parser, and its handler. A *checked* command's handler validates every
parameter (cheap checks first, no model, no write) and returns a `Prepared`:
`plan()` describes the work for ``--check`` and `run()` does it, so a bad
value is refused the same way whether or not the work would run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..registry import Registry

Handler = Callable[[argparse.Namespace], Any]


@dataclass(frozen=True)
class Command:
    """One sub-command of ``python -m panda_core``.

    Args:
        name: the sub-command (a DESIGN.md contract name).
        help: one line for ``--help``.
        arguments: adds the command's own arguments to its sub-parser.
        handler: the work; a checked command's handler returns a `Prepared`.
        checked: the command takes ``--check`` (validate, print the plan, run nothing).
    """

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler
    checked: bool = False

    @property
    def label(self) -> str:
        return self.help


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None,
            checked: bool = False) -> Callable[[Handler], Handler]:
    """Register the decorated handler as the command `name`."""

    def wrap(fn: Handler) -> Handler:
        COMMANDS.register(Command(name, help, arguments or (lambda _sp: None), fn, checked))
        return fn

    return wrap


@dataclass(frozen=True)
class Prepared:
    """A checked command's validated parameters: `plan()` is the JSON that
    ``--check`` prints (it may read the store, never writes); `run()` does the work."""

    plan: Callable[[], dict]
    run: Callable[[], Any]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tqdm_progress(total: int, desc: str) -> Callable[[dict], None]:
    """A progress callback for train-loop dicts, drawn with tqdm on stderr.
    The bar appears with the first progress report, so an early error stays
    a clean one-line message."""
    state: dict = {}

    def update(info: dict) -> None:
        bar = state.get("bar")
        if bar is None:
            from tqdm import tqdm

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


# characters str.splitlines() breaks on: an error is printed as one line whatever the input held
_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(text: str) -> str:
    """`text` on one printable line (line breaks escaped, unencodable characters backslash-escaped)."""
    return text.translate(_BREAKS).strip().encode("utf-8", "backslashreplace").decode("utf-8")
