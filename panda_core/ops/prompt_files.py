"""Prompts in and out of the cache. In: every format of
`prompts.importers.IMPORTERS` (our safetensors, PEFT PROMPT_TUNING and
PREFIX_TUNING adapters, numpy .npy, torch.save zips of one tensor such as
Prompt-Transferability's ``task_prompt`` files, and folders or .zips of many
of them). Out: our safetensors or a portable PEFT adapter (hub id, readout
and head beside it: `prompts.peft_meta`). The formats and their
checks live in `prompts`; this module checks what was read against the task
and the backbone, then stores it. An ops-level module: it reads and writes the store.

Prompts of a backbone that is not installed (`backbones.foreign`) are stored
under the id the user, a manifest or the file's name declares, checked
against its known width; nothing loads a model for them."""

from __future__ import annotations

from pathlib import Path

from .. import atomic, store
from ..errors import PandaError
from ..prompts.formats import read_prompt_file  # noqa: F401 (re-exported)
from ..prompts.importers import Candidate, importer_for
from ..prompts.peft import (  # noqa: F401 (re-exported: tests and callers use export.*)
    MAX_CONFIG_BYTES,
    MAX_IMPORT_BYTES,
    peft_prompt_embeddings,
    read_peft_adapter,
    write_peft_adapter,
)
from ..prompts.soft_prompt import SoftPrompt
from ..prompts.types import PROMPT_TYPES, PromptGeometry

_UNKNOWN = ("unknown", "")


def export_prompt(prompt_id: str, fmt: str = "safetensors", out_dir: str | Path = ".") -> dict:
    """Write a stored prompt to `out_dir`; returns {"prompt_id", "format", "files"}
    (and "peft_type", "base_model" for PEFT). Files appear complete or not at all
    (temporary file + rename).

    A PEFT export is portable: its config names the backbone's hub id (never a
    folder on this machine) and the sidecar ``panda.json`` (+ the head, if any)
    records our readout, prompt type, task and labels (`prompts.peft_meta`), so
    the class scores are reproducible from the folder and importing it back
    gives the same prompt. Input prompts become PROMPT_TUNING adapters, deep
    prompts PREFIX_TUNING adapters."""
    if fmt not in ("safetensors", "peft"):
        raise PandaError(f"unknown export format '{fmt}'; use safetensors or peft")
    prompt = store.load_prompt(prompt_id)
    if fmt == "peft":  # PEFT's config records the base model: a foreign backbone must be loadable
        from ..backbones.foreign import require_installed

        require_installed(prompt.backbone)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PandaError(f"--out {out} is a file; give a folder")
    if fmt == "safetensors":
        out.mkdir(parents=True, exist_ok=True)
        dest = out / f"{prompt_id}.safetensors"
        atomic.copy_file(store.prompt_path(prompt_id), dest)
        return {"prompt_id": prompt_id, "format": fmt, "files": [str(dest)]}
    from ..backbones import get_backbone
    from ..prompts.peft_meta import sidecar_record, write_sidecar

    bb = get_backbone(prompt.backbone)
    record = sidecar_record(prompt, bb)  # refusals (no hub id) before anything is written
    out.mkdir(parents=True, exist_ok=True)
    folder = out / prompt_id
    if prompt.prompt_type == "deep":
        from ..prompts.peft_prefix import write_prefix_adapter

        meta = {"task": prompt.task, "method": prompt.method, "seed": prompt.seed, "prompt_id": prompt_id}
        files = write_prefix_adapter(prompt.tensor, bb, folder, meta)
    else:
        files = write_peft_adapter(prompt, folder, bb)
    files += write_sidecar(folder, record, prompt.head)
    return {"prompt_id": prompt_id, "format": fmt, "files": files, "base_model": record["hub_id"],
            "peft_type": "PREFIX_TUNING" if prompt.prompt_type == "deep" else "PROMPT_TUNING",
            "readout": record["readout"]}


def _registry_name(name: str) -> bool:
    from ..backbones import REGISTRY, TINY_MLM

    return name.lower() in REGISTRY or name.lower() == TINY_MLM


