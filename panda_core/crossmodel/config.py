"""A projector's settings, checked before any model loads (no torch here):
the method names, its `TrainConfig`, and the PT prompts it reads."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from .. import store
from ..errors import PandaError
from ..training.config import TrainConfig, check_field

if TYPE_CHECKING:
    import torch

DEFAULT_LR = 5e-3
DEV_LIMIT = 200  # dev examples per evaluation: the target backbone may be large
HIDDEN = 768


class ProjectorMethod(str, enum.Enum):
    """How a projector is trained (see `training.objectives`)."""

    DISTANCE = "distance"
    TASK = "task"


def projector_method(method: str) -> str:
    """A known projector method's name, or a one-line refusal."""
    try:
        return ProjectorMethod(getattr(method, "value", method)).value
    except ValueError:
        raise PandaError(f"unknown projector method {method!r}; choose from "
                         f"{', '.join(m.value for m in ProjectorMethod)}") from None


def projector_config(steps: int = 200, lr: float = DEFAULT_LR, prompt_length: int = 20, batch_size: int = 16,
                     seed: int = 0, **overrides) -> TrainConfig:
    """A projector's training settings, validated: AdamW's usual weight
    decay (0.01), warm-up over the first 6% of the steps (`warmup`), and a
    dev evaluation every quarter of the run on up to `DEV_LIMIT` examples."""
    check_field("steps", steps)
    base = dict(steps=steps, lr=lr, prompt_length=prompt_length, batch_size=batch_size, seed=seed,
                weight_decay=0.01, eval_every=max(1, steps // 4), dev_limit=DEV_LIMIT)
    return TrainConfig(**(base | overrides))


def pt_prompt(task: str, backbone: str, length: int) -> torch.Tensor:
    """The task's newest PT prompt on `backbone` (what a projector maps or aims at)."""
    pid = store.latest_prompt_id(task, backbone, "pt", length)
    if pid is None:
        raise PandaError(f"the projector needs a {length}-token PT prompt of '{task}' on '{backbone}'; train it: "
                         f"python -m panda_core train --task {task} --backbone {backbone} --prompt-len {length}")
    return store.load_prompt(pid).tensor
