"""Validation at the boundary: the checks every command runs on its
parameters before any model is loaded and before anything is written.

Cheap checks come first (numbers through the validated config dataclasses,
which import no torch; task names through `data`), names resolved through
the registries next, backbones last (a registry name, `tiny-mlm`, a model
folder with config.json, or a hub id when the user opted in with
PANDA_ALLOW_HUB=1 - resolved without loading anything). Each refusal is one
`PandaError` line naming the parameter, the value and what is allowed.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from ..errors import PandaError

# argparse dest -> TrainConfig field, for the knobs a command exposes
TRAIN_FIELDS = {
    "steps": "steps", "prompt_len": "prompt_length", "seed": "seed", "lr": "lr", "batch_size": "batch_size",
    "eval_every": "eval_every", "head": "head", "train_limit": "train_limit", "dev_limit": "dev_limit",
    "test_limit": "test_limit", "readout": "readout", "prompt_type": "prompt_type", "patience": "patience",
    "batching": "batching",
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?")  # what the hub accepts as a model id
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # NUL, line breaks and other controls


def name(value: Any, what: str) -> str:
    """A non-empty name without control characters (NUL, line breaks, ...)."""
    if not isinstance(value, str) or not value.strip():
        raise PandaError(f"{what} must be a non-empty name, got {value!r}")
    if _BAD_CHARS.search(value):
        raise PandaError(f"{what} {value!r} contains control characters")
    return value


def count(value: Any, flag: str, low: int = 1) -> int:
    """An integer >= `low` (a count such as --n-inputs or --workers)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise PandaError(f"{flag} must be an integer >= {low}, got {value!r}")
    return value


def train_config(args: argparse.Namespace, **fixed: Any):
    """The `TrainConfig` of the knobs the command exposes (those left unset keep
    the config's defaults, so run keys do not change), plus `fixed` fields."""
    from ..training import TrainConfig

    given = {field: getattr(args, dest) for dest, field in TRAIN_FIELDS.items()
             if getattr(args, dest, None) is not None}
    return TrainConfig.from_dict(given | fixed)


def transfer_config(args: argparse.Namespace):
    """The `TransferConfig` of a transfer command (its train knobs and PANDA's)."""
    train = train_config(args)  # numbers first: no torch needed to refuse them
    from ..transfer import TransferConfig

    return TransferConfig(train=train, lambda_max=args.lambda_max, kd_form=args.kd_form, teacher=args.teacher,
                          student_init=args.student_init, fixed_lambda=args.fixed_lambda,
                          from_source=bool(getattr(args, "from_source", False)))


def seeds(n: Any, first: int) -> int:
    """`--seeds N`: a count in range whose last seed is still a valid seed."""
    from ..ops.seeds import check_seeds
    from ..training import check_field

    n = check_seeds(n)
    check_field("seed", first + n - 1)
    return n