def _resolve_task(cand: Candidate, task: str | None) -> str:
    """The task: --task, else the manifest or the file's name, else the file's
    own metadata, else a file name that is a task's name; checked to exist."""
    from ..data import get_task

    p, where = cand.prompt, cand.where
    guessed = cand.task_from == "its file name"
    name = task or (cand.task if cand.task and not guessed else None) or (
        p.task if p.task not in _UNKNOWN else None) or cand.task
    if not name:
        raise PandaError(f"{where} does not say which task it was trained on; pass --task")
    try:
        return get_task(name).name
    except PandaError as err:
        if name == cand.task and guessed:
            raise PandaError(f"{where}: its file name does not name a known task ('{name[:40]}'); pass --task "
                             "or list it in a manifest") from None
        if name == cand.task and cand.task_from:
            raise PandaError(f"{where}: {str(err)[:400]} (from {cand.task_from}); pass --task or use a manifest"
                             ) from None
        raise


def _resolve_backbone(cand: Candidate, backbone: str | None) -> str:
    """Sets the prompt's backbone (its own record, else the manifest's or its
    name's, else --backbone) and returns the backbone to check it against."""
    from ..backbones.foreign import installed

    p, where = cand.prompt, cand.where
    own = p.backbone if p.backbone not in _UNKNOWN else None
    declared = cand.backbone
    if declared and _registry_name(declared):
        declared = declared.lower()
    elif declared and installed(declared):  # a path: a manifest cannot make us load a local folder
        raise PandaError(f"{where}: {cand.backbone_from} names backbone '{declared[:60]}', a local path; a manifest "
                         "names registry backbones or hub-style ids (stored, never loaded): pass a model folder "
                         "with --backbone")
    if cand.unknown_model and not (declared or backbone):
        from ..prompts.bundles import THUNLP_MODELS

        raise PandaError(f"{where}: Prompt-Transferability model name '{cand.unknown_model[:30]}' is not in the "
                         f"table ({', '.join(THUNLP_MODELS)}); pass --backbone or name it in a manifest")
    if own and declared and own != declared:
        raise PandaError(f"{where}: the file says backbone '{own[:60]}' but {cand.backbone_from} says "
                         f"'{declared[:60]}'; fix one of them")
    arg = backbone.lower() if backbone and _registry_name(backbone) else backbone
    if declared and arg and arg != declared:  # refused before any model is loaded
        raise PandaError(f"{where} was trained on backbone '{declared[:60]}' ({cand.backbone_from}), not "
                         f"'{arg[:60]}'; drop --backbone (a prompt only drives the backbone it was trained on)")
    p.backbone = own or declared or backbone or "unknown"
    if p.backbone in _UNKNOWN:
        raise PandaError(f"{where} does not say which backbone it belongs to; pass --backbone")
    wanted = backbone or declared or p.backbone
    if not backbone and not declared and not _registry_name(wanted):
        from ..backbones import REGISTRY

        raise PandaError(f"{where} names backbone '{wanted[:60]}', which is not a registry backbone "
                         f"({', '.join(REGISTRY.names())}); pass --backbone explicitly to use it")
    return wanted


def _check_installed(p: SoftPrompt, wanted: str, where: str, length: int | None) -> None:
    """The prompt against a backbone we can load: name, hidden size, shape, length."""
    from ..backbones import get_backbone

    bb = get_backbone(wanted)
    if p.backbone == wanted:  # named by the user: stored under the backbone's own name ('MiniLM', './folder')
        p.backbone = bb.name
    p.check_compatible(bb.name, bb.hidden_size, length)
    PROMPT_TYPES.get(p.prompt_type).check(p.tensor, PromptGeometry.of(bb), where=where)
    if p.length > bb.max_prompt_tokens:
        raise PandaError(f"{where} has {p.length} prompt tokens but '{bb.name}' takes at most "
                         f"{bb.max_prompt_tokens}; use a shorter prompt")


def _check_foreign(p: SoftPrompt, wanted: str, where: str, length: int | None) -> None:
    """The prompt against a declared backbone that is not installed: a valid id,
    the prompt's own record, the backbone's known width; no model is loaded."""
    from ..backbones.foreign import MAX_FOREIGN_TOKENS, foreign_id, width_problem

    name = foreign_id(wanted, where)
    if p.backbone != name:
        raise PandaError(f"{where} was trained on backbone '{p.backbone[:60]}', not '{name}'; a prompt only "
                         "drives the backbone it was trained on (project it instead)")
    problem = width_problem(name, tuple(p.tensor.shape))
    if problem:
        raise PandaError(f"{where}: {problem}")
    if length is not None and p.length != length:
        raise PandaError(f"{where} has {p.length} tokens, expected {length}")
    if p.length > MAX_FOREIGN_TOKENS:
        raise PandaError(f"{where} has {p.length} prompt tokens, over the {MAX_FOREIGN_TOKENS} a prompt of a "
                         "backbone that is not installed may have")


