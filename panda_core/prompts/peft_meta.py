"""What our PEFT exports carry beyond PEFT's own files, so they are portable
and come back unchanged.

- **The hub id, never a path.** The shipped backbones are unpacked from
  offline packages, so the loaded config's ``_name_or_path`` is a folder on
  this machine. An adapter's ``base_model_name_or_path`` names the backbone's
  hub id instead (`BackboneSpec.hub_id`, e.g.
  ``sentence-transformers/all-MiniLM-L6-v2``), so ``PeftModel.from_pretrained``
  works anywhere (`hub_id`). A local model folder with no hub id is refused.
- **Our readout, beside the adapter.** PEFT 0.21 warns about any unknown key
  in ``adapter_config.json`` ("Unexpected keyword arguments ... upgrade PEFT"),
  so our record goes into a sidecar ``panda.json`` that PEFT never reads: the
  backbone, its hub id, prompt type, task, labels, readout, method, seed and
  scores. A readout's parameters or a linear head (what turns the backbone's
  states into class scores) go into ``panda_head.safetensors`` under the same
  ``head.*`` names as our prompt files, so the class scores of the exported
  prompt are reproducible from the adapter folder alone.

Reading (`read_sidecar`) checks everything at the boundary like the other
importers (one-line PandaError); a folder without ``panda.json`` (an adapter
made with PEFT itself) reads as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PandaError

if TYPE_CHECKING:
    import torch

    from .soft_prompt import SoftPrompt

SIDECAR = "panda.json"
HEAD_FILE = "panda_head.safetensors"
SIDECAR_FORMAT = "panda_core adapter sidecar"
MAX_SIDECAR_BYTES = 1024 * 1024
_TEXT_FIELDS = ("backbone", "hub_id", "task", "readout", "method", "prompt_type", "prompt_id", "code_version")


def hub_id(backbone: Any) -> str:
    """The id an export names as its base model: a registry backbone's hub id,
    else the backbone's own name or its config's ``_name_or_path`` when that is
    a hub-style id and not a path on this machine. A local folder without one
    is refused in one line (its path would mean nothing elsewhere)."""
    from ..backbones.foreign import foreign_id
    from ..backbones.spec import REGISTRY

    name = str(getattr(backbone, "name", "") or "")
    if name.lower() in REGISTRY and REGISTRY.get(name.lower()).hub_id:
        return REGISTRY.get(name.lower()).hub_id
    config = getattr(getattr(backbone, "model", None), "config", None)
    for candidate in (name, str(getattr(config, "_name_or_path", "") or "")):
        if not candidate or Path(candidate).expanduser().exists() or candidate.startswith(("/", ".", "~")):
            continue
        try:
            return foreign_id(candidate, "")
        except PandaError:
            continue
    raise PandaError(f"backbone '{name[:80]}' is a folder on this machine with no hub id, so a PEFT adapter "
                     "could not name its base model elsewhere; export the prompt as safetensors instead")


def backbone_for_hub_id(hub: object) -> str | None:
    """The registry backbone whose hub id is `hub` (an adapter made elsewhere
    on all-MiniLM-L6-v2 belongs to minilm), or None."""
    from ..backbones.spec import REGISTRY

    if not isinstance(hub, str):
        return None
    return next((s.name for s in REGISTRY if s.hub_id and s.hub_id.lower() == hub.strip().lower()), None)


def sidecar_record(prompt: SoftPrompt, backbone: Any) -> dict[str, Any]:
    """The ``panda.json`` of an export of `prompt` for its loaded `backbone`:
    what PEFT's config cannot say. Computed before anything is written."""
    from .readouts import recorded

    labels: list[str] | None = None
    try:
        from ..data import get_task

        labels = list(get_task(prompt.task).labels)
    except PandaError:
        labels = None
    return {
        "format": SIDECAR_FORMAT, "version": 1, "backbone": backbone.name, "hub_id": hub_id(backbone),
        "prompt_type": prompt.prompt_type, "task": prompt.task, "labels": labels,
        "readout": recorded(prompt, backbone.kind), "method": prompt.method, "seed": prompt.seed,
        "length": prompt.length, "hidden_size": prompt.hidden_size, "prompt_id": prompt.prompt_id,
        "scores": dict(prompt.scores or {}), "head": HEAD_FILE if prompt.head else None,
        "code_version": prompt.code_version,
    }


