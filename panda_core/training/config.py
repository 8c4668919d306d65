"""The knobs of a training run, checked when they are built.

`TrainConfig` is a dataclass validated in ``__post_init__`` (scikit-learn
style) and again on every later assignment, so a bad value is refused with a
one-line `PandaError` naming the field, the value and the allowed range before
any model is loaded or anything is stored. The module imports no torch, so
the CLI and the app can refuse a value in well under a second.

The field names, their order and their defaults are part of stored data: run
configs hold ``asdict(config)``, and checkpoint digests and transfer run keys
hash it. Adding or reordering a field changes every key, so don't.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import Any

from ..errors import PandaError
from ..prompts import readouts
from ..prompts.init import PromptInit
from ..prompts.types import PROMPT_TYPES

MAX_PROMPT_LENGTH = 512  # no backbone here reads more positions
MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds


def _integer(lo: int, hi: int | None = None, optional: bool = False) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return isinstance(v, Integral) and not isinstance(v, bool) and lo <= v and (hi is None or v <= hi)

    rule = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
    return ok, (f"None or {rule}" if optional else rule)


def _number(lo: float, hi: float | None = None, *, open_low: bool = False,
            optional: bool = False) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if not isinstance(v, Real) or isinstance(v, bool) or not math.isfinite(v):
            return False
        return (v > lo if open_low else v >= lo) and (hi is None or v <= hi)

    low = f"> {lo}" if open_low else f">= {lo}"
    rule = f"a finite number {low}" if hi is None else f"a number in {'(' if open_low else '['}{lo}, {hi}]"
    return ok, (f"None or {rule}" if optional else rule)


def _flag() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, bool)), "true or false"


def _choice(names: list[str]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: getattr(v, "value", v) in names), f"one of {', '.join(names)}"


# field -> (accepts the value?, the allowed range in words); optional fields also accept None
#: how training batches are drawn: "random" (uniformly shuffled) or "length" (shuffled, then grouped by
#: length in groups of 50 batches whose order is shuffled: little padding; `trainer.Stream`)
BATCHINGS = ("random", "length")

_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "steps": _integer(1),
    "batch_size": _integer(1),
    "lr": _number(0.0, open_low=True, optional=True),
    "weight_decay": _number(0.0),
    "warmup": _number(0.0, 1.0),
    "eval_every": _integer(1),
    "patience": _integer(0, optional=True),
    "prompt_length": _integer(1, MAX_PROMPT_LENGTH),
    "max_length": _integer(1),
    "init": _choice([p.value for p in PromptInit]),
    "head": _flag(),
    "temperature": _number(0.0, open_low=True),
    "seed": _integer(0, MAX_SEED),
    "dev_limit": _integer(1, optional=True),
    "test_limit": _integer(1, optional=True),
    "train_limit": _integer(1, optional=True),
    "tune_model": _flag(),
    "model_lr": _number(0.0, open_low=True),
    "kd_weight": _number(0.0),
    "readout": _choice([readouts.AUTO, *readouts.READOUTS.names()]),
    "prompt_type": _choice(PROMPT_TYPES.names()),
    "batching": _choice(BATCHINGS),
}
_OPTIONAL = {"lr", "patience", "dev_limit", "test_limit", "train_limit"}


def check_field(name: str, value: Any) -> None:
    """Refuse a value outside the field's range with one line."""
    if name not in _RULES:
        return
    ok, rule = _RULES[name]
    if value is None and name in _OPTIONAL:
        return
    if not ok(value):
        raise PandaError(f"invalid {name}={value!r}: must be {rule}")


# rows x padded width per forward pass of multi-prompt training: a step's mixed
# rows are sorted by length and cut into passes of about this many tokens, so a
# short task's texts are not padded to a long task's width (None: one pass)
DEFAULT_TOKEN_BUDGET = 4096


@dataclass
class TrainConfig:
    """Every knob of a training run (defaults follow PANDA's released code,
    scaled down for 2 CPU cores)."""

    steps: int = 300
    batch_size: int = 16
    lr: float | None = None  # None: the backbone's default
    weight_decay: float = 1e-5
    warmup: float = 0.06  # fraction of steps with linear warm-up, then linear decay
    eval_every: int = 50
    patience: int | None = None  # stop after this many evals without dev improvement
    prompt_length: int = 20
    max_length: int = 128
    init: str = PromptInit.VOCAB.value
    head: bool = False  # train a per-task linear head next to the prompt
    temperature: float = 20.0
    seed: int = 0
    dev_limit: int | None = 500
    test_limit: int | None = None
    train_limit: int | None = None
    tune_model: bool = False  # model tuning: all backbone weights are trained
    model_lr: float = 2e-5
    kd_weight: float = 0.0  # PANDA: weight of the distillation term
    #: how classes are read and scored (`prompts.readouts.READOUTS`); "auto": the backbone kind's default
    readout: str = readouts.AUTO
    #: what a prompt is (`prompts.types.PROMPT_TYPES`): input-level rows or per-layer deep prefixes
    prompt_type: str = "input"
    #: how training batches are drawn (`BATCHINGS`)
    batching: str = "random"

    def __post_init__(self) -> None:
        for f in fields(self):
            check_field(f.name, getattr(self, f.name))
        self.readout = getattr(self.readout, "value", self.readout)
        if self.head and self.readout != readouts.AUTO and readouts.READOUTS.get(self.readout).has_params:
            raise PandaError(f"invalid head=True with readout={self.readout!r}: that readout trains its own "
                             "parameters; a linear head goes with a readout without any")
        object.__setattr__(self, "_checked", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_checked", False):  # later assignments are checked too (built ones in __post_init__)
            check_field(name, value)
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """The stored form. ``readout`` is left out while it is "auto" and "auto"
        still means each kind's original readout, and ``prompt_type`` while it
        is "input", and ``batching`` while it is "random", so the keys of the
        runs stored before them stay the same."""
        out = asdict(self)
        if out["readout"] == readouts.AUTO and readouts.DEFAULT == readouts.LEGACY:
            del out["readout"]
        if out["prompt_type"] == "input":  # likewise: input-level runs keep their keys
            del out["prompt_type"]
        if out["batching"] == "random":  # likewise: runs batched at random keep their keys
            del out["batching"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a stored or submitted dict; unknown keys are refused."""
        if not isinstance(data, dict):
            raise PandaError(f"training settings must be a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown:
            raise PandaError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(names)}")
        return cls(**data)
