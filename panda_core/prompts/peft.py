"""PEFT's prompt-tuning adapter format (`adapter_config.json` +
`adapter_model.safetensors` with a `prompt_embeddings` tensor), so a prompt
trained here loads with `PeftModel.from_pretrained` and one trained with PEFT
can be imported. The config names the backbone's hub id, never a folder on
this machine; our readout, task, labels and head travel in the sidecar files
of `peft_meta`, which reading applies. Reading checks everything first (see
`formats`); writing is atomic per file. The store is not touched here:
`ops.prompt_files` orchestrates that."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PandaError
from .formats import FLOAT_DTYPES, MAX_PROMPT_BYTES, inspect_safetensors
from .soft_prompt import SoftPrompt, check_tensor

if TYPE_CHECKING:
    import torch

MAX_IMPORT_BYTES = MAX_PROMPT_BYTES
MAX_CONFIG_BYTES = 1024 * 1024


def write_peft_adapter(prompt: SoftPrompt, folder: Path, backbone: Any | None = None) -> list[str]:
    """PEFT prompt-tuning adapter for the prompt's backbone (loaded unless
    given); returns the two file paths. Its base model is the backbone's hub id."""
    import tempfile

    from peft import PromptTuningConfig
    from safetensors.torch import save

    from .. import atomic
    from ..backbones import get_backbone
    from .peft_meta import hub_id

    bb = backbone if backbone is not None else get_backbone(prompt.backbone)
    cfg = PromptTuningConfig(
        task_type=bb.kind_impl.peft_task_type, num_virtual_tokens=prompt.length, token_dim=prompt.hidden_size,
        num_transformer_submodules=1, num_attention_heads=getattr(bb.model.config, "num_attention_heads", None),
        num_layers=bb.num_layers, base_model_name_or_path=hub_id(bb),
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


def read_peft_adapter(folder: Path) -> SoftPrompt:
    """The prompt of a PEFT prompt-tuning adapter folder, checked. With our
    sidecar (`peft_meta`) it comes back as exported: backbone, task, readout,
    head; without one, the backbone is the registry backbone whose hub id the
    config names, else "unknown", and the task "unknown" (the caller names
    them). Never loads adapter_model.bin."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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
    header, _ = inspect_safetensors(weights, MAX_IMPORT_BYTES)
    key = next((k for k in header if k.endswith("prompt_embeddings")), None)
    if key is None:
        raise PandaError(f"{folder.name}: no prompt_embeddings tensor in the adapter")
    if header[key]["dtype"] not in FLOAT_DTYPES:
        raise PandaError(f"{folder.name}: prompt_embeddings has dtype {header[key]['dtype']}; save it as float32")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as err:
        raise PandaError(f"{folder.name}: unreadable adapter ({str(err).splitlines()[0][:100]})") from None
    tensor = tensors[key].float()
    check_tensor(tensor, where=folder.name)
    base = cfg.get("base_model_name_or_path")
    from .peft_meta import apply_sidecar, backbone_for_hub_id, read_sidecar

    prompt = SoftPrompt(tensor=tensor, backbone=backbone_for_hub_id(base) or "unknown", task="unknown",
                        method="imported", extra={"peft_base": str(base)[:200] if base is not None else None})
    return apply_sidecar(prompt, read_sidecar(folder, tensor, folder.name))


def peft_prompt_embeddings(folder: Path) -> torch.Tensor:
    """The prompt tensor PEFT itself would load from an adapter folder (tests use this)."""
    return read_peft_adapter(Path(folder)).tensor
