"""Many prompts at once: a folder or a .zip of prompt files (the ``folder``
and ``zip`` entries of `importers.IMPORTERS`), and how a prompt's task and
backbone are read from a manifest or from file and folder names.

- A manifest (``manifest.json`` or ``manifest.csv`` at the top) maps each file
  (or adapter folder) to its task and, optionally, its backbone; only the
  files it lists are imported. JSON: ``{"a.npy": "sst2", "b.pt": {"task":
  "imdb", "backbone": "roberta-base"}}`` or a list of ``{"file", "task",
  "backbone"}``; CSV: ``file,task[,backbone]`` rows (a header row is optional).
- Without one, every file a format claims is imported, named after Su et
  al.'s Prompt-Transferability layout ``<Task>Prompt<Model>/task_prompt``
  (``IMDBPromptRoberta`` -> task imdb, backbone roberta-base via
  `THUNLP_MODELS`) or, for other files, after the file's stem when it is a
  task's name. Files no format claims (README, .py, pickles) are skipped and listed.

A zip is checked before extraction (members, sizes, names: no absolute paths,
no ``..``, no links, no encryption) and extracted into a private temporary
folder with the byte counts enforced while copying. One bad member refuses
the whole import with one line naming it, before anything is stored.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import PandaError
from .importers import IMPORTERS, Found, PromptImporter, head_bytes, is_torch_zip, sniffable

MAX_MEMBERS = 1000  # files in a folder or zip
MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # all files together (a zip's uncompressed size)
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # one file (the prompt-file limit)
MAX_DEPTH = 8
MAX_MANIFEST_BYTES = 1024 * 1024
MANIFESTS = ("manifest.json", "manifest.csv")

#: Prompt-Transferability's model names (the part after "Prompt") -> backbone ids
THUNLP_MODELS = {
    "Roberta": "roberta-base", "RobertaLarge": "roberta-large", "Bert": "bert-base-uncased",
    "BertLarge": "bert-large-uncased", "T5": "t5-base", "T5Small": "t5-small", "T5Large": "t5-large",
    "GPT": "gpt2", "GPTMedium": "gpt2-medium", "GPTLarge": "gpt2-large",
}
#: their task names (lower-cased) that are spelled differently here
THUNLP_TASKS = {"tweetevalsentiment": "tweet_eval_sentiment", "agnews": "ag_news"}
_THUNLP_RE = re.compile(r"^(?P<task>[A-Za-z0-9_\-]+?)Prompt(?P<model>[A-Z][A-Za-z0-9]*?)(?P<variant>_[A-Za-z0-9_]*)?$")
_GENERIC_STEMS = {"task_prompt", "latest", "prompt", "best", "model", "checkpoint"}
_TEXT_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


def generic_name(path: PurePosixPath | Path) -> bool:
    """Whether a file's stem names nothing (``task_prompt``, ``latest``, ``126``): its folder does."""
    stem = path.name[: -len(path.suffix)] if path.suffix and len(path.suffix) <= 6 else path.name
    return stem.lower() in _GENERIC_STEMS or stem.isdigit()


def names_from(path: PurePosixPath | Path) -> dict:
    """Task and backbone a file's name declares: the Prompt-Transferability
    pattern in its stem or (for a generic stem like ``task_prompt``) its folder,
    else the stem as a guessed task. Keyword arguments for `Candidate`."""
    stem = path.name[: -len(path.suffix)] if path.suffix and len(path.suffix) <= 6 else path.name
    label = path.parent.name if generic_name(path) else stem
    label = label[:-4] if label.lower().endswith(".zip") else label
    match = _THUNLP_RE.match(label or "")
    if match:
        task = match.group("task").lower().replace("-", "_")
        model = match.group("model")
        out = {"task": THUNLP_TASKS.get(task, task), "task_from": f"its name ({label})",
               "extra": {"thunlp_name": label, "thunlp_model": model}}
        if match.group("variant"):
            out["extra"]["thunlp_variant"] = match.group("variant")[1:]
        if model in THUNLP_MODELS:
            out |= {"backbone": THUNLP_MODELS[model], "backbone_from": f"its name ({label})"}
        else:
            out["unknown_model"] = model
        return out
    if label and label.lower() not in _GENERIC_STEMS and not label.isdigit():
        return {"task": label.lower().replace("-", "_")[:100], "task_from": "its file name"}
    return {}


# ------------------------------------------------------------------ manifests
def _clean_member(name: object, where: str, what: str) -> str:
    """A relative POSIX path inside the bundle, or a one-line refusal."""
    if not isinstance(name, str) or not name or len(name) > 400 or not _TEXT_RE.match(name[:200]) \
            or "\\" in name or "\x00" in name:
        raise PandaError(f"{where}: {what} {str(name)[:80]!r} is not a file name in the bundle")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or not parts or ".." in parts or re.match(r"^[A-Za-z]:", name):
        raise PandaError(f"{where}: {what} {name[:80]!r} points outside the bundle (absolute or '..')")
    return "/".join(p for p in parts if p != ".")


