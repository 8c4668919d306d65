"""Loading backbones by name: a registry name (offline package), the tiny
test fixture, a local folder with ``config.json`` or, last and only when the
user opts in (PANDA_ALLOW_HUB=1), a hub id: the only case that may touch the
network. Loaded once per process and device; `list_backbones` reads sizes
from files and headers without loading weights.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any

import torch

from ..errors import PandaError
from .fixture import tiny_mlm
from .kinds import FALLBACK_KIND, KINDS, kind_from_architectures
from .packages import PACKAGES
from .quiet import _one_line, _quiet_transformers
from .runtime import Backbone, _resolve_device
from .spec import REGISTRY, TINY_MLM

_CACHE: dict[tuple[str, str], Backbone] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple[str, str], threading.Lock] = {}


def list_backbones() -> list[dict]:
    """The registry with sizes and availability, for menus and `backbones --json`.
    Fast: reads config files and headers only; never loads weights or touches
    the network. "prepared" False means the first load does one-time work."""
    rows = []
    for spec in REGISTRY:
        row: dict[str, Any] = {"name": spec.name, "kind": spec.kind}
        try:
            sizes, prepared = PACKAGES[spec.name].sizes()
            row.update(
                hidden_size=sizes.get("hidden_size"),
                num_layers=sizes.get("num_layers"),
                ffn_size=sizes.get("ffn_size"),
                available=True,
                prepared=prepared,
            )
        except Exception as exc:  # noqa: BLE001 -- a listing never fails
            reason = str(exc) if isinstance(exc, PandaError) else f"cannot read {spec.name}: {_one_line(exc)}"
            row.update(
                hidden_size=None,
                num_layers=None,
                ffn_size=None,
                available=False,
                prepared=False,
                reason=reason,
            )
        row.update(
            license=spec.license,
            description=spec.description,
            package=spec.package,
            default_lr=spec.default_lr,
        )
        rows.append(row)
    return rows


_IGNORABLE_MISSING = re.compile(r"(position_ids|pooler\.)")


def _load_model(source: str, kind: str, local: bool) -> tuple[Any, Any, str, str | None]:
    """Load tokenizer + model; returns (model, tokenizer, kind, warning).

    A checkpoint saved without its LM head (sentence-transformers folders claim
    *ForMaskedLM) is used as an encoder instead of with a random head."""
    from transformers import AutoTokenizer

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        model, info = KINDS.get(kind).auto_class().from_pretrained(
            source, local_files_only=local, dtype=torch.float32, output_loading_info=True
        )
    missing = sorted(k for k in info.get("missing_keys", []) if not _IGNORABLE_MISSING.search(k))
    warning = None
    if missing and KINDS.get(kind).has_lm_head:
        base_prefix = getattr(model, "base_model_prefix", "") + "."
        if all(not k.startswith(base_prefix) for k in missing) and model.base_model is not model:
            # Only the head is missing: the encoder underneath is intact.
            return model.base_model, tokenizer, FALLBACK_KIND, None
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        warning = (
            f"{len(missing)} weight tensors were not in the checkpoint and are randomly initialised ({shown}): "
            "results that depend on them are not meaningful"
        )
    return model, tokenizer, kind, warning


def _load_registry(name: str, device: torch.device) -> Backbone:
    spec = REGISTRY.get(name)
    package = PACKAGES[name]
    folder = package.prepare(lambda msg, frac: None)
    try:
        model, tok, kind, warning = _load_model(str(folder), spec.kind, local=True)
    except PandaError:
        raise
    except Exception as exc:
        raise PandaError(
            f"could not load backbone {name!r} from {folder} ({_one_line(exc)}): {package.load_fix}"
        ) from exc
    return Backbone(name, kind, model, tok, device, "package", warning, spec=spec, path=folder)


def _load_folder(folder: Path, device: torch.device) -> Backbone:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise PandaError(
            f"folder {folder} has no readable config.json ({_one_line(exc)}): point to a Hugging Face model folder"
        ) from exc
    if cfg.get("is_encoder_decoder"):
        raise PandaError(f"{folder} is an encoder-decoder model: use an encoder, a masked LM or a causal LM")
    kind = kind_from_architectures(cfg.get("architectures"))
    try:
        model, tok, kind, warning = _load_model(str(folder), kind, local=True)
    except Exception as exc:
        raise PandaError(
            f"could not load backbone from folder {folder} ({_one_line(exc)}): check that it holds weights and a tokenizer"
        ) from exc
    return Backbone(str(folder), kind, model, tok, device, "folder", warning, path=folder)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub endpoint, so an offline machine gets a clear
    error in seconds instead of ~30 s of retries and log noise."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load_hub(repo_id: str, device: torch.device) -> Backbone:
    """A hub id: from the local Hugging Face cache when it is there, else online."""
    from transformers import AutoConfig

    start = f"could not load backbone {repo_id!r}: not a registry name ({', '.join(REGISTRY.names())}), not a local folder"
    fix = "use a registry name or a folder with config.json"
    if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?", repo_id) or ".." in repo_id:
        raise PandaError(f"{start}, nor a valid hub id: {fix}")
    if not os.environ.get("PANDA_ALLOW_HUB"):  # the hub only when the user opts in
        raise PandaError(f"{start}; to load it from the Hugging Face hub set PANDA_ALLOW_HUB=1 (online machines), "
                         f"or {fix}")
    local = True
    try:
        with _quiet_transformers():
            cfg = AutoConfig.from_pretrained(repo_id, local_files_only=True)
    except Exception:
        local = False
        if not _hub_reachable():
            raise PandaError(f"{start}, and the hub is unreachable (offline): {fix}") from None
        try:
            with _quiet_transformers():
                cfg = AutoConfig.from_pretrained(repo_id)
        except Exception as exc:
            raise PandaError(
                f"{start}, and the hub has no such model ({_one_line(exc, 120)}): {fix}"
            ) from exc
    if getattr(cfg, "is_encoder_decoder", False):
        raise PandaError(f"{repo_id} is an encoder-decoder model: use an encoder, a masked LM or a causal LM")
    kind = kind_from_architectures(getattr(cfg, "architectures", None))
    try:
        try:
            model, tok, kind, warning = _load_model(repo_id, kind, local=local)
        except Exception:
            if not local or not _hub_reachable():
                raise
            model, tok, kind, warning = _load_model(repo_id, kind, local=False)  # config cached, weights not
    except Exception as exc:
        raise PandaError(
            f"could not load backbone {repo_id!r} from the hub ({_one_line(exc, 120)}): {fix}"
        ) from exc
    return Backbone(repo_id, kind, model, tok, device, "hub", warning)


def _resolve_name(name_or_path: str) -> tuple[str, str]:
    """(how, key): how in registry | tiny | folder | hub."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise PandaError(f"backbone name must be a non-empty string, got {name_or_path!r}: try 'minilm'")
    name = name_or_path.strip()
    if name.lower() in REGISTRY:
        return "registry", name.lower()
    if name.lower() == TINY_MLM:
        return "tiny", TINY_MLM
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise PandaError(f"backbone path {name} is a file: point to a model folder with config.json")
        if not (path / "config.json").is_file():
            raise PandaError(f"folder {name} has no config.json: point to a Hugging Face model folder")
        return "folder", str(path.resolve())
    return "hub", name


def get_backbone(name_or_path: str = "minilm", device: str | torch.device | None = None) -> Backbone:
    """The frozen backbone for a registry name, a local folder or a hub id,
    loaded once per process and device (models are shared, never mutated).

    Raises PandaError (one line, with the fix) for anything unknown or broken.
    """
    how, key = _resolve_name(name_or_path)
    dev = _resolve_device(device)
    cache_key = (key, str(dev))
    with _CACHE_LOCK:
        if cache_key in _CACHE:
            return _CACHE[cache_key]
        lock = _KEY_LOCKS.setdefault(cache_key, threading.Lock())
    with lock:  # one load per key even when two threads ask at once
        with _CACHE_LOCK:
            if cache_key in _CACHE:
                return _CACHE[cache_key]
        if how == "registry":
            backbone = _load_registry(key, dev)
        elif how == "tiny":
            backbone = tiny_mlm(0, device=dev)
        elif how == "folder":
            backbone = _load_folder(Path(key), dev)
        else:
            backbone = _load_hub(key, dev)
        with _CACHE_LOCK:
            _CACHE[cache_key] = backbone
    return backbone
