"""Deep prompts as PEFT ``PREFIX_TUNING`` adapters (adapter_config.json +
adapter_model.safetensors), so a deep prompt trained here loads with
``PeftModel.from_pretrained(base, folder)`` and one trained with PEFT can be
imported. The config names the backbone's hub id; our readout, task, labels
and head travel in `peft_meta`'s sidecar files.

PEFT's layout (peft 0.21 ``PeftModel.get_prompt``): ``prompt_embeddings`` is
(num_virtual_tokens, num_layers * 2 * token_dim), viewed as (n, 2L, heads,
token_dim / heads) and split per layer into (key, value); ``token_dim`` and
``num_attention_heads`` are the *key/value* width and heads (PEFT sizes them
from ``num_key_value_heads`` for grouped-query models: 192 and 3 on SmolLM2).
That is our (L, 2, n, w) tensor with the token axis first:
``deep.permute(2, 0, 1, 3).reshape(n, -1)`` (= `DeepPrompt.rows`).

PEFT drives BERT and Llama through ``past_key_values`` exactly as
`prompts.deep` does, so outputs match. It cannot drive MPNet: PEFT passes
``past_key_values`` to ``MPNetModel.forward``, which swallows it in
``**kwargs`` (the prefix is silently ignored; with padding the lengthened mask
no longer fits the scores). Export to MPNet is therefore refused in one line.

Everything is checked at the boundary (one-line PandaError) before anything
is written or loaded; adapter_model.bin (a pickle) is never read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PandaError
from .formats import FLOAT_DTYPES, MAX_PROMPT_BYTES, inspect_safetensors
from .types import PROMPT_TYPES, PromptGeometry

if TYPE_CHECKING:
    import torch

#: architectures (config.model_type) whose PEFT prefix tuning is inert
PEFT_INERT = {"mpnet": "MPNetModel ignores past_key_values, so PEFT would silently drop the prefix"}
_INTS = ("num_virtual_tokens", "num_layers", "token_dim", "num_attention_heads")


def to_peft_embeddings(deep: torch.Tensor) -> torch.Tensor:
    """(L, 2, n, w) -> PEFT's ``prompt_embeddings`` (n, L * 2 * w)."""
    return PROMPT_TYPES.get("deep").rows(deep)


def from_peft_embeddings(flat: torch.Tensor, geo: PromptGeometry) -> torch.Tensor:
    """PEFT's ``prompt_embeddings`` (n, L * 2 * w) -> (L, 2, n, w)."""
    return flat.reshape(flat.shape[0], geo.num_layers, 2, geo.kv_width).permute(1, 2, 0, 3)


def _model_type(backbone: Any) -> str:
    return str(getattr(backbone.model.config, "model_type", ""))


def write_prefix_adapter(deep: torch.Tensor, backbone: Any, folder: Path,
                         metadata: dict[str, Any] | None = None) -> list[str]:
    """Write `deep` (L, 2, n, w) for `backbone` as a PEFT prefix-tuning adapter;
    returns the two file paths. Refuses (before writing) a wrong shape or an
    architecture PEFT cannot drive with a prefix."""
    from peft import PrefixTuningConfig
    from safetensors.torch import save

    from .. import atomic
    from .peft_meta import hub_id

    geo = PromptGeometry.of(backbone)
    PROMPT_TYPES.get("deep").check(deep, geo, where=f"deep prompt for '{backbone.name}'")
    inert = PEFT_INERT.get(_model_type(backbone))
    if inert:
        raise PandaError(f"'{backbone.name}' cannot take a PEFT prefix-tuning adapter ({inert}); "
                         "keep the deep prompt in our prompt file format")
    n = int(deep.shape[2])
    cfg = PrefixTuningConfig(
        task_type=backbone.kind_impl.peft_task_type, num_virtual_tokens=n, token_dim=geo.kv_width,
        num_layers=geo.num_layers, num_attention_heads=geo.kv_heads, encoder_hidden_size=geo.kv_width,
        num_transformer_submodules=1, prefix_projection=False, inference_mode=True,
        base_model_name_or_path=hub_id(backbone),
    )
    config = {k: list(v) if isinstance(v, set) else v for k, v in cfg.to_dict().items()}
    meta = {"prompt_type": "deep", "backbone": backbone.name, **(metadata or {})}
    weights = save({"prompt_embeddings": to_peft_embeddings(deep.detach().float().cpu()).contiguous()},
                   metadata={"panda_meta": json.dumps(meta, default=str)})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(folder / "adapter_model.safetensors", weights)
    atomic.write_bytes(folder / "adapter_config.json", json.dumps(config, indent=2, sort_keys=True).encode())
    return [str(folder / "adapter_config.json"), str(folder / "adapter_model.safetensors")]


