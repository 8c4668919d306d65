"""`zoo install` and `zoo list`: the zoo's prompts in the cache.

Install copies each zoo file byte for byte into the prompt store (so its
checksum stays the manifest's) and registers it as a task prompt (method
"pt") whose metadata says ``extra.origin = "zoo"``. The store's one rule
(`store.latest_prompt`) then uses a zoo prompt only where the user has no
prompt of their own for that task. Install is idempotent and fast: a prompt
already registered with the manifest's checksum is left alone; zoo prompts
the manifest no longer lists (a rebuilt zoo) are removed from the cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import store
from ..errors import PandaError
from .files import entry_file, file_meta, read_manifest, zoo_dir


def install(zoo: Path | None = None) -> dict[str, Any]:
    """Register every zoo prompt in the cache. Returns {"zoo", "installed": [ids],
    "already": n, "retired": [ids], "problems": [one line each]}; a file that does
    not match its manifest entry is not installed and is named in "problems"."""
    zoo = zoo or zoo_dir()
    manifest = read_manifest(zoo)
    have = {r["id"]: r["sha256"] for r in store.prompt_rows()}
    installed, problems, already = [], [], 0
    for entry in manifest["prompts"]:
        pid, digest = entry.get("id"), entry.get("sha256")
        try:
            if have.get(pid) == digest and store.prompt_path(pid).is_file():
                already += 1
                continue
            path = entry_file(entry, zoo)
            data = path.read_bytes() if path.is_file() else None
            if data is None:
                raise PandaError(f"{entry.get('file')} is missing")
            if hashlib.sha256(data).hexdigest() != digest:
                raise PandaError(f"{entry.get('file')} does not match its sha256 in the manifest")
            meta = file_meta(path)
            if store.prompt_origin(meta) != store.ZOO:
                raise PandaError(f"{entry.get('file')} is not marked as a zoo prompt")
            if pid in have:  # same id, other bytes: replace it
                store.delete_prompt(pid)
            store.add_prompt_file(pid, data, json.loads(json.dumps(meta)) | {"prompt_id": pid})
            installed.append(pid)
        except PandaError as err:
            problems.append(f"zoo prompt {pid}: {err}")
    listed = {e.get("id") for e in manifest["prompts"]}
    retired = [r["id"] for r in store.list_prompts(origin=store.ZOO)  # only what install put there
               if r["id"].startswith("zoo.") and r["id"] not in listed]
    for pid in retired:
        store.delete_prompt(pid)
    return {"zoo": str(zoo), "installed": installed, "already": already, "retired": retired, "problems": problems}


def zoo_list(zoo: Path | None = None) -> list[dict[str, Any]]:
    """One row per zoo prompt: what it is, its scores with their interval, and
    whether it is installed and in use (not shadowed by a prompt of the user's own)."""
    zoo = zoo or zoo_dir()
    installed = {r["id"]: r for r in store.list_prompts(origin=store.ZOO)}
    rows = []
    for e in read_manifest(zoo)["prompts"]:
        in_use = False
        if e["id"] in installed:
            r = installed[e["id"]]
            chosen = store.latest_prompt(e["task"], e["backbone"], "pt", r["length"], e["prompt_type"])
            in_use = bool(chosen and chosen["id"] == e["id"])
        rows.append({"id": e["id"], "backbone": e["backbone"], "task": e["task"], "family": e["family"],
                     "prompt_type": e["prompt_type"], "dtype": e["dtype"], "bytes": e["bytes"],
                     "steps": e["config"].get("steps"), "test_acc": e["scores"]["test_acc"],
                     "test_acc_ci": e["scores"]["test_acc_ci"], "n_test": e["scores"]["n_test"],
                     "installed": e["id"] in installed, "in_use": in_use})
    return rows
