"""The knobs of a transfer (METHODS.md 2-3), validated when they are built.

`TransferConfig` wraps the training loop's `TrainConfig` (validated by the
training package) and adds PANDA's knobs. A bad value is refused here, with
one line naming the knob and its range, before any model is loaded or
anything is stored. `TransferConfig.key` names the work: equal keys mean the
same run, so stored runs are reused and resumed by it (do not change it
for existing methods, or every stored run becomes a stranger).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import PandaError
from ..training import TrainConfig


class KdForm(str, enum.Enum):
    """How PANDA turns the predicted transferability T(s, t) into the KD weight."""

    SCALED = "scaled"  # lambda = lambda_max * clip(T, 0, 1)          (default)
    CODE = "code"  # lambda = 0.1 * T / batch_size, the released code's form


class Teacher(str, enum.Enum):
    """PANDA's frozen teacher prompt."""

    POT = "pot"  # the vanilla-PoT prompt trained on the target (released code)
    SOURCE = "source"  # the source prompt itself (cheaper: no PoT run needed)


class StudentInit(str, enum.Enum):
    """Where PANDA's student prompt starts."""

    SOURCE = "source"  # PoT + KD (default)
    RANDOM = "random"  # a fresh vocabulary-sampled prompt (released code)


def choice(enum_type: type[enum.Enum], value: Any, knob: str) -> str:
    """`value` as the string of one of `enum_type`'s members, or a one-line refusal."""
    raw = getattr(value, "value", value)
    names = [m.value for m in enum_type]
    if raw not in names:
        raise PandaError(f"unknown {knob} {value!r}; choose from {', '.join(names)}")
    return raw


def _weight(value: Any, knob: str) -> None:
    """Refuse a weight that is not a finite number >= 0 (bools are not numbers here)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < 0:
        raise PandaError(f"{knob} must be a finite number >= 0, got {value!r}")


#: fields added after runs were stored: in a key only when set off their default
_KEYED_WHEN_SET = {"from_source": False}


@dataclass
class TransferConfig:
    """Knobs of a transfer; `train` holds the shared training-loop settings.

    Args:
        train: the training loop's config (steps, prompt length, lr, limits, seed, ...).
        lambda_max: PANDA's largest KD weight (scaled form), >= 0.
        kd_form: "scaled" or "code" (`KdForm`).
        teacher: "pot" or "source" (`Teacher`).
        student_init: "source" or "random" (`StudentInit`).
        metric_inputs: target inputs the PANDA metric averages over, >= 1.
        fixed_lambda: overrides the metric's KD weight (ablations; 0 reduces PANDA to PoT), >= 0.
        from_source: methods with an optional source (model tuning) start from
            the source prompt; by default they read none.

    Example:
        >>> TransferConfig(train=TrainConfig(steps=40), lambda_max=0.5).kd_form
        'scaled'
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    lambda_max: float = 1.0
    kd_form: str = KdForm.SCALED.value
    teacher: str = Teacher.POT.value
    student_init: str = StudentInit.SOURCE.value
    metric_inputs: int = 32
    fixed_lambda: float | None = None
    from_source: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.train, dict):  # a config read back from JSON (jobs, sweeps)
            self.train = TrainConfig(**self.train)
        if not isinstance(self.train, TrainConfig):
            raise PandaError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        _weight(self.lambda_max, "lambda_max")
        if self.fixed_lambda is not None:
            _weight(self.fixed_lambda, "fixed_lambda")
        self.kd_form = choice(KdForm, self.kd_form, "kd_form")
        self.teacher = choice(Teacher, self.teacher, "teacher")
        self.student_init = choice(StudentInit, self.student_init, "student_init")
        if not isinstance(self.from_source, bool):
            raise PandaError(f"from_source must be true or false, got {self.from_source!r}")
        n = self.metric_inputs
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
            raise PandaError(f"metric_inputs must be an integer >= 1, got {n!r}")

    def to_dict(self) -> dict:
        return asdict(self) | {"train": self.train.to_dict()}  # TrainConfig's stored form (its readout rule)

    def key(self, method: str, source: str | None, target: str, backbone: str, prompts: tuple = ()) -> str:
        """Identity of the work: equal keys mean the same run (for resume and reuse).
        `prompts` are the ids of the stored prompts the run reads. Only methods
        that declare `transfer_knobs` (PANDA) key on the knobs beyond `train`, so
        a PoT run and PANDA's PoT teacher with the same `train` share one key."""
        from .base import METHODS  # the registry imports this module

        name = getattr(method, "value", method)
        full = name in METHODS and METHODS.get(name).transfer_knobs
        knobs = self.to_dict() if full else {"train": self.train.to_dict()}
        for name_, default in _KEYED_WHEN_SET.items():  # keys of runs stored before these fields stay valid
            if knobs.get(name_, default) == default:
                knobs.pop(name_, None)
        blob = json.dumps([name, source, target, backbone, knobs, list(prompts)], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]
