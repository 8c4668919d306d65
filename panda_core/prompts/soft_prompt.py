"""SoftPrompt: the trained artifact (an n x d tensor) and everything needed to
trust it later: which backbone, hidden size, task, method, seed, scores.

How a backbone is *driven* by a prompt lives in `prompts.scorer`; how prompt
files are checked and read lives in `prompts.formats`; where they are kept
lives in the store.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import PandaError

if TYPE_CHECKING:
    import torch


@dataclass
class SoftPrompt:
    """A soft prompt and its provenance.

    Args:
        tensor: float32 tensor of shape (n_tokens, hidden_size).
        backbone: registry name (or path) of the backbone it was trained on.
        task: the task it was trained for.
        method: "pt", "pot", "panda", "projected", "imported", ...
        head: optional per-task linear head {"weight": (C, d), "bias": (C,)}.
    """

    tensor: torch.Tensor
    backbone: str
    task: str
    method: str = "pt"
    seed: int = 0
    steps: int = 0
    source_prompt: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    code_version: str = __version__
    head: dict[str, torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    prompt_id: str | None = None

    @property
    def length(self) -> int:
        return int(self.tensor.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.tensor.shape[1])

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description (no tensors)."""
        meta = asdict(self) | {"length": self.length, "hidden_size": self.hidden_size}
        for key in ("tensor", "head"):
            meta.pop(key, None)
        meta["has_head"] = self.head is not None
        return meta

    def check_compatible(self, backbone_name: str, hidden_size: int, length: int | None = None) -> None:
        """Refuse a prompt trained elsewhere, with a message that says what to do."""
        check_tensor(self.tensor, where=self.prompt_id or self.task)
        if self.hidden_size != hidden_size:
            raise PandaError(
                f"prompt {self.prompt_id or ''} has hidden size {self.hidden_size} (backbone "
                f"'{self.backbone}') but '{backbone_name}' needs {hidden_size}; use a prompt trained on "
                f"'{backbone_name}' or project it with `python -m panda_core project`"
            )
        if self.backbone != backbone_name:
            raise PandaError(
                f"prompt {self.prompt_id or ''} was trained on backbone '{self.backbone}', not "
                f"'{backbone_name}'; a prompt only drives the backbone it was trained on (project it instead)"
            )
        if length is not None and self.length != length:
            raise PandaError(
                f"prompt {self.prompt_id or ''} has {self.length} tokens, expected {length}; "
                "compare or transfer prompts of the same length"
            )


def check_tensor(tensor: torch.Tensor, where: str = "prompt") -> None:
    """A prompt tensor must be a finite 2-D float tensor."""
    import torch

    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise PandaError(f"{where}: a prompt must be a 2-D tensor (tokens x hidden), got shape {shape}")
    if not tensor.is_floating_point():
        raise PandaError(f"{where}: prompt dtype {tensor.dtype} is not a float type; save it as float32")
    if tensor.shape[0] < 1 or tensor.shape[1] < 1:
        raise PandaError(f"{where}: empty prompt of shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise PandaError(f"{where}: prompt contains NaN or Inf values; retrain or re-export it")
