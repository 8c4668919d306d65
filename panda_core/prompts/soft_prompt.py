"""SoftPrompt: the trained artifact (an n x d input-level prompt or an
(L, 2, n, w) deep prompt, `prompts.types`) and everything needed to trust it
later: which backbone, prompt type, hidden size, task, method, seed, scores.

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
        tensor: float32 tensor of its prompt type's shape: (n_tokens, hidden_size)
            for an input-level prompt, (layers, 2, n_tokens, kv_width) for a deep one.
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
    def prompt_type(self) -> str:
        """The `PROMPT_TYPES` name the tensor's rank says (files from before deep prompts: input)."""
        from .types import prompt_type_of

        return prompt_type_of(self.tensor).name

    @property
    def length(self) -> int:
        """Its (virtual) tokens: the second-to-last axis for every type."""
        return int(self.tensor.shape[-2])

    @property
    def hidden_size(self) -> int:
        """The width of one row: d for an input prompt, the key/value width w for a deep one."""
        return int(self.tensor.shape[-1])

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description (no tensors)."""
        meta = asdict(self) | {"length": self.length, "hidden_size": self.hidden_size,
                               "prompt_type": self.prompt_type}
        for key in ("tensor", "head"):
            meta.pop(key, None)
        meta["has_head"] = self.head is not None
        return meta

    def check_compatible(self, backbone_name: str, hidden_size: int, length: int | None = None) -> None:
        """Refuse a prompt trained elsewhere, with a message that says what to do."""
        check_tensor(self.tensor, where=self.prompt_id or self.task)
        if self.prompt_type == "input" and self.hidden_size != hidden_size:
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


def check_tensor(tensor: torch.Tensor, where: str = "prompt", prompt_type: str | None = None) -> None:
    """A prompt tensor must be a finite float tensor of a `PROMPT_TYPES` rank
    ((n, d) input, (L, 2, n, w) deep); `prompt_type` also requires that type."""
    import torch

    from .types import PROMPT_TYPES

    ranks = {t.ndim: t.name for t in PROMPT_TYPES}
    if not isinstance(tensor, torch.Tensor) or tensor.dim() not in ranks:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise PandaError(f"{where}: a prompt must be (tokens x hidden) for an input prompt or (layers, 2, tokens, "
                         f"width) for a deep prompt, got shape {shape}")
    if prompt_type is not None and ranks[tensor.dim()] != PROMPT_TYPES.get(prompt_type).name:
        raise PandaError(f"{where}: expected a {prompt_type} prompt, got a {ranks[tensor.dim()]} prompt of shape "
                         f"{tuple(tensor.shape)}")
    if tensor.dim() == 4 and tensor.shape[1] != 2:
        raise PandaError(f"{where}: a deep prompt is (layers, 2, tokens, width) (keys and values), got shape "
                         f"{tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise PandaError(f"{where}: prompt dtype {tensor.dtype} is not a float type; save it as float32")
    if min(tensor.shape) < 1:
        raise PandaError(f"{where}: empty prompt of shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise PandaError(f"{where}: prompt contains NaN or Inf values; retrain or re-export it")
