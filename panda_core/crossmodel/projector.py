"""Cross-model prompt transfer through a trained projector (METHODS.md 5):
the model and its files.

    flatten -> Linear(n*d_s, h) -> Tanh -> Linear(h, n*d_t) -> reshape -> LayerNorm(d_t)

Two ways to train it (Su et al.), both run by the one `training.Trainer`
(see `crossmodel.training`):
- distance: minimise ||Proj(P_s) - P_t|| to a prompt P_t trained on the target
  backbone for the same task;
- task: drive the frozen target backbone with Proj(P_s) and train the
  projector with the task loss (transfers better zero-shot).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from .. import atomic, paths, store
from ..errors import PandaError
from .config import ProjectorMethod, projector_method

__all__ = ["ProjectorMethod", "PromptProjector", "load_projector", "projector_method", "projector_path",
           "save_projector"]


class PromptProjector(torch.nn.Module):
    """Maps an (n, d_s) prompt of backbone A to an (n, d_t) prompt of backbone B.

    Example:
        >>> proj = PromptProjector(20, 384, 768)
        >>> proj(torch.randn(20, 384)).shape
        torch.Size([20, 768])
    """

    def __init__(self, length: int, d_source: int, d_target: int, hidden: int = 768) -> None:
        super().__init__()
        self.length, self.d_source, self.d_target, self.hidden = length, d_source, d_target, hidden
        self.net = torch.nn.Sequential(
            torch.nn.Linear(length * d_source, hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, length * d_target),
        )
        self.norm = torch.nn.LayerNorm(d_target)

    def forward(self, prompt: torch.Tensor) -> torch.Tensor:
        if prompt.dim() >= 4:
            raise PandaError(f"this projector maps input-level prompts ({self.length} x {self.d_source}); a deep "
                             f"prompt {tuple(prompt.shape)} holds one backbone's per-layer keys and values and "
                             "cannot be projected to another backbone")
        if prompt.shape[-2:] != (self.length, self.d_source):
            raise PandaError(
                f"projector expects prompts of shape ({self.length}, {self.d_source}), got {tuple(prompt.shape)}"
            )
        flat = prompt.reshape(*prompt.shape[:-2], self.length * self.d_source)
        out = self.net(flat).reshape(*prompt.shape[:-2], self.length, self.d_target)
        return self.norm(out)

    def config(self) -> dict:
        return {"length": self.length, "d_source": self.d_source, "d_target": self.d_target, "hidden": self.hidden}


def projector_path(projector_id: str) -> Path:
    """Where a projector's weights live (next to the prompts folder)."""
    return store.prompt_path(projector_id).parent.parent / "projectors" / f"{projector_id}.safetensors"


def save_projector(proj: PromptProjector, meta: dict) -> str:
    """Write weights (safetensors, config in its header) and a JSON sidecar
    with the checksum; returns the projector's id."""
    pid = f"proj-{meta['source_backbone']}-{meta['target_backbone']}-{meta['method']}-{uuid.uuid4().hex[:6]}"
    path = paths.sub("projectors") / f"{pid}.safetensors"
    tensors = {k: v.detach().cpu().contiguous() for k, v in proj.state_dict().items()}
    header = {"panda_projector": json.dumps(meta | proj.config(), default=str)}
    atomic.write_bytes(path, save(tensors, metadata=header))
    atomic.write_json(path.with_suffix(".json"), meta | proj.config() | {"sha256": store.sha256_file(path)})
    return pid


def load_projector(projector_id: str) -> tuple[PromptProjector, dict]:
    """A saved projector and its metadata (its checksum verified first)."""
    path = paths.sub("projectors") / f"{projector_id}.safetensors"
    side = path.with_suffix(".json")
    if not path.exists() or not side.exists():
        raise PandaError(f"unknown projector '{projector_id}'")
    meta = json.loads(side.read_text())
    if store.sha256_file(path) != meta.get("sha256"):
        raise PandaError(f"projector '{projector_id}' failed its checksum; retrain it")
    proj = PromptProjector(meta["length"], meta["d_source"], meta["d_target"], meta["hidden"])
    proj.load_state_dict(load_file(str(path)))
    return proj, meta
