"""Prompts in and out of the cache: our safetensors format, and PEFT's
adapters: PROMPT_TUNING for input-level prompts, PREFIX_TUNING for deep
prompts (the formats and their checks live in `prompts.formats`,
`prompts.peft` and `prompts.peft_prefix`; this module only moves files
between them and the store). An ops-level module: it reads and writes the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import atomic, store
from ..errors import PandaError
from ..prompts.formats import read_prompt_file
from ..prompts.peft import (  # noqa: F401 (re-exported: tests and callers use export.*)
    MAX_CONFIG_BYTES,
    MAX_IMPORT_BYTES,
    peft_prompt_embeddings,
    read_peft_adapter,
    write_peft_adapter,
)
from ..prompts.types import PROMPT_TYPES, PromptGeometry


def export_prompt(prompt_id: str, fmt: str = "safetensors", out_dir: str | Path = ".") -> dict:
    """Write a stored prompt to `out_dir`; returns {"prompt_id", "format", "files"}.
    Files appear complete or not at all (temporary file + rename)."""
    if fmt not in ("safetensors", "peft"):
        raise PandaError(f"unknown export format '{fmt}'; use safetensors or peft")
    prompt = store.load_prompt(prompt_id)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PandaError(f"--out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        dest = out / f"{prompt_id}.safetensors"
        atomic.copy_file(store.prompt_path(prompt_id), dest)
        return {"prompt_id": prompt_id, "format": fmt, "files": [str(dest)]}
    if prompt.prompt_type == "deep":
        from ..backbones import get_backbone
        from ..prompts.peft_prefix import write_prefix_adapter

        meta = {"task": prompt.task, "method": prompt.method, "seed": prompt.seed, "prompt_id": prompt_id}
        files = write_prefix_adapter(prompt.tensor, get_backbone(prompt.backbone), out / prompt_id, meta)
        return {"prompt_id": prompt_id, "format": fmt, "peft_type": "PREFIX_TUNING", "files": files}
    return {"prompt_id": prompt_id, "format": fmt, "files": write_peft_adapter(prompt, out / prompt_id)}


def _adapter_type(folder: Path) -> Any:
    """The ``peft_type`` an adapter folder's config names (None when unreadable:
    the prompt-tuning reader then refuses it with its own line)."""
    cfg = folder / "adapter_config.json"
    try:
        if cfg.stat().st_size > MAX_CONFIG_BYTES:
            return None
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data.get("peft_type") if isinstance(data, dict) else None


def _read_prefix(folder: Path, backbone: str | None):
    """A PEFT PREFIX_TUNING adapter as a deep `SoftPrompt` (its task and backbone
    from our export's metadata, when it has any), checked against the backbone."""
    from ..backbones import get_backbone
    from ..prompts import SoftPrompt
    from ..prompts.peft_prefix import read_prefix_adapter

    tensor, info = read_prefix_adapter(folder)
    meta = info.get("panda_meta") or {}
    name = backbone or info.get("backbone")
    if name:
        tensor, info = read_prefix_adapter(folder, get_backbone(name))  # refuses another geometry or backbone
    task = meta.get("task") if isinstance(meta.get("task"), str) else "unknown"
    seed = meta.get("seed") if isinstance(meta.get("seed"), int) and not isinstance(meta.get("seed"), bool) else 0
    return SoftPrompt(tensor=tensor, backbone=str(name or "unknown"), task=task, method="imported", seed=seed,
                      extra={"peft_base": info.get("peft_base"), "peft_type": "PREFIX_TUNING"})


def import_prompt(path: str | Path, backbone: str | None = None, task: str | None = None,
                  length: int | None = None) -> dict:
    """Bring a prompt file (ours) or a PEFT adapter folder into the store,
    refusing anything that does not fit the named backbone (or `length`).

    Nothing is written unless every check passes; every refusal is a one-line
    PandaError. The backbone named inside a file is only used when it is a
    registry name: a file cannot make us load a local folder or a hub model."""
    from ..backbones import REGISTRY, TINY_MLM, get_backbone

    path = Path(path)
    if not path.exists():
        raise PandaError(f"file not found: {path}; give a .safetensors prompt or a PEFT adapter folder")
    if path.is_dir() and _adapter_type(path) == "PREFIX_TUNING":
        prompt = _read_prefix(path, backbone)
    elif path.is_dir():
        prompt = read_peft_adapter(path)
    else:
        prompt = read_prompt_file(path)
    if backbone:
        prompt.backbone = prompt.backbone if prompt.backbone not in ("unknown", "") else backbone
    if task:
        prompt.task = task
    if prompt.backbone in ("unknown", ""):
        raise PandaError(f"{path.name} does not say which backbone it belongs to; pass --backbone")
    if prompt.task in ("unknown", ""):
        raise PandaError(f"{path.name} does not say which task it was trained on; pass --task")
    wanted = backbone or prompt.backbone
    if not backbone and wanted.lower() not in REGISTRY and wanted.lower() != TINY_MLM:
        raise PandaError(f"{path.name} names backbone '{wanted[:60]}', which is not a registry backbone "
                         f"({', '.join(REGISTRY.names())}); pass --backbone explicitly to use it")
    from ..data import get_task

    get_task(prompt.task)
    bb = get_backbone(wanted)
    prompt.check_compatible(bb.name, bb.hidden_size, length)
    PROMPT_TYPES.get(prompt.prompt_type).check(prompt.tensor, PromptGeometry.of(bb), where=path.name)
    max_tokens = bb.max_prompt_tokens
    if prompt.length > max_tokens:
        raise PandaError(f"{path.name} has {prompt.length} prompt tokens but '{bb.name}' takes at most "
                         f"{max_tokens}; use a shorter prompt")
    if prompt.head is not None:
        n_labels = len(get_task(prompt.task).labels)
        if prompt.head["weight"].shape[0] != n_labels:
            raise PandaError(f"{path.name} has a head for {prompt.head['weight'].shape[0]} classes but task "
                             f"'{prompt.task}' has {n_labels}; pass the task it was trained on (--task)")
    prompt.extra = dict(prompt.extra or {}) | {"imported_from": store.safe_filename(path.name),
                                               "original_method": prompt.method}
    prompt.method = prompt.method if prompt.method in ("pt", "pot", "panda") else "imported"
    prompt.prompt_id = None
    pid = store.save_prompt(prompt)
    return {"prompt_id": pid, "task": prompt.task, "backbone": prompt.backbone, "length": prompt.length,
            "hidden_size": prompt.hidden_size, "prompt_type": prompt.prompt_type, "method": prompt.method}