#: formats that carry a bare tensor: on a backbone that is not installed it is the task's published
#: prompt (method "pt", what the embedding indicators read); on an installed one it is "imported"
RAW_FORMATS = ("npy", "torch")


def _prepare(cand: Candidate, backbone: str | None, task: str | None, length: int | None) -> SoftPrompt:
    """A candidate fully checked and ready to store (nothing is written here)."""
    from ..backbones.foreign import installed
    from ..data import get_task

    p, where = cand.prompt, cand.where
    wanted = _resolve_backbone(cand, backbone)
    p.task = _resolve_task(cand, task)
    if installed(wanted):
        _check_installed(p, wanted, where, length)
    else:
        _check_foreign(p, wanted, where, length)
    if p.head is not None and "weight" in p.head:
        n_labels = len(get_task(p.task).labels)
        if p.head["weight"].shape[0] != n_labels:
            raise PandaError(f"{where} has a head for {p.head['weight'].shape[0]} classes but task "
                             f"'{p.task}' has {n_labels}; pass the task it was trained on (--task)")
    p.extra = dict(p.extra or {}) | cand.extra | {"imported_from": store.safe_filename(Path(where).name),
                                                 "original_method": p.method, "original_format": cand.fmt}
    p.method = p.method if p.method in ("pt", "pot", "panda") else "imported"
    if installed(wanted) and cand.fmt in RAW_FORMATS:
        p.method = "imported"  # a bare tensor never displaces a prompt trained here as its task's prompt
    p.prompt_id = None
    return p


def _summary(p: SoftPrompt, where: str) -> dict:
    from ..backbones.foreign import installed

    return {"prompt_id": p.prompt_id, "task": p.task, "backbone": p.backbone, "length": p.length,
            "hidden_size": p.hidden_size, "prompt_type": p.prompt_type, "method": p.method,
            "installed": installed(p.backbone), "file": where}


def import_prompt(path: str | Path, backbone: str | None = None, task: str | None = None,
                  length: int | None = None) -> dict:
    """Bring a prompt file, a PEFT adapter folder, or a folder / .zip of many
    prompts into the store, refusing anything that does not fit its task and
    backbone (or `length`).

    Every prompt is read and checked before the first is stored, so one bad
    member refuses the whole import; every refusal is a one-line PandaError.
    The backbone named inside a file is only used when it is a registry name:
    a file cannot make us load a local folder or a hub model. A backbone that
    is not installed (declared by --backbone, a manifest or a
    Prompt-Transferability name) is recorded, never loaded.

    Returns, for one file, {"prompt_id", "task", "backbone", "length",
    "hidden_size", "prompt_type", "method", "installed", "file", "format",
    "prompt_ids"}; for a folder or zip {"format", "prompt_ids", "prompts",
    "skipped"}."""
    path = Path(path)
    if not path.exists():
        raise PandaError(f"file not found: {path}; give a prompt file (.safetensors, .npy, .pt/.bin), a PEFT "
                         "adapter folder, or a folder or .zip of prompts")
    importer = importer_for(path)
    found = importer.read(path)
    if task and len(found.candidates) > 1:
        raise PandaError(f"--task names one task but {path.name} holds {len(found.candidates)} prompts; name "
                         "each prompt's task in a manifest (manifest.json or manifest.csv)")
    ready = [_prepare(c, backbone, task, length) for c in found.candidates]
    saved: list[str] = []
    try:
        for p in ready:
            saved.append(store.save_prompt(p))
    except BaseException:
        for pid in saved:  # all or nothing, even when the disk fails midway
            try:
                store.delete_prompt(pid)
            except Exception:  # noqa: BLE001,S110 -- best effort: doctor reports leftovers
                pass
        raise
    rows = [_summary(p, c.where) for p, c in zip(ready, found.candidates, strict=True)]
    if not importer.many:
        return rows[0] | {"format": importer.name, "prompt_ids": saved}
    return {"format": importer.name, "prompt_ids": saved, "prompts": rows, "skipped": found.skipped}
