"""`zoo build`: every planned prompt that the zoo lacks, trained or reused,
written as a zoo file with its provenance, and listed in the manifest.

For each planned prompt (`plan.zoo_plan`):

1. in the zoo already, with the same budget and a consistent file: kept;
2. else a finished `train` run with exactly that budget whose prompt is still
   in the store (`ops.training.done_train_run`; what `pt-table` and the report
   trained) is reused;
3. else it is trained (`ops.train_prompt`, a recorded run like any other).

The tensors are stored as fp16 when that loses nothing measurable: the fp16
tensor is re-scored on the same test items as the trained one, and fp32 is
kept when the two differ by more than one correct item. The manifest is
rewritten after every prompt, so a killed build resumes where it stopped.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import atomic, store
from ..errors import PandaError
from ..paths import REPO_ROOT
from ..stats import encode_items, wilson_interval
from ..stats.items import result_items
from .files import (
    CHECK_ITEMS,
    SIZE_BUDGET,
    entry_file,
    entry_problems,
    read_manifest,
    relative_file,
    write_manifest,
    zoo_dir,
    zoo_id,
)
from .plan import ZooItem, expected_bytes, zoo_plan

if TYPE_CHECKING:
    from ..prompts import SoftPrompt

Log = Callable[[str], None]
FP16_TOLERANCE = 1  # correct items the fp16 tensor may lose or gain before fp32 is kept


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (None when git is unavailable)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def status_of(item: ZooItem, manifest: dict[str, Any], zoo: Path) -> tuple[str, dict | None]:
    """("in zoo", entry), ("reuse", train result) or ("train", None) for one planned prompt."""
    from ..ops.training import done_train_run

    entry = next((e for e in manifest["prompts"] if (e["backbone"], e["prompt_type"], e["task"]) == item.key), None)
    if entry is not None and entry["config"] == item.config.to_dict() and not entry_problems(entry, zoo, full=False):
        return "in zoo", entry
    done = done_train_run(item.task, item.backbone, item.config, need_prompt=True)
    return ("reuse", done) if done is not None else ("train", None)


def build(items: list[ZooItem] | None = None, *, backbones: list[str] | None = None, tasks: list[str] | None = None,
          prompt_types: list[str] | None = None, dry_run: bool = False, zoo: Path | None = None,
          command: str | None = None, log: Log = print) -> dict[str, Any]:
    """Build what the zoo lacks (see the module docstring); `items` overrides the plan
    (tests). Returns {"zoo", "items": [{"backbone", "task", "prompt_type", "status", ...}],
    "counts", "expected_bytes", "size_budget_bytes"} (+ "total_bytes" after a build)."""
    items = items if items is not None else zoo_plan(backbones, tasks, prompt_types)
    zoo = zoo or zoo_dir()
    manifest = read_manifest(zoo)
    plan = []
    for item in items:
        status, found = status_of(item, manifest, zoo)
        plan.append((item, status, found))
    rows = [_plan_row(item, status, found) for item, status, found in plan]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("in zoo", "reuse", "train")}
    out: dict[str, Any] = {"zoo": str(zoo), "dry_run": dry_run, "items": rows, "counts": counts,
                           "expected_bytes": _expected(items), "size_budget_bytes": SIZE_BUDGET}
    if dry_run:
        out["estimated_training_seconds"] = _estimate([i for i, s, _ in plan if s == "train"])
        return out
    commit = git_commit()
    command = command or _command(backbones, tasks, prompt_types)
    todo = [(i, s, f) for i, s, f in plan if s != "in zoo"]
    for n, (item, status, found) in enumerate(todo, 1):
        t0 = time.time()
        if status == "reuse":
            log(f"[zoo {n}/{len(todo)}] {item.describe()}: reusing train run {found.get('run_id')}")
            result = found
        else:
            log(f"[zoo {n}/{len(todo)}] {item.describe()}: training ({item.config.steps} steps)")
            from ..ops import train_prompt

            result = train_prompt(item.task, item.backbone, item.config)
        entry = write_entry(item, result, zoo, command, commit, reused=status == "reuse", log=log)
        manifest = read_manifest(zoo)
        manifest["prompts"] = [e for e in manifest["prompts"]
                               if (e["backbone"], e["prompt_type"], e["task"]) != item.key] + [entry]
        write_manifest(manifest, zoo)
        rows[[r["key"] for r in rows].index(list(item.key))] |= {"status": "built", "id": entry["id"],
                                                                 "dtype": entry["dtype"],
                                                                 "seconds": round(time.time() - t0, 1)}
    out["total_bytes"] = read_manifest(zoo)["total_bytes"]
    if out["total_bytes"] > SIZE_BUDGET:
        raise PandaError(f"the zoo's prompt files take {out['total_bytes'] / 2**20:.1f} MB, over the budget of "
                         f"{SIZE_BUDGET / 2**20:.0f} MB; keep fewer prompts or store them as fp16")
    return out


def write_entry(item: ZooItem, result: dict[str, Any], zoo: Path, command: str, commit: dict[str, Any],
                reused: bool = False, log: Log = print) -> dict[str, Any]:
    """Write one zoo file from a finished train run's result and return its manifest entry."""
    from ..backbones import get_backbone
    from ..ops.accuracy import accuracy_summary
    from ..prompts import readouts
    from .scoring import half, own_items

    prompt = store.load_prompt(result["prompt_id"])
    bb = get_backbone(item.backbone)
    limit = item.config.test_limit
    trained = result_items(result)
    if trained is None:  # an older run without per-item results: score the trained tensor again
        trained = own_items(bb, prompt, limit)
    halved = half(prompt)
    import torch

    finite = bool(torch.isfinite(halved.tensor).all()) and all(torch.isfinite(v).all() for v in
                                                                (halved.head or {}).values())
    fp16 = own_items(bb, halved, limit) if finite else None
    keep16 = fp16 is not None and len(fp16) == len(trained) and abs(int(fp16.sum()) - int(trained.sum())) <= \
        FP16_TOLERANCE
    stored_items = fp16 if keep16 else trained
    log(f"  {item.describe()}: fp32 {int(trained.sum())}/{len(trained)}, fp16 "
        f"{'-' if fp16 is None else int(fp16.sum())}/{len(trained)} correct -> {'fp16' if keep16 else 'fp32'}")
    summary = accuracy_summary(item.task, trained)
    scores = {"test_acc": result["test_acc"], "test_acc_ci": result.get("test_acc_ci") or summary["test_acc_ci"],
              "n_test": result.get("n_test") or summary["n_test"],
              "majority_test_acc": result.get("majority_test_acc", summary["majority_test_acc"]),
              "dev_acc": result["dev_acc"], "init_test_acc": result.get("init_test_acc")}
    low, high = wilson_interval(int(stored_items.sum()), len(stored_items))
    stored = {"dtype": "F16" if keep16 else "F32", "correct": int(stored_items.sum()), "n": len(stored_items),
              "test_acc": round(float(stored_items.mean()), 4) if len(stored_items) else 0.0,
              "test_acc_ci": [round(low, 4), round(high, 4)], "fp32_correct": int(trained.sum()),
              "fp16_correct": None if fp16 is None else int(fp16.sum()), "tolerance_items": FP16_TOLERANCE}
    provenance = {"command": command, "commit": commit.get("commit"), "dirty": commit.get("dirty"),
                  "train_run": result.get("run_id"), "reused": reused, "source_prompt_id": prompt.prompt_id}
    return write_zoo_file(zoo, item, halved if keep16 else prompt, scores, stored_items, stored,
                          readouts.recorded(prompt, bb.kind), provenance)


