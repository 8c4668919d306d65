"""Training: the one loop (`Trainer`) and what runs through it.

- `config`: `TrainConfig`, validated when built (no torch: cheap to import);
- `trainer`: `Trainer`, `ParamGroup`, `Member`, `Stream`, `lr_lambda`;
- `objectives`: `CrossEntropy`, `Distillation` (+ `TeacherCache`), `Routing`
  (+ `MultiTaskBatcher`), `ProjectorDistance`, `ProjectorTask`;
- `tuning`: `train` / `evaluate` for PT, PoT, PANDA and model tuning;
- `multitask`: batched multi-prompt training (`train_multitask`; `ops.train_prompts` records it);
- `checkpoint`: mid-run checkpoints (resume).

Importing the package loads only the config; the rest (torch) is loaded on
first use of a name.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import Cancelled
from .config import DEFAULT_TOKEN_BUDGET, TrainConfig, check_field

_LAZY = {
    "Trainer": "trainer", "ParamGroup": "trainer", "Member": "trainer", "Stream": "trainer",
    "Objective": "trainer", "lr_lambda": "trainer", "take_step": "trainer", "Progress": "trainer",
    "TeacherCache": "objectives", "CrossEntropy": "objectives", "Distillation": "objectives",
    "Routing": "objectives", "ProjectorDistance": "objectives", "ProjectorTask": "objectives",
    "MultiTaskBatcher": "objectives", "TaskSlot": "objectives", "prompt_step": "objectives",
    "multitask_step": "objectives",
    "TrainResult": "tuning", "train": "tuning", "evaluate": "tuning", "evaluate_items": "tuning",
    "build_slots": "multitask", "train_multitask": "multitask",
}

__all__ = ["DEFAULT_TOKEN_BUDGET", "Cancelled", "TrainConfig", "check_field", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
