"""Mid-run checkpoints of the training loop, so an interrupted run (killed,
cancelled, machine rebooted) resumes where it stopped instead of starting
again. A checkpoint is written at every dev evaluation and removed when the
run finishes; running the same work again (same task, backbone, config,
initial prompt and teacher) picks it up and gives the same result as an
uninterrupted run.

Format: one safetensors file of tensors plus one JSON file of everything
else, both written atomically and tied together by the step they hold;
nothing is ever unpickled. A damaged or mismatched checkpoint is ignored
(the run starts from scratch), never an error.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .. import atomic, paths

VERSION = 1
STATE_KEYS = {"step", "offset", "best_dev", "best_step", "bad_evals", "curve", "optimizer", "scheduler", "elapsed"}
TENSOR_KEYS = {"prompt", "best.prompt", "gen.epoch"}


def run_digest(task: str, backbone: str, config: dict, init: torch.Tensor,
               teacher: torch.Tensor | None = None) -> str:
    """What makes two runs the same work: their checkpoint name."""
    h = hashlib.sha256(json.dumps({"task": task, "backbone": backbone, "config": config, "v": VERSION},
                                  sort_keys=True, default=str).encode())
    for t in (init, teacher):
        h.update(b"|" if t is None else t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _files(digest: str) -> tuple[Path, Path]:
    folder = paths.sub("checkpoints")
    return folder / f"{digest}.safetensors", folder / f"{digest}.json"


def save_checkpoint(digest: str, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Write tensors and JSON state for `digest` (state must hold "step")."""
    tensor_path, json_path = _files(digest)
    blob = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic.write_bytes(tensor_path, save(blob, metadata={"step": str(state["step"])}))
    atomic.write_text(json_path, json.dumps(state | {"version": VERSION}, default=str))


def load_checkpoint(digest: str, state_keys: set[str] = STATE_KEYS, tensor_keys: set[str] = TENSOR_KEYS,
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The checkpoint of `digest`, or None when there is none or it cannot be
    trusted (it must hold at least `state_keys` and `tensor_keys`)."""
    tensor_path, json_path = _files(digest)
    if not (tensor_path.is_file() and json_path.is_file()):
        return None
    try:
        state = json.loads(json_path.read_text())
        tensors = load_file(str(tensor_path))
    except (OSError, ValueError, RuntimeError, SafetensorError):
        return None
    if (not isinstance(state, dict) or state.get("version") != VERSION or not state_keys <= set(state)
            or not tensor_keys <= set(tensors)):
        return None
    try:
        with safe_open(str(tensor_path), "pt") as f:
            if (f.metadata() or {}).get("step") != str(state["step"]):
                return None  # the two files come from different moments
    except (OSError, ValueError, RuntimeError, SafetensorError):
        return None
    return tensors, state


def remove_checkpoint(digest: str) -> None:
    """Delete both files of `digest` (a finished run needs them no more)."""
    for path in _files(digest):
        path.unlink(missing_ok=True)


# ------------------------------------------------------------ optimiser state
def optimizer_to_parts(optim: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state_dict into named tensors and JSON."""
    sd = optim.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_parts(optim: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], parts: dict) -> None:
    """Load what `optimizer_to_parts` split back into `optim`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for key, value in parts["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optim.load_state_dict({"state": state, "param_groups": parts["param_groups"]})
