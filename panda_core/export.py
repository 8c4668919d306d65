"""Prompts in and out of the cache: our safetensors format, and PEFT's
prompt-tuning adapter (`adapter_config.json` + `adapter_model.safetensors`
with a `prompt_embeddings` tensor), so a prompt trained here loads with
`PeftModel.from_pretrained` and one trained with PEFT can be imported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import store
from .errors import PandaError
from .prompts import SoftPrompt, check_tensor

MAX_IMPORT_BYTES = 64 * 1024 * 1024


def export_prompt(prompt_id: str, fmt: str = "safetensors", out_dir: str | Path = ".") -> dict:
    """Write a stored prompt to `out_dir`; returns {"prompt_id", "format", "files"}."""
    prompt = store.load_prompt(prompt_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        dest = out / f"{prompt_id}.safetensors"
        shutil.copyfile(store.prompt_path(prompt_id), dest)
        return {"prompt_id": prompt_id, "format": fmt, "files": [str(dest)]}
    if fmt != "peft":
        raise PandaError(f"unknown export format '{fmt}'; use safetensors or peft")
    return {"prompt_id": prompt_id, "format": fmt, "files": write_peft_adapter(prompt, out / prompt_id)}


def write_peft_adapter(prompt: SoftPrompt, folder: Path) -> list[str]:
    """PEFT prompt-tuning adapter for the prompt's backbone."""
    from peft import PromptTuningConfig

    from .backbones import get_backbone

    bb = get_backbone(prompt.backbone)
    task_type = "CAUSAL_LM" if bb.kind == "causal" else "FEATURE_EXTRACTION"
    cfg = PromptTuningConfig(
        task_type=task_type, num_virtual_tokens=prompt.length, token_dim=prompt.hidden_size,
        num_transformer_submodules=1, num_attention_heads=getattr(bb.model.config, "num_attention_heads", None),
        num_layers=bb.num_layers, base_model_name_or_path=_base_path(bb),
    )
    folder.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(str(folder))
    save_file({"prompt_embeddings": prompt.tensor.float().contiguous()}, str(folder / "adapter_model.safetensors"),
              metadata={"panda_meta": json.dumps(prompt.metadata(), default=str)})
    return [str(folder / "adapter_config.json"), str(folder / "adapter_model.safetensors")]


def _base_path(bb) -> str:
    return str(getattr(bb.model.config, "_name_or_path", "") or bb.name)


def import_prompt(path: str | Path, backbone: str | None = None, task: str | None = None) -> dict:
    """Bring a prompt file (ours) or a PEFT adapter folder into the store,
    refusing anything that does not fit the named backbone."""
    from .backbones import get_backbone

    path = Path(path)
    if path.is_dir():
        prompt = _read_peft(path)
    else:
        if not path.exists():
            raise PandaError(f"file not found: {path}")
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise PandaError(f"{path.name} is larger than {MAX_IMPORT_BYTES >> 20} MB; a prompt file is far smaller")
        prompt = store.read_prompt_file(path)
    if backbone:
        prompt.backbone = prompt.backbone if prompt.backbone not in ("unknown", "") else backbone
    if task:
        prompt.task = task
    if prompt.backbone in ("unknown", ""):
        raise PandaError(f"{path.name} does not say which backbone it belongs to; pass --backbone")
    if prompt.task in ("unknown", ""):
        raise PandaError(f"{path.name} does not say which task it was trained on; pass --task")
    from .tasks import get_task

    get_task(prompt.task)
    bb = get_backbone(backbone or prompt.backbone)
    prompt.check_compatible(bb.name, bb.hidden_size)
    prompt.extra = dict(prompt.extra or {}) | {"imported_from": path.name, "original_method": prompt.method}
    prompt.method = prompt.method if prompt.method in ("pt", "pot", "panda") else "imported"
    prompt.prompt_id = None
    pid = store.save_prompt(prompt)
    return {"prompt_id": pid, "task": prompt.task, "backbone": prompt.backbone, "length": prompt.length,
            "hidden_size": prompt.hidden_size, "method": prompt.method}


def _read_peft(folder: Path) -> SoftPrompt:
    cfg_path, weights = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not cfg_path.exists() or not weights.exists():
        raise PandaError(f"{folder.name}: a PEFT adapter folder needs adapter_config.json and adapter_model.safetensors")
    try:
        cfg = json.loads(cfg_path.read_text())
        tensors = load_file(str(weights))
    except (json.JSONDecodeError, SafetensorError, OSError) as err:
        raise PandaError(f"{folder.name}: unreadable adapter ({str(err)[:100]})") from None
    if cfg.get("peft_type") != "PROMPT_TUNING":
        raise PandaError(f"{folder.name}: adapter type {cfg.get('peft_type')} is not PROMPT_TUNING")
    key = next((k for k in tensors if k.endswith("prompt_embeddings")), None)
    if key is None:
        raise PandaError(f"{folder.name}: no prompt_embeddings tensor in the adapter")
    tensor = tensors[key].float()
    check_tensor(tensor, where=folder.name)
    return SoftPrompt(tensor=tensor, backbone="unknown", task="unknown", method="imported",
                      extra={"peft_base": cfg.get("base_model_name_or_path")})


def peft_prompt_embeddings(folder: Path) -> torch.Tensor:
    """The prompt tensor PEFT itself would load from an adapter folder (tests use this)."""
    return _read_peft(Path(folder)).tensor