def write_zoo_file(zoo: Path, item: ZooItem, prompt: SoftPrompt, scores: dict[str, Any], stored_items: np.ndarray,
                   stored: dict[str, Any], readout: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write `prompt` as the zoo file of `item` (tensors in `stored["dtype"]`, "F16" or
    "F32"; its metadata marked as a zoo prompt and carrying the provenance and scores)
    and return its manifest entry. `stored_items`: the stored tensor's per-item
    correctness on the test items it was scored on (the first `CHECK_ITEMS` are recorded)."""
    import torch
    from safetensors.torch import save

    from ..data import get_task
    from ..prompts import SoftPrompt

    prov = provenance | {"built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seed": item.config.seed,
                         "budget": item.config.to_dict(), "readout": readout, "prompt_type": item.prompt_type,
                         "backbone": item.backbone, "task": item.task, "scores": scores, "stored": stored,
                         "code_version": prompt.code_version}
    zp = SoftPrompt(tensor=prompt.tensor, backbone=item.backbone, task=item.task, method="pt", seed=prompt.seed,
                    steps=prompt.steps, scores={k: v for k, v in scores.items() if isinstance(v, (int, float))},
                    created=prompt.created, code_version=prompt.code_version, head=prompt.head,
                    extra={**prompt.extra, "origin": store.ZOO, "zoo": prov})
    meta = zp.metadata() | {"prompt_id": None}
    dtype = torch.float16 if stored["dtype"] == "F16" else torch.float32
    tensors = {"prompt": zp.tensor.to(dtype).contiguous()}
    for name, value in (zp.head or {}).items():
        tensors[f"head.{name}"] = value.to(dtype).contiguous()
    data = save(tensors, metadata={"panda_meta": json.dumps(meta, sort_keys=True, default=str)})
    entry: dict[str, Any] = {"file": relative_file(item.backbone, item.prompt_type, item.task),
                             "backbone": item.backbone, "task": item.task, "family": get_task(item.task).family,
                             "prompt_type": item.prompt_type}
    path = entry_file(entry, zoo)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, data)
    digest = atomic.sha256_file(path)
    check = np.asarray(stored_items, dtype=bool)[:CHECK_ITEMS]
    return entry | {
        "id": zoo_id(item.backbone, item.prompt_type, item.task, digest), "sha256": digest, "bytes": len(data),
        "dtype": stored["dtype"], "length": zp.length, "hidden_size": zp.hidden_size, "config": item.config.to_dict(),
        "readout": readout, "seed": item.config.seed, "scores": scores, "stored": stored,
        "check": {"n": len(check), "correct": int(check.sum()), "acc": round(float(check.mean()), 4) if len(check)
                  else 0.0, "items": encode_items(check)},
        "provenance": {k: prov[k] for k in ("command", "commit", "dirty", "built", "train_run", "reused",
                                            "source_prompt_id", "code_version")},
    }


def _plan_row(item: ZooItem, status: str, found: dict | None) -> dict[str, Any]:
    row = {"key": list(item.key), "backbone": item.backbone, "task": item.task, "prompt_type": item.prompt_type,
           "steps": item.config.steps, "test_limit": item.config.test_limit, "status": status}
    if status == "in zoo" and found:
        row |= {"id": found["id"], "dtype": found["dtype"], "test_acc": found["scores"]["test_acc"]}
    elif status == "reuse" and found:
        row |= {"run_id": found.get("run_id"), "prompt_id": found.get("prompt_id"), "test_acc": found.get("test_acc")}
    return row


def _estimate(items: list[ZooItem]) -> dict[str, Any]:
    """Seconds to train `items` one after another, from the runs recorded here:
    {"seconds" (over the items with an estimate), "without_estimate" (backbones never trained here)}."""
    from ..ops.training import estimate_seconds

    total, unknown = 0.0, []
    for item in items:
        secs = estimate_seconds(item.backbone, [item.task], item.config.steps)
        if secs is None:
            unknown.append(item.describe())
        else:
            total += secs
    return {"seconds": round(total, 1), "without_estimate": unknown}


def _expected(items: list[ZooItem]) -> int | None:
    try:
        return expected_bytes(items)
    except PandaError:
        return None


def _command(backbones: list[str] | None, tasks: list[str] | None, prompt_types: list[str] | None) -> str:
    """The command line that builds this part of the zoo again."""
    parts = ["python -m panda_core zoo build"]
    for flag, values in (("--backbones", backbones), ("--tasks", tasks), ("--prompt-types", prompt_types)):
        if values:
            parts.append(" ".join([flag, *values]))
    return " ".join(parts)
