"""Where the zoo lives and what a consistent zoo is.

The zoo is a folder in the repository (`zoo/`, or `$PANDA_ZOO_DIR`): one
safetensors prompt file per prompt under ``prompts/<backbone>/<type>/<task>.safetensors``,
``MANIFEST.json`` listing every file with its checksum, size, scores and
provenance, and ``bundle.json``, the study bundle. It lives at the
repository's root, not inside the package, because it is data the project
produced (like docs/results/), read from a clone (`make setup`), and kept
out of the library's import path and of any wheel.

A zoo file is an ordinary prompt file (`prompts.formats.read_prompt_file`
reads it): its ``panda_meta`` carries ``extra.origin = "zoo"`` and, under
``extra.zoo``, its provenance (command, commit, seed, budget, readout,
prompt type, backbone, task) and its scores with their intervals.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import PandaError
from ..paths import REPO_ROOT

ENV = "PANDA_ZOO_DIR"  # another zoo folder (tests use a temporary one)
MANIFEST = "MANIFEST.json"
BUNDLE = "bundle.json"
SCHEMA = 1
#: the zoo folder's budget in bytes: prompt files, manifest and bundle together
SIZE_BUDGET = 15 * 2**20
#: the test items whose per-item correctness each entry records, for the slow re-scoring test
CHECK_ITEMS = 200
#: what every zoo file's provenance (``extra.zoo`` of its metadata) holds
PROVENANCE_KEYS = ("command", "commit", "seed", "budget", "readout", "prompt_type", "backbone", "task", "scores",
                   "stored")
#: the scores every entry carries, with their intervals
SCORE_KEYS = ("test_acc", "test_acc_ci", "n_test", "majority_test_acc", "dev_acc")
#: what every manifest entry holds
ENTRY_KEYS = ("id", "file", "sha256", "bytes", "backbone", "task", "family", "prompt_type", "dtype", "config",
              "readout", "seed", "scores", "stored", "check", "provenance")

_SAFE = re.compile(r"[^A-Za-z0-9_]+")


def zoo_dir() -> Path:
    """The zoo folder: `$PANDA_ZOO_DIR`, else `zoo/` at the repository's root (not created here)."""
    return Path(os.environ.get(ENV) or REPO_ROOT / "zoo").expanduser().resolve()


def manifest_path(zoo: Path | None = None) -> Path:
    return (zoo or zoo_dir()) / MANIFEST


def empty_manifest() -> dict[str, Any]:
    return {"schema": SCHEMA, "size_budget_bytes": SIZE_BUDGET, "total_bytes": 0, "prompts": []}


def read_manifest(zoo: Path | None = None) -> dict[str, Any]:
    """The manifest ({"schema", "size_budget_bytes", "total_bytes", "prompts": [entry]});
    an empty one when the zoo has none yet. A malformed one is refused in one line."""
    path = manifest_path(zoo)
    if not path.is_file():
        return empty_manifest()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PandaError(f"the zoo manifest {path} is unreadable ({str(err)[:80]}); restore it from git") from None
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), list):
        raise PandaError(f"the zoo manifest {path} has no 'prompts' list; restore it from git")
    if data.get("schema", SCHEMA) > SCHEMA:
        raise PandaError(f"the zoo manifest {path} is of a newer layout ({data['schema']}); update the tool")
    return data


def write_manifest(manifest: dict[str, Any], zoo: Path | None = None) -> Path:
    """Write the manifest (entries sorted by backbone, type, task; totals updated), atomically."""
    zoo = zoo or zoo_dir()
    entries = sorted(manifest["prompts"], key=lambda e: (e["backbone"], e["prompt_type"], e["family"], e["task"]))
    out = empty_manifest() | {k: v for k, v in manifest.items() if k not in ("prompts", "total_bytes")}
    out["prompts"] = entries
    out["total_bytes"] = sum(int(e["bytes"]) for e in entries)
    path = manifest_path(zoo)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(out, indent=1, sort_keys=True) + "\n")
    return path


def relative_file(backbone: str, prompt_type: str, task: str) -> str:
    """Where an entry's file goes, relative to the zoo folder."""
    parts = [_SAFE.sub("_", x)[:60] or "x" for x in (backbone, prompt_type, task)]
    return f"prompts/{parts[0]}/{parts[1]}/{parts[2]}.safetensors"


def zoo_id(backbone: str, prompt_type: str, task: str, digest: str) -> str:
    """The prompt id of a zoo file in the cache: readable, and naming its content
    (a rebuilt prompt gets a new id, so runs that read the old one never see it change)."""
    parts = [_SAFE.sub("_", x)[:40] or "x" for x in (backbone, prompt_type, task)]
    return f"zoo.{parts[0]}.{parts[1]}.{parts[2]}.{digest[:10]}"