def indicator_options(metric: str, pairs: list[str]) -> dict[str, Any]:
    """`--option NAME=VALUE` pairs as typed values of options the indicator
    declares: a choice among its `choices`, true/false for a boolean, an
    integer >= 1 for an integer; `layers` and `n_inputs` have their own flags."""
    from ..indicators import INDICATORS

    declared = {o.name: o for o in INDICATORS.get(metric).options if o.name not in ("layers", "n_inputs")}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = str(pair).partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or key not in declared:
            names = ", ".join(declared) or "none"
            raise PandaError(f"--option {pair!r}: use NAME=VALUE with a NAME that indicator '{metric}' declares "
                             f"({names})")
        opt = declared[key]
        if opt.choices:
            if raw not in opt.choices:
                raise PandaError(f"--option {key}: {raw!r} is not one of {', '.join(map(str, opt.choices))}")
            value: Any = raw
        elif isinstance(opt.default, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise PandaError(f"--option {key}: {raw!r} is not true or false")
            value = raw.lower() in ("true", "1", "yes")
        elif isinstance(opt.default, int):
            value = count(int(raw) if raw.lstrip("-").isdigit() else raw, f"--option {key}")
        else:
            value = raw
        out[key] = value
    return out


def task(value: Any, *, available: bool = False):
    """The `TaskSpec` of a known task; with `available`, one whose data can be read now."""
    from ..data import TASK_SOURCES, get_task

    spec = get_task(name(value, "task"))
    if available:
        rows = [r for r in TASK_SOURCES.get(spec.source).status() if r["name"] == spec.name]
        if rows and not rows[0]["available"]:
            raise PandaError(f"task '{spec.name}' is not available: {rows[0].get('reason') or 'not prepared'}")
    return spec


def tasks(values: list[str] | None, flag: str, *, available: bool = False) -> list[str]:
    """Known tasks, none listed twice."""
    names = [task(v, available=available).name for v in values or []]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PandaError(f"{flag} lists the task '{twice[0]}' twice")
    return names


def _path(text: str) -> tuple[Path, bool]:
    """`text` as a path, and whether it exists (a name too long for a path does not)."""
    try:
        path = Path(text).expanduser()  # "~nobody/x" raises RuntimeError
        return path, path.exists()
    except (OSError, ValueError, RuntimeError):
        return Path(text), False


def _has_prompts(name: str) -> bool:
    """Whether the store holds prompts of backbone `name` (never creates the registry)."""
    from .. import store

    return store_exists() and bool(store.list_prompts(backbone=name))


def backbone(value: Any, flag: str = "--backbone", *, model: bool = True) -> dict:
    """{"name", "origin"}: the name prompts and runs are stored under and where
    the model would come from (registry | tiny | folder | hub); loads nothing.

    A backbone that is not installed but has imported prompts in the store
    (e.g. roberta-base) is origin "stored" when the command does not need the
    model (`model=False`: embedding indicators); otherwise it is refused in
    one line naming it and PANDA_ALLOW_HUB=1."""
    from ..backbones import REGISTRY, TINY_MLM

    text = name(value, flag).strip()
    if text.lower() in REGISTRY or text.lower() == TINY_MLM:
        return {"name": text.lower(), "origin": "registry" if text.lower() in REGISTRY else "tiny"}
    folder, exists = _path(text)
    if exists and folder.is_dir() and (folder / "config.json").is_file():
        return {"name": str(folder.resolve()), "origin": "folder"}  # the name its prompts are stored under
    known = f"not a registry name ({', '.join(REGISTRY.names())}) nor a model folder with config.json"
    if exists:
        raise PandaError(f"{flag} {text}: {known} (a folder needs the model's config.json)")
    if not _HUB_ID.fullmatch(text) or ".." in text:
        raise PandaError(f"unknown backbone {text!r}: {known}, nor a valid hub id")
    if not os.environ.get("PANDA_ALLOW_HUB"):
        if _has_prompts(text):
            if model:
                from ..backbones.foreign import not_installed_message

                raise PandaError(not_installed_message(text))
            return {"name": text, "origin": "stored"}
        raise PandaError(f"unknown backbone {text!r}: {known}; to load it from the Hugging Face hub "
                         f"set PANDA_ALLOW_HUB=1")
    return {"name": text, "origin": "hub"}


def num_layers(bb: dict) -> int | None:
    """The layer count of a registry backbone (read from its package's config), else None."""
    if bb["origin"] != "registry":
        return None
    from ..backbones import list_backbones

    return next((row.get("num_layers") for row in list_backbones() if row["name"] == bb["name"]), None)


def layer_window(text: str | None, bb: dict) -> tuple[int, int] | None:
    """--layers "start:end" (end exclusive) as (start, end), with 0 <= start < end
    (and end <= the backbone's layers when the backbone says how many)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d{1,6})\s*:\s*(\d{1,6})\s*", text)
    if not match:
        raise PandaError(f"--layers must be START:END with whole numbers (end exclusive, e.g. 4:6), got {text!r}")
    lo, hi = int(match.group(1)), int(match.group(2))
    if lo >= hi:
        raise PandaError(f"--layers {lo}:{hi} is empty: the end (exclusive) must be greater than the start")
    layers = num_layers(bb)
    if layers is not None and hi > layers:
        raise PandaError(f"--layers {lo}:{hi} is outside {bb['name']}'s {layers} layers (use an end <= {layers})")
    return lo, hi


def store_exists() -> bool:
    """Whether the run registry exists: a --check never creates it (nothing is stored yet)."""
    from .. import paths

    return paths.db_path().exists()


def require_store(what: str, backbone: str, length: int, task: str | None = None) -> None:
    """Refuse work that reads stored prompts when the cache has none yet (the
    run registry does not exist), without creating the registry."""
    if not store_exists():
        raise PandaError(f"{what} needs stored {length}-token prompts on '{backbone}', and the cache has none "
                         f"yet; train them first: python -m panda_core train --task {task or 'TASK'} "
                         f"--backbone {backbone} --prompt-len {length}")