def write_sidecar(folder: Path, record: dict[str, Any], head: dict[str, torch.Tensor] | None) -> list[str]:
    """Write ``panda.json`` (and ``panda_head.safetensors`` when there is a
    head), each atomically; returns the paths written."""
    from safetensors.torch import save

    from .. import atomic

    folder = Path(folder)
    files = []
    if head:
        data = save({f"head.{k}": v.detach().float().cpu().contiguous() for k, v in head.items()})
        atomic.write_bytes(folder / HEAD_FILE, data)
        files.append(str(folder / HEAD_FILE))
    atomic.write_bytes(folder / SIDECAR, json.dumps(record, indent=2, sort_keys=True, default=str).encode())
    return [str(folder / SIDECAR), *files]


def _record(folder: Path, where: str) -> dict[str, Any] | None:
    path = folder / SIDECAR
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError("over 1 MB")
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as err:
        raise PandaError(f"{where}: {SIDECAR} is not readable JSON ({str(err)[:80]}); export the prompt "
                         f"again or delete {SIDECAR}") from None
    if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
        raise PandaError(f"{where}: {SIDECAR} is not a panda_core adapter record; delete it to import the "
                         "adapter alone")
    for key in _TEXT_FIELDS:
        value = record.get(key)
        if value is not None and not (isinstance(value, str) and 0 < len(value) <= 300 and value.isprintable()):
            raise PandaError(f"{where}: {SIDECAR} field '{key}' is not a short text; export the prompt again")
    seed = record.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or abs(seed) >= 2**63:
        raise PandaError(f"{where}: {SIDECAR} field 'seed' is not an integer; export the prompt again")
    scores = record.get("scores") or {}
    if not isinstance(scores, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, int | float))
                                               for k, v in scores.items()):
        raise PandaError(f"{where}: {SIDECAR} field 'scores' must map names to numbers; export the prompt again")
    labels = record.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise PandaError(f"{where}: {SIDECAR} field 'labels' must be a list of texts; export the prompt again")
    if record.get("readout") is not None:
        from .readouts import READOUTS

        if record["readout"] not in READOUTS.names():
            raise PandaError(f"{where}: {SIDECAR} names readout '{record['readout'][:40]}', which this version "
                             f"does not know ({', '.join(READOUTS.names())})")
    return record


def _head(folder: Path, where: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .formats import FLOAT_DTYPES, check_head, inspect_safetensors

    path = folder / HEAD_FILE
    if not path.is_file():
        raise PandaError(f"{where}: {SIDECAR} names a head but {HEAD_FILE} is missing; export the prompt again")
    header, _ = inspect_safetensors(path)
    bad = [k for k, info in header.items() if not k.startswith("head.") or info["dtype"] not in FLOAT_DTYPES]
    if bad or not header:
        raise PandaError(f"{where}: {HEAD_FILE} must hold float head.* tensors only; export the prompt again")
    try:
        head = {k[5:]: v.float() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as err:
        raise PandaError(f"{where}: unreadable {HEAD_FILE} ({str(err).splitlines()[0][:100]})") from None
    check_head(head, tensor, f"{where}/{HEAD_FILE}")
    return head


def read_sidecar(folder: Path, tensor: torch.Tensor, where: str) -> tuple[dict[str, Any], dict | None] | None:
    """(``panda.json``'s record, the head or None) of an adapter folder whose
    prompt is `tensor`, or None when the folder has no ``panda.json``. Refuses
    a record that contradicts the tensor (type, length, width): the adapter was
    edited after the export."""
    from .types import prompt_type_of

    record = _record(Path(folder), where)
    if record is None:
        return None
    kind = prompt_type_of(tensor).name
    for key, actual in (("prompt_type", kind), ("length", int(tensor.shape[-2])),
                        ("hidden_size", int(tensor.shape[-1]))):
        if record.get(key, actual) != actual:
            raise PandaError(f"{where}: {SIDECAR} says {key} {str(record[key])[:20]} but the adapter's prompt has "
                             f"{actual} (edited after export?); export the prompt again")
    head = _head(Path(folder), where, tensor) if record.get("head") else None
    return record, head


def apply_sidecar(prompt: SoftPrompt, found: tuple[dict[str, Any], dict | None] | None) -> SoftPrompt:
    """`prompt` (read from an adapter) with what our sidecar recorded: backbone,
    task, method, seed, scores, readout, labels and head; unchanged without one."""
    if found is None:
        return prompt
    record, head = found
    for key in ("backbone", "task", "method"):
        if record.get(key):
            setattr(prompt, key, record[key])
    prompt.seed = int(record.get("seed") or 0)
    prompt.scores = {k: v for k, v in (record.get("scores") or {}).items() if v is not None}
    prompt.head = head
    extra = {k: record[k] for k in ("readout", "labels", "hub_id") if record.get(k) is not None}
    if record.get("prompt_id"):
        extra["exported_prompt_id"] = record["prompt_id"]
    prompt.extra = dict(prompt.extra or {}) | extra | {"peft_sidecar": True}
    return prompt