def entry_file(entry: dict[str, Any], zoo: Path | None = None) -> Path:
    """An entry's file, refusing a manifest path that leaves the zoo folder."""
    zoo = (zoo or zoo_dir()).resolve()
    path = (zoo / str(entry.get("file", ""))).resolve()
    if zoo not in path.parents or path.suffix != ".safetensors":
        raise PandaError(f"zoo entry {entry.get('id')!r} names a file outside the zoo ({entry.get('file')!r})")
    return path


def file_meta(path: Path) -> dict[str, Any]:
    """The ``panda_meta`` of a prompt file's header, read without loading tensors."""
    from ..prompts.formats import inspect_safetensors

    _, raw = inspect_safetensors(path)
    try:
        meta = json.loads(raw.get("panda_meta", "{}"))
    except ValueError:
        raise PandaError(f"{path.name}: its panda_meta metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise PandaError(f"{path.name}: its panda_meta metadata is not an object")
    return meta


def entry_problems(entry: dict[str, Any], zoo: Path | None = None, full: bool = True) -> list[str]:
    """What is wrong with one manifest entry and its file (empty: consistent).

    Checks the entry's keys, that its file exists with the recorded size and
    sha256, and (with `full`) that the file's metadata marks it as a zoo
    prompt, carries the provenance and scores, and agrees with the entry."""
    name = str(entry.get("id", "?"))
    missing = [k for k in ENTRY_KEYS if k not in entry]
    if missing:
        return [f"{name}: manifest entry lacks {', '.join(missing)}"]
    try:
        path = entry_file(entry, zoo)
    except PandaError as err:
        return [str(err)]
    if not path.is_file():
        return [f"{name}: file {entry['file']} is missing"]
    problems = []
    if path.stat().st_size != int(entry["bytes"]):
        problems.append(f"{name}: {entry['file']} is {path.stat().st_size} bytes, the manifest says {entry['bytes']}")
    if atomic.sha256_file(path) != entry["sha256"]:
        problems.append(f"{name}: {entry['file']} does not match its sha256 in the manifest")
    if not full or problems:
        return problems
    try:
        meta = file_meta(path)
    except PandaError as err:
        return [f"{name}: {err}"]
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    prov = extra.get("zoo") if isinstance(extra.get("zoo"), dict) else {}
    if extra.get("origin") != "zoo":
        problems.append(f"{name}: its metadata does not mark it as a zoo prompt (extra.origin)")
    lacking = [k for k in PROVENANCE_KEYS if k not in prov]
    if lacking:
        problems.append(f"{name}: its provenance lacks {', '.join(lacking)}")
    scores = prov.get("scores") if isinstance(prov.get("scores"), dict) else {}
    lacking = [k for k in SCORE_KEYS if k not in scores] + [k for k in SCORE_KEYS if k not in entry["scores"]]
    if lacking:
        problems.append(f"{name}: its scores lack {', '.join(sorted(set(lacking)))}")
    for key in ("backbone", "task", "prompt_type"):
        if meta.get(key) != entry[key] or prov.get(key) != entry[key]:
            problems.append(f"{name}: the file's {key} ({meta.get(key)!r}) is not the manifest's ({entry[key]!r})")
    if prov.get("budget") != entry["config"]:
        problems.append(f"{name}: the file's budget is not the manifest's config")
    check = entry["check"]
    if not (isinstance(check, dict) and isinstance(check.get("items"), str) and len(check["items"]) == check.get("n")
            and check["items"].count("1") == check.get("correct")):
        problems.append(f"{name}: its check items are inconsistent (n, correct, items)")
    return problems


def zoo_problems(zoo: Path | None = None, full: bool = True) -> list[str]:
    """Every inconsistency of the zoo: its entries, files no entry names, ids
    named twice, and a total over `SIZE_BUDGET`."""
    zoo = zoo or zoo_dir()
    manifest = read_manifest(zoo)
    problems: list[str] = []
    ids = [e.get("id") for e in manifest["prompts"]]
    problems += [f"id {i} is listed twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    for entry in manifest["prompts"]:
        problems += entry_problems(entry, zoo, full)
    named = {str(entry_file(e, zoo)) for e in manifest["prompts"] if "file" in e}
    for f in sorted((zoo / "prompts").rglob("*.safetensors")) if (zoo / "prompts").is_dir() else []:
        if str(f.resolve()) not in named:
            problems.append(f"{f.relative_to(zoo)} is in the zoo but not in its manifest")
    total = folder_bytes(zoo)
    if total > SIZE_BUDGET:
        problems.append(f"the zoo holds {total / 2**20:.1f} MB, over its budget of {SIZE_BUDGET / 2**20:.0f} MB")
    return problems


def folder_bytes(zoo: Path | None = None) -> int:
    """Bytes of every file in the zoo folder (what the size budget counts)."""
    zoo = zoo or zoo_dir()
    return sum(f.stat().st_size for f in zoo.rglob("*") if f.is_file()) if zoo.is_dir() else 0
