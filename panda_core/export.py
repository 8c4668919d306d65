"""Prompts in and out of the cache: our safetensors format, and PEFT's
prompt-tuning adapter (`adapter_config.json` + `adapter_model.safetensors`
with a `prompt_embeddings` tensor), so a prompt trained here loads with
`PeftModel.from_pretrained` and one trained with PEFT can be imported."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from . import atomic, store
from .errors import PandaError
from .prompts import SoftPrompt, check_tensor

MAX_IMPORT_BYTES = store.MAX_PROMPT_BYTES
MAX_CONFIG_BYTES = 1024 * 1024


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


def write_peft_adapter(prompt: SoftPrompt, folder: Path) -> list[str]:
    """PEFT prompt-tuning adapter for the prompt's backbone."""
    import tempfile

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
    with tempfile.TemporaryDirectory(dir=folder, prefix=".peft-") as tmp:
        cfg.save_pretrained(tmp)
        config_bytes = (Path(tmp) / "adapter_config.json").read_bytes()
    weights = save({"prompt_embeddings": prompt.tensor.float().contiguous()},
                   metadata={"panda_meta": json.dumps(prompt.metadata(), default=str)})
    atomic.write_bytes(folder / "adapter_model.safetensors", weights)
    atomic.write_bytes(folder / "adapter_config.json", config_bytes)
    return [str(folder / "adapter_config.json"), str(folder / "adapter_model.safetensors")]


def _base_path(bb) -> str:
    return str(getattr(bb.model.config, "_name_or_path", "") or bb.name)


def import_prompt(path: str | Path, backbone: str | None = None, task: str | None = None,
                  length: int | None = None) -> dict:
    """Bring a prompt file (ours) or a PEFT adapter folder into the store,
    refusing anything that does not fit the named backbone (or `length`).

    Nothing is written unless every check passes; every refusal is a one-line
    PandaError. The backbone named inside a file is only used when it is a
    registry name: a file cannot make us load a local folder or a hub model."""
    from .backbones import REGISTRY, TINY_MLM, get_backbone

    path = Path(path)
    if not path.exists():
        raise PandaError(f"file not found: {path}; give a .safetensors prompt or a PEFT adapter folder")
    if path.is_dir():
        prompt = _read_peft(path)
    else:
        prompt = store.read_prompt_file(path)
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
                         f"({', '.join(REGISTRY)}); pass --backbone explicitly to use it")
    from .tasks import get_task

    get_task(prompt.task)
    bb = get_backbone(wanted)
    prompt.check_compatible(bb.name, bb.hidden_size, length)
    max_tokens = _max_prompt_tokens(bb)
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


def _max_prompt_tokens(bb) -> int:
    """Prompt tokens the backbone can take and still see some text."""
    positions = getattr(bb.model.config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return 1024
    return max(1, positions - 16)


def _read_peft(folder: Path) -> SoftPrompt:
    cfg_path, weights = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        names = sorted(p.name for p in folder.iterdir())[:5] if folder.is_dir() else []
        if "adapter_model.bin" in names:
            raise PandaError(f"{folder.name}: adapter_model.bin is a pickle and is never loaded; save the adapter "
                             "with safe_serialization=True (adapter_model.safetensors)")
        raise PandaError(f"{folder.name}: a PEFT adapter folder needs adapter_config.json and adapter_model.safetensors")
    if cfg_path.stat().st_size > MAX_CONFIG_BYTES:
        raise PandaError(f"{folder.name}: adapter_config.json is over 1 MB; that is not a PEFT config")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, OSError, RecursionError) as err:
        raise PandaError(f"{folder.name}: adapter_config.json is not valid JSON ({str(err)[:80]}); "
                         "export the adapter again") from None
    if not isinstance(cfg, dict):
        raise PandaError(f"{folder.name}: adapter_config.json is not a JSON object; export the adapter again")
    if cfg.get("peft_type") != "PROMPT_TUNING":
        raise PandaError(f"{folder.name}: adapter type {str(cfg.get('peft_type'))[:40]} is not PROMPT_TUNING; "
                         "only prompt-tuning adapters can be imported")
    header, _ = store.inspect_safetensors(weights, MAX_IMPORT_BYTES)
    key = next((k for k in header if k.endswith("prompt_embeddings")), None)
    if key is None:
        raise PandaError(f"{folder.name}: no prompt_embeddings tensor in the adapter")
    if header[key]["dtype"] not in store.FLOAT_DTYPES:
        raise PandaError(f"{folder.name}: prompt_embeddings has dtype {header[key]['dtype']}; save it as float32")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as err:
        raise PandaError(f"{folder.name}: unreadable adapter ({str(err).splitlines()[0][:100]})") from None
    tensor = tensors[key].float()
    check_tensor(tensor, where=folder.name)
    base = cfg.get("base_model_name_or_path")
    return SoftPrompt(tensor=tensor, backbone="unknown", task="unknown", method="imported",
                      extra={"peft_base": str(base)[:200] if base is not None else None})


def peft_prompt_embeddings(folder: Path) -> torch.Tensor:
    """The prompt tensor PEFT itself would load from an adapter folder (tests use this)."""
    return _read_peft(Path(folder)).tensor
