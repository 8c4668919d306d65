"""Arguments shared by several commands, and the choices read from the registries.

No list of names is typed out here: ``--method`` offers `transfer.METHODS`,
``--metric`` `indicators.INDICATORS`, ``--kd-form``/``--teacher``/
``--student-init`` the enums of `transfer.config`, the projector's
``--method`` `crossmodel.ProjectorMethod`. A `RegistryChoices` reads its
source each time it is asked (so an entry registered at run time appears
with no CLI edit) and imports it only then (so building the parser imports
no torch). The parser leaves these values to the boundary checks
(`RegistryChoices.resolve`), which run after the cheap numeric checks and
refuse an unknown name with the registry's own one-line message.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Callable, Iterator

from ..errors import PandaError


class RegistryChoices:
    """The valid names of one registry or enum, read lazily.

    Args:
        what: what a name is ("transfer method"), for messages.
        names: returns the current names (imports the registry on first use).
        resolve: returns the canonical name or raises a one-line `PandaError`.
    """

    def __init__(self, what: str, names: Callable[[], list[str]], resolve: Callable[[str], str]) -> None:
        self.what = what
        self._names = names
        self._resolve = resolve

    def names(self) -> list[str]:
        return list(self._names())

    def resolve(self, value: str) -> str:
        return self._resolve(value)

    def __contains__(self, value: object) -> bool:
        return value in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"RegistryChoices({self.what})"

    def argument(self, default: str | list[str] | None = None, help: str = "") -> dict:
        """add_argument keywords: these choices, a metavar (so building the parser
        does not list them) and a help line that lists them when help is shown."""
        return {"choices": self, "metavar": self.what.upper().replace(" ", "_"), "default": default,
                "help": f"{help}{'; ' if help else ''}one of: %(choices)s"}


def _registry(what: str, load: Callable[[], object]) -> RegistryChoices:
    """Choices of a `panda_core.registry.Registry` returned by `load`."""
    return RegistryChoices(what, lambda: load().names(), lambda name: load().get(name).name)


def _enum(knob: str, load: Callable[[], type[enum.Enum]]) -> RegistryChoices:
    """Choices of a str enum returned by `load`; unknown values are refused naming the knob."""

    def resolve(value: str) -> str:
        names = [m.value for m in load()]
        if value not in names:
            raise PandaError(f"unknown {knob} {value!r}; choose from {', '.join(names)}")
        return value

    return RegistryChoices(knob, lambda: [m.value for m in load()], resolve)


def _methods():
    from ..transfer import METHODS

    return METHODS


def _indicators():
    from ..indicators import INDICATORS

    return INDICATORS


def _transfer_enum(name: str) -> Callable[[], type[enum.Enum]]:
    def load() -> type[enum.Enum]:
        from ..transfer import config

        return getattr(config, name)

    return load


def _readouts() -> RegistryChoices:
    from ..prompts import readouts

    return RegistryChoices("readout", lambda: [readouts.AUTO, *readouts.READOUTS.names()],
                           lambda name: name if name == readouts.AUTO else readouts.READOUTS.get(name).name)


def _projector_methods() -> type[enum.Enum]:
    from ..crossmodel import ProjectorMethod

    return ProjectorMethod


def method_choices() -> RegistryChoices:
    return _registry("transfer method", _methods)


def metric_choices() -> RegistryChoices:
    return _registry("indicator", _indicators)


def kd_form_choices() -> RegistryChoices:
    return _enum("kd_form", _transfer_enum("KdForm"))


def teacher_choices() -> RegistryChoices:
    return _enum("teacher", _transfer_enum("Teacher"))


def student_init_choices() -> RegistryChoices:
    return _enum("student_init", _transfer_enum("StudentInit"))


def readout_choices() -> RegistryChoices:
    return _readouts()


def _prompt_types():
    from ..prompts import PROMPT_TYPES

    return PROMPT_TYPES


def prompt_type_choices() -> RegistryChoices:
    return _registry("prompt type", _prompt_types)


def add_prompt_type(sp: argparse.ArgumentParser) -> None:
    """--prompt-type: which `PROMPT_TYPES` entry is trained or read (default input)."""
    sp.add_argument("--prompt-type", **prompt_type_choices().argument(
        help="input: n x d rows in the input embeddings; deep: per-layer key/value prefixes (P-tuning v2)"))


def projector_choices() -> RegistryChoices:
    return _enum("projector method", _projector_methods)


# ------------------------------------------------------------------ groups
def add_json(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def add_check(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--check", action="store_true",
                    help="validate every parameter and print the resolved plan as JSON; run nothing, write nothing")


def add_budget(sp: argparse.ArgumentParser, *, lr: bool = True, batch: bool = True, eval_every: bool = True) -> None:
    """--steps, --prompt-len, --seed and, when asked, --lr, --batch-size, --eval-every."""
    sp.add_argument("--steps", type=int, default=300)
    sp.add_argument("--prompt-len", type=int, default=20)
    sp.add_argument("--seed", type=int, default=0)
    if lr:
        sp.add_argument("--lr", type=float, help="learning rate (default: the backbone's)")
    if batch:
        sp.add_argument("--batch-size", type=int, default=16)
    if eval_every:
        sp.add_argument("--eval-every", type=int, default=50)
        sp.add_argument("--patience", type=int,
                        help="stop after N dev evaluations without improvement (default: run every step)")
    if batch:
        from ..training.config import BATCHINGS  # no torch

        sp.add_argument("--batching", choices=BATCHINGS,
                        help="training batches drawn at random, or grouped by length (less padding); "
                             "default: TrainConfig's")


def add_limits(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--train-limit", type=int, help="use only the first N training examples")
    sp.add_argument("--dev-limit", type=int, help="evaluate on the first N dev examples (default 500)")
    sp.add_argument("--test-limit", type=int, help="report test accuracy on the first N test examples")
