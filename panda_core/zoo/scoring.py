"""Scoring a zoo prompt the way the rest of the tool does, so its recorded
numbers can be checked against a re-run:

- on its own task (`own_items`): with its readout and its readout
  parameters, as training scored its best-dev checkpoint;
- on another task (`zero_shot_items`): as it is, without its head, as the
  zero-shot transfer method scores it (`transfer.zero_shot`).

Both read the length and temperature the prompt was trained with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..stats.items import as_bool_array

if TYPE_CHECKING:
    from ..prompts import SoftPrompt


def trained_config(prompt: SoftPrompt) -> dict[str, Any]:
    """The training settings recorded in the prompt (its `extra.config`), or {}."""
    cfg = (prompt.extra or {}).get("config")
    return cfg if isinstance(cfg, dict) else {}


def own_items(backbone: Any, prompt: SoftPrompt, limit: int | None) -> np.ndarray:
    """(N,) bool: each of the first `limit` test items of the prompt's task right or wrong."""
    from ..prompts import readouts
    from ..training import evaluate_items

    cfg = trained_config(prompt)
    correct = evaluate_items(backbone, prompt.task, prompt.tensor, "test", head=prompt.head, limit=limit,
                             max_length=int(cfg.get("max_length", 128)),
                             temperature=float(cfg.get("temperature", 20.0)),
                             readout=readouts.recorded(prompt, backbone.kind))
    return as_bool_array(correct)


def zero_shot_items(backbone: Any, prompt: SoftPrompt, target: str, limit: int | None) -> np.ndarray:
    """(N,) bool: the prompt applied as it is to the first `limit` test items of `target`."""
    from ..training import evaluate_items

    cfg = trained_config(prompt)
    correct = evaluate_items(backbone, target, prompt.tensor, "test", head=None, limit=limit,
                             max_length=int(cfg.get("max_length", 128)),
                             temperature=float(cfg.get("temperature", 20.0)))
    return as_bool_array(correct)


def half(prompt: SoftPrompt) -> SoftPrompt:
    """A copy whose tensors went through fp16 and back: what an fp16 zoo file loads as."""
    from dataclasses import replace

    head = {k: v.detach().half().float() for k, v in prompt.head.items()} if prompt.head else None
    return replace(prompt, tensor=prompt.tensor.detach().half().float(), head=head)


def recheck(entry: dict[str, Any], zoo: Any = None, backbone: Any = None) -> dict[str, Any]:
    """Score a zoo prompt again on the test items its manifest entry recorded (the
    first `check.n`) and compare: "ok" when the accuracy now lies within the Wilson
    interval of the recorded accuracy on those same items. Also returns how many
    items changed their verdict."""
    from ..backbones import get_backbone
    from ..prompts.formats import read_prompt_file
    from ..stats import decode_items, wilson_interval
    from .files import entry_file

    check = entry["check"]
    prompt = read_prompt_file(entry_file(entry, zoo))
    bb = backbone if backbone is not None else get_backbone(entry["backbone"])
    now = own_items(bb, prompt, int(check["n"]))
    recorded = decode_items(check["items"])
    low, high = wilson_interval(int(check["correct"]), int(check["n"]))
    acc = float(now.mean()) if len(now) else 0.0
    return {"id": entry["id"], "n": len(now), "recorded_acc": check["acc"], "acc": round(acc, 4),
            "interval": [round(low, 4), round(high, 4)], "changed_items": int((now != recorded).sum()),
            "ok": len(now) == len(recorded) and low - 1e-9 <= acc <= high + 1e-9}
