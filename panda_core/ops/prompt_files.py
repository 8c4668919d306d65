"""Prompts in and out of the cache: our safetensors format, and PEFT's
prompt-tuning adapter (the formats and their checks live in
`prompts.formats` and `prompts.peft`; this module only moves files between
them and the store). An ops-level module: it reads and writes the store."""

from __future__ import annotations

from pathlib import Path

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
    return {"prompt_id": prompt_id, "format": fmt, "files": write_peft_adapter(prompt, out / prompt_id)}


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
    if path.is_dir():
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
            "hidden_size": prompt.hidden_size, "method": prompt.method}