def _adapter_config(folder: Path) -> dict[str, Any]:
    """adapter_config.json of a prefix-tuning adapter, its sizes checked."""
    path = folder / "adapter_config.json"
    if not path.is_file() or not (folder / "adapter_model.safetensors").is_file():
        pickled = (folder / "adapter_model.bin").is_file()
        raise PandaError(f"{folder.name}: " + ("adapter_model.bin is a pickle and is never loaded; save the "
                                               "adapter with safe_serialization=True" if pickled else
                                               "a PEFT adapter folder needs adapter_config.json and "
                                               "adapter_model.safetensors"))
    try:
        if path.stat().st_size > 1024 * 1024:
            raise ValueError("over 1 MB")
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as err:
        raise PandaError(f"{folder.name}: adapter_config.json is not a readable PEFT config "
                         f"({str(err)[:80]}); export the adapter again") from None
    kind = cfg.get("peft_type") if isinstance(cfg, dict) else None
    if kind != "PREFIX_TUNING":
        raise PandaError(f"{folder.name}: adapter type {str(kind)[:40]} is not PREFIX_TUNING; import "
                         "prompt-tuning adapters as input prompts")
    bad = [k for k in _INTS if not (isinstance(cfg.get(k), int) and not isinstance(cfg.get(k), bool)
                                    and 0 < cfg[k] < 2**20)]
    if bad or cfg.get("num_transformer_submodules", 1) != 1 or cfg["token_dim"] % cfg["num_attention_heads"]:
        raise PandaError(f"{folder.name}: adapter_config.json has no usable {', '.join(bad) or 'sizes'} "
                         "(decoder-only or encoder-only prefixes with whole heads are supported)")
    return cfg


def read_prefix_adapter(folder: Path, backbone: Any | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The deep prompt (L, 2, n, w) of a PEFT prefix-tuning adapter folder and
    what it says about itself ({"peft_base", "backbone", "task_type",
    "panda_meta", "sidecar": `peft_meta.read_sidecar`'s (record, head) or None}).
    The backbone is our record's, else the registry backbone whose hub id the
    config names. With `backbone`, refuses an adapter of another backbone or
    geometry. Never writes anything; checks the file framing before loading tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = _adapter_config(folder)
    geo = PromptGeometry(0, cfg["num_layers"], cfg["num_attention_heads"],
                         cfg["token_dim"] // cfg["num_attention_heads"])
    weights = folder / "adapter_model.safetensors"
    header, meta = inspect_safetensors(weights, MAX_PROMPT_BYTES)
    key = next((k for k in header if k.endswith("prompt_embeddings")), None)
    if key is None:
        raise PandaError(f"{folder.name}: no prompt_embeddings tensor in the adapter")
    expected = [cfg["num_virtual_tokens"], geo.num_layers * 2 * geo.kv_width]
    if header[key]["shape"] != expected or header[key]["dtype"] not in FLOAT_DTYPES:
        raise PandaError(f"{folder.name}: prompt_embeddings is {header[key]['dtype']} {tuple(header[key]['shape'])}"
                         f", the config says float {tuple(expected)}; export the adapter again")
    try:
        panda = json.loads(meta.get("panda_meta", "{}"))
    except ValueError:
        panda = {}
    from .peft_meta import backbone_for_hub_id, read_sidecar

    info = {"peft_base": str(cfg.get("base_model_name_or_path"))[:200], "task_type": cfg.get("task_type"),
            "backbone": panda.get("backbone") if isinstance(panda, dict) else None,
            "panda_meta": panda if isinstance(panda, dict) else {}}
    try:
        flat = load_file(str(weights))[key].float()
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as err:
        raise PandaError(f"{folder.name}: unreadable adapter ({str(err).splitlines()[0][:100]})") from None
    deep = from_peft_embeddings(flat, geo).contiguous()
    PROMPT_TYPES.get("deep").check(deep, geo, where=folder.name)
    info["sidecar"] = read_sidecar(folder, deep, folder.name)  # our record of it (panda.json), or None
    if info["sidecar"] is not None:
        info["backbone"] = info["sidecar"][0].get("backbone") or info["backbone"]
    info["backbone"] = info["backbone"] or backbone_for_hub_id(cfg.get("base_model_name_or_path"))
    if backbone is not None:
        _check_fits(folder.name, info, geo, backbone)
    return deep, info


def _check_fits(name: str, info: dict[str, Any], geo: PromptGeometry, backbone: Any) -> None:
    """Refuse an adapter made for another backbone (its own record, or its sizes)."""
    own = PromptGeometry.of(backbone)
    if info["backbone"] and info["backbone"] != backbone.name:
        raise PandaError(f"{name}: this deep prompt was trained on '{info['backbone']}', not "
                         f"'{backbone.name}'; a deep prompt only drives the backbone it was trained on")
    if (geo.num_layers, geo.kv_heads, geo.head_dim) != (own.num_layers, own.kv_heads, own.head_dim):
        raise PandaError(f"{name}: the adapter's prefixes are {geo.num_layers} layers x {geo.kv_heads} heads x "
                         f"{geo.head_dim}, '{backbone.name}' needs {own.num_layers} x {own.kv_heads} x "
                         f"{own.head_dim}; it was made for another backbone")