def _text(value: object, where: str, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TEXT_RE.match(value.strip()):
        raise PandaError(f"{where}: the manifest's {what} {str(value)[:60]!r} is not a name")
    return value.strip()


def read_manifest(folder: Path, where: str) -> dict[str, dict] | None:
    """{member: {"task", "backbone"}} from the bundle's manifest, None without one."""
    found = [folder / n for n in MANIFESTS if (folder / n).is_file()]
    if not found:
        return None
    if len(found) > 1:
        raise PandaError(f"{where} has both manifest.json and manifest.csv; keep one")
    path = found[0]
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise PandaError(f"{where}: {path.name} is over 1 MB; a manifest lists files and tasks")
    try:
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix == ".json":
            data = json.loads(text)
            rows = data if isinstance(data, list) else [
                {"file": k} | (v if isinstance(v, dict) else {"task": v}) for k, v in data.items()
            ] if isinstance(data, dict) else None
        else:
            table = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
            if table and [c.strip().lower() for c in table[0][:2]] == ["file", "task"]:
                table = table[1:]
            rows = [dict(zip(("file", "task", "backbone"), (c.strip() for c in r), strict=False)) for r in table]
    except (UnicodeDecodeError, ValueError, RecursionError, csv.Error, OSError) as err:
        raise PandaError(f"{where}: {path.name} is not readable ({str(err)[:80]}); fix the manifest") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise PandaError(f"{where}: {path.name} must map files to tasks (see docs/formats.md)")
    if not rows:
        raise PandaError(f"{where}: {path.name} lists no files")
    if len(rows) > MAX_MEMBERS:
        raise PandaError(f"{where}: {path.name} lists {len(rows)} files, over the limit of {MAX_MEMBERS}")
    out: dict[str, dict] = {}
    for row in rows:
        member = _clean_member(row.get("file"), where, f"{path.name} entry")
        task = _text(row.get("task"), where, "task")
        if task is None:
            raise PandaError(f"{where}: {path.name} gives no task for '{member[:80]}'")
        if member in out:
            raise PandaError(f"{where}: {path.name} lists '{member[:80]}' twice")
        if not (folder / member).exists():
            raise PandaError(f"{where}: {path.name} names '{member[:80]}', which is not in the bundle")
        out[member] = {"task": task, "backbone": _text(row.get("backbone"), where, "backbone")}
    return out


# ------------------------------------------------------------------ folders
def _walk(folder: Path, where: str) -> tuple[list[str], list[str]]:
    """(members to try, skipped names): files and adapter folders, sorted; no links followed."""
    members, skipped = [], []
    for root, dirs, files in os.walk(folder, followlinks=False):
        rel_root = Path(root).relative_to(folder)
        if len(rel_root.parts) > MAX_DEPTH:
            raise PandaError(f"{where} nests folders deeper than {MAX_DEPTH}; import the prompts' folder itself")
        keep = []
        for d in sorted(dirs):
            rel = (rel_root / d).as_posix()
            if d.startswith(".") or d == "__MACOSX" or (Path(root) / d).is_symlink():
                skipped.append(rel + "/")
            elif (Path(root) / d / "adapter_config.json").is_file():
                members.append(rel)  # a PEFT adapter: one prompt, not descended into
            else:
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            rel = (rel_root / f).as_posix()
            if rel_root == Path() and f in MANIFESTS:
                continue
            if f.startswith(".") or (Path(root) / f).is_symlink():
                skipped.append(rel)
            else:
                members.append(rel)
        if len(members) + len(skipped) > MAX_MEMBERS:
            raise PandaError(f"{where} holds over {MAX_MEMBERS} files; import a smaller folder")
    return members, skipped


def read_bundle(folder: Path, where: str) -> Found:
    """Every prompt of a folder (a manifest's files, or every file a format
    claims); the first bad one refuses the whole bundle, naming it."""
    manifest = read_manifest(folder, where)
    members, skipped = _walk(folder, where)
    if manifest is not None:
        skipped = [m for m in members if m not in manifest] + skipped
        members = list(manifest)
    found, total = [], 0
    for member in members:
        path = folder / member
        label = f"{where}/{member}"
        entry = None if path.is_symlink() else _member_importer(path)
        if entry is None or entry.many:
            if manifest is not None:
                kind = "a folder or archive of its own" if entry is not None else "not a prompt file of a known format"
                raise PandaError(f"{label}: the manifest lists it but it is {kind}; nothing was imported")
            skipped.append(member)
            continue
        if path.is_file():
            total += path.stat().st_size
            if total > MAX_BUNDLE_BYTES:
                raise PandaError(f"{where}: its prompt files add up to over {MAX_BUNDLE_BYTES >> 20} MB")
        try:
            cands = entry.read(path, label).candidates
        except PandaError as err:
            raise PandaError(f"{err}; nothing was imported") from None
        for cand in cands:
            cand.where = label
            if manifest is not None:
                row = manifest[member]
                cand.task, cand.task_from = row["task"], "the manifest"
                if row["backbone"]:
                    cand.backbone, cand.backbone_from, cand.unknown_model = row["backbone"], "the manifest", None
        found.extend(cands)
    if not found:
        listed = f" (skipped: {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''})" if skipped else ""
        raise PandaError(f"{where} holds no prompt files{listed}; formats: safetensors, PEFT adapter "
                         "folders, .npy, torch .pt/.bin/task_prompt")
    return Found(found, skipped)


def _member_importer(path: Path) -> PromptImporter | None:
    for entry in IMPORTERS:
        if entry.claims(path):
            return entry
    return None


@IMPORTERS.add
class FolderImporter(PromptImporter):
    name, label, many = "folder", "a folder of prompt files (manifest.json/.csv, or task names from file names)", True
    limits = f"{MAX_MEMBERS} files, {MAX_DEPTH} levels, {MAX_BUNDLE_BYTES >> 20} MB in all; links not followed"

    def claims(self, path):
        return path.is_dir()

    def read(self, path, where=None):
        return read_bundle(path, where or path.name)


# ------------------------------------------------------------------ zips
def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if not name or len(name) > 400 or "\x00" in name or "\\" in name or not _TEXT_RE.match(name[:200]):
        return "has an unusable name"
    parts = PurePosixPath(name).parts
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        return "points outside the archive (absolute path or '..')"
    if len(parts) > MAX_DEPTH + 1:
        return f"is nested deeper than {MAX_DEPTH} folders"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.file_size > MAX_MEMBER_BYTES:
        return f"is {info.file_size / 2**20:.0f} MB, over the {MAX_MEMBER_BYTES >> 20} MB limit for one file"
    return None


def safe_extract(archive: Path, dest: Path, where: str) -> None:
    """Extract `archive` into `dest`, refusing (one line naming the member)
    unsafe names, links, encryption, too many members or too many bytes; the
    byte limits are enforced on what is actually decompressed."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise PandaError(f"{where} holds {len(infos)} members, over the limit of {MAX_MEMBERS}")
            if sum(i.file_size for i in infos) > MAX_BUNDLE_BYTES:
                raise PandaError(f"{where} unpacks to over {MAX_BUNDLE_BYTES >> 20} MB; import fewer prompts at once")
            seen: set[str] = set()
            total = 0
            for info in infos:
                problem = _member_problem(info)
                if problem:
                    raise PandaError(f"{where}: member {info.filename[:80]!r} {problem}; nothing was imported")
                rel = "/".join(p for p in PurePosixPath(info.filename).parts if p != ".")
                if not rel:
                    continue
                if rel.lower() in seen:
                    raise PandaError(f"{where}: member {rel[:80]!r} appears twice; nothing was imported")
                seen.add(rel.lower())
                target = dest.joinpath(*rel.split("/"))
                if not target.resolve().is_relative_to(dest.resolve()):
                    raise PandaError(f"{where}: member {rel[:80]!r} points outside the archive; nothing was imported")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                with zf.open(info) as src, open(target, "xb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        total += len(chunk)
                        if written > info.file_size or written > MAX_MEMBER_BYTES or total > MAX_BUNDLE_BYTES:
                            raise PandaError(f"{where}: member {rel[:80]!r} unpacks to more than its header says "
                                             "(a zip bomb?); nothing was imported")
                        out.write(chunk)
    except PandaError:
        raise
    except Exception as err:  # noqa: BLE001 -- BadZipFile, bad CRC, unsupported compression, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:100]
        raise PandaError(f"{where} is not a readable zip archive ({first}); nothing was imported") from None


@IMPORTERS.add
class ZipImporter(PromptImporter):
    name, label, suffixes, many = "zip", "a .zip of prompt files (laid out as a folder)", (".zip",), True
    limits = (f"{MAX_BUNDLE_BYTES >> 20} MB archive and unpacked, {MAX_MEMBERS} members, "
              f"{MAX_MEMBER_BYTES >> 20} MB per member; no '..', absolute paths, links or encryption")

    def claims(self, path):
        if not path.is_file():
            return False
        if path.suffix.lower() == ".zip":
            return True
        return sniffable(path) and head_bytes(path, 4) == b"PK\x03\x04" and not is_torch_zip(path)

    def read(self, path, where=None):
        where = where or path.name
        try:
            size = path.stat().st_size
        except OSError:
            raise PandaError(f"{where}: file not found") from None
        if size > MAX_BUNDLE_BYTES:
            raise PandaError(f"{where} is {size / 2**20:.0f} MB, over the {MAX_BUNDLE_BYTES >> 20} MB limit")
        if not zipfile.is_zipfile(path):
            raise PandaError(f"{where} is not a zip archive; give a .zip of prompt files")
        with tempfile.TemporaryDirectory(prefix="panda-import-") as tmp:
            root = Path(tmp) / "bundle"
            root.mkdir()
            safe_extract(path, root, where)
            return read_bundle(root, where)
