"""Prompt-file formats that can be imported, one `PromptImporter` per entry
in `IMPORTERS` (adding a format is one entry here, or in its own module that
registers itself, plus its test).

- ``safetensors``  our prompt file (`formats.read_prompt_file`)
- ``peft``         a PEFT PROMPT_TUNING adapter folder (`peft.read_peft_adapter`)
- ``peft_prefix``  a PEFT PREFIX_TUNING adapter folder, a deep prompt (`peft_prefix`)
- ``npy``          a numpy array, (n, d) or (L, 2, n, w), float
- ``torch``        a torch.save zip holding ONE tensor (Su et al.'s Prompt-Transferability
                   ``task_prompt`` files, e.g. 100 x 768 RoBERTa-base prompts)
- ``folder``, ``zip``  many prompts at once (`bundles`)

Every reader checks sizes and framing before loading anything and refuses
anything else with ONE line (`PandaError`). Nothing is unpickled: numpy reads
with ``allow_pickle=False`` and torch with ``weights_only=True`` after the
file was checked to be a plain torch zip. Readers return `Candidate`s
(a `SoftPrompt` plus what a manifest or the file's name declares); checking
them against a backbone and storing them is `ops.prompt_files`' job.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..errors import PandaError
from ..registry import Registry
from .formats import MAX_PROMPT_BYTES, checked_size
from .soft_prompt import SoftPrompt, check_tensor

if TYPE_CHECKING:
    import torch

MAX_RAW_BYTES = MAX_PROMPT_BYTES  # an .npy or torch file: 64 MB (a 100 x 4096 float32 prompt is 1.6 MB)
MAX_TORCH_MEMBERS = 64  # a torch.save zip of one tensor has about 7 records
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


@dataclass
class Candidate:
    """One prompt read from a file, not yet checked against a backbone.

    `task` / `backbone` are what a manifest or the file's name declares
    (`task_from` / `backbone_from` say which, for messages); a task guessed
    from a bare file name (`task_from == "its file name"`) only counts when it
    is a known task. `unknown_model` is a Prompt-Transferability model name
    missing from the table (`bundles.THUNLP_MODELS`)."""

    prompt: SoftPrompt
    where: str
    fmt: str
    task: str | None = None
    task_from: str = ""
    backbone: str | None = None
    backbone_from: str = ""
    unknown_model: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Found:
    """What an importer read: its candidates, and the files a bundle skipped."""

    candidates: list[Candidate]
    skipped: list[str] = field(default_factory=list)


class PromptImporter:
    """One importable format. `claims` says whether a path is of this format
    (extension first, then content); `read` reads and checks it."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()
    many: ClassVar[bool] = False  # a bundle of prompts (folder, zip)
    limits: ClassVar[str] = ""

    def claims(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.suffixes

    def read(self, path: Path, where: str | None = None) -> Found:
        raise NotImplementedError


IMPORTERS: Registry[PromptImporter] = Registry("prompt file format")


def renamed(err: PandaError, path: Path, where: str) -> PandaError:
    """`err` with the file's bare name replaced by `where` (its place in a bundle)."""
    text = str(err)
    if where == path.name:
        return err
    text = where + text[len(path.name):] if text.startswith(path.name) else f"{where}: {text}"
    return PandaError(text)


def sniffable(path: Path) -> bool:
    """A file whose extension no format claims: its content decides (an extension always wins)."""
    return path.is_file() and path.suffix.lower() not in {s for e in IMPORTERS for s in e.suffixes}


def head_bytes(path: Path, n: int = 8) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _as_prompt(tensor: torch.Tensor, where: str) -> torch.Tensor:
    """A finite float32 (n, d) or (L, 2, n, w) CPU tensor, or a one-line refusal."""
    import torch

    if tensor.layout != torch.strided or tensor.is_quantized:
        raise PandaError(f"{where}: the tensor is {str(tensor.layout).replace('torch.', '')}"
                         f"{' quantized' if tensor.is_quantized else ''}; save a dense float tensor")
    check_tensor(tensor, where=where)  # rank, float dtype, non-empty, finite
    out = tensor.detach().to("cpu", torch.float32).contiguous().clone()
    check_tensor(out, where=where)  # float64 beyond float32's range became Inf
    return out


def _raw_candidate(tensor: torch.Tensor, path: Path, where: str, fmt: str) -> Found:
    """A raw tensor (no metadata) as a PT prompt; task and backbone from the file's name."""
    from .bundles import generic_name, names_from

    if where == path.name and generic_name(path) and path.parent.name:
        where = f"{path.parent.name}/{path.name}"  # task_prompt -> IMDBPromptRoberta/task_prompt
    names = names_from(Path(where))
    prompt = SoftPrompt(tensor=tensor, backbone="unknown", task="unknown", method="pt")
    return Found([Candidate(prompt, where, fmt, **names)])


# ----------------------------------------------------------------- our files, PEFT
@IMPORTERS.add
class SafetensorsImporter(PromptImporter):
    name, label, suffixes = "safetensors", "our .safetensors prompt file", (".safetensors",)
    limits = "64 MB; header, dtypes, shapes, metadata checked byte by byte before loading"

    def read(self, path, where=None):
        from .formats import read_prompt_file

        where = where or path.name
        try:
            return Found([Candidate(read_prompt_file(path), where, self.name)])
        except PandaError as err:
            raise renamed(err, path, where) from None


def _adapter_type(folder: Path) -> object:
    """The ``peft_type`` an adapter folder's config names (None when unreadable)."""
    import json

    cfg = folder / "adapter_config.json"
    try:
        if cfg.stat().st_size > 1024 * 1024:
            return None
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data.get("peft_type") if isinstance(data, dict) else None


@IMPORTERS.add
class PeftPrefixImporter(PromptImporter):
    name, label = "peft_prefix", "PEFT PREFIX_TUNING adapter folder (a deep prompt)"
    limits = "adapter_config.json 1 MB, adapter_model.safetensors 64 MB; adapter_model.bin is never read"

    def claims(self, path):
        return path.is_dir() and _adapter_type(path) == "PREFIX_TUNING"

    def read(self, path, where=None):
        from .peft_prefix import read_prefix_adapter

        where = where or path.name
        try:
            tensor, info = read_prefix_adapter(path)
        except PandaError as err:
            raise renamed(err, path, where) from None
        meta = info.get("panda_meta") or {}
        task = meta.get("task") if isinstance(meta.get("task"), str) else "unknown"
        seed = meta.get("seed")
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) and abs(seed) < 2**63 else 0
        own = info.get("backbone") if isinstance(info.get("backbone"), str) and info.get("backbone") else "unknown"
        prompt = SoftPrompt(tensor=tensor, backbone=own[:200], task=task[:200], method="imported", seed=seed,
                            extra={"peft_base": info.get("peft_base"), "peft_type": "PREFIX_TUNING"})
        from .peft_meta import apply_sidecar

        return Found([Candidate(apply_sidecar(prompt, info.get("sidecar")), where, self.name)])


@IMPORTERS.add
class PeftImporter(PromptImporter):
    name, label = "peft", "PEFT PROMPT_TUNING adapter folder"
    limits = "adapter_config.json 1 MB, adapter_model.safetensors 64 MB; adapter_model.bin is never read"

    def claims(self, path):
        return path.is_dir() and (path / "adapter_config.json").exists()

    def read(self, path, where=None):
        from .peft import read_peft_adapter

        where = where or path.name
        try:
            return Found([Candidate(read_peft_adapter(path), where, self.name)])
        except PandaError as err:
            raise renamed(err, path, where) from None


# ----------------------------------------------------------------- raw tensors
@IMPORTERS.add
class NpyImporter(PromptImporter):
    name, label, suffixes = "npy", "numpy .npy array, float, (n, d) or (L, 2, n, w)", (".npy",)
    limits = "64 MB; header checked against the file size first; read with allow_pickle=False"

    def claims(self, path):
        return super().claims(path) or (sniffable(path) and head_bytes(path, 6) == b"\x93NUMPY")

    def read(self, path, where=None):
        where = where or path.name
        return _raw_candidate(read_npy(path, where), path, where, self.name)


def read_npy(path: Path, where: str | None = None) -> torch.Tensor:
    """The float array of an .npy file as a prompt tensor; the header (version,
    dtype, shape, and that the data fills the file exactly) is checked before
    numpy reads the data; never unpickles."""
    import numpy as np
    import torch

    where = where or path.name
    size = checked_size(path, where, MAX_RAW_BYTES, "an .npy prompt")
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                zipped = head_bytes(path, 4) == b"PK\x03\x04"
                raise PandaError(f"{where} is not an .npy file" + (" (an .npz archive? save one array with "
                                                                   "numpy.save)" if zipped else ""))
            fh.seek(0)
            version = fmt.read_magic(fh)
            if version not in ((1, 0), (2, 0)):
                raise PandaError(f"{where}: .npy format version {version} is not supported; save it with numpy.save")
            reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _fortran, dtype = reader(fh)
            start = fh.tell()
    except PandaError:
        raise
    except Exception as err:  # noqa: BLE001 -- a hostile header: any parse error is a refusal
        raise PandaError(f"{where} is not a readable .npy file ({_first_line(err)}); save it with numpy.save") from None
    if dtype.hasobject or dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise PandaError(f"{where}: array dtype {str(dtype)[:30]} is not float16/32/64; save the prompt as float32")
    if len(shape) not in (2, 4):
        raise PandaError(f"{where}: a prompt must be (tokens x hidden) for an input prompt or (layers, 2, tokens, "
                         f"width) for a deep prompt, got shape {tuple(shape)}")
    count = 1
    for d in shape:
        count *= d
    if start + count * dtype.itemsize != size:
        raise PandaError(f"{where} is not a readable .npy file (its header says {tuple(shape)} {dtype}, which "
                         f"does not fill its {size} bytes: truncated or padded); save it again")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001
        raise PandaError(f"{where} is not a readable .npy file ({_first_line(err)}); save it again") from None
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape):
        raise PandaError(f"{where} is not a readable .npy file; save it again with numpy.save")
    with np.errstate(over="ignore", invalid="ignore"):
        native = np.array(arr, dtype=np.float32 if dtype.itemsize != 8 else np.float64, order="C")
    return _as_prompt(torch.from_numpy(native), where)


@IMPORTERS.add
class TorchZipImporter(PromptImporter):
    name, label, suffixes = "torch", "torch.save zip of one tensor (Prompt-Transferability task_prompt)", \
        TORCH_SUFFIXES
    limits = "64 MB, a zip of at most 64 uncompressed records; read with weights_only=True"

    def claims(self, path):
        if not path.is_file():
            return False
        if path.suffix.lower() in self.suffixes or path.name == "task_prompt":
            return True
        return sniffable(path) and head_bytes(path, 4) == b"PK\x03\x04" and is_torch_zip(path)

    def read(self, path, where=None):
        where = where or path.name
        return _raw_candidate(read_torch_zip(path, where), path, where, self.name)


def is_torch_zip(path: Path) -> bool:
    """Whether a zip file is a torch.save archive (one top folder with data.pkl)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()[:MAX_TORCH_MEMBERS + 1]
    except Exception:  # noqa: BLE001
        return False
    return any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names)


def read_torch_zip(path: Path, where: str | None = None) -> torch.Tensor:
    """The one tensor of a torch.save zip: size, zip framing and records are
    checked, then ``torch.load(weights_only=True)`` (which refuses any object
    that is not a tensor or plain container); a bare tensor, or a dict/list
    holding exactly one tensor, is accepted."""
    import torch

    where = where or path.name
    checked_size(path, where, MAX_RAW_BYTES, "a torch prompt file")
    if not zipfile.is_zipfile(path):
        pickled = head_bytes(path, 1) == b"\x80"
        raise PandaError(f"{where} is not a torch zip archive" + (
            " (a legacy pre-1.6 torch.save pickle, which is never loaded): re-save it with torch.save on torch "
            "1.6+, or as .npy/.safetensors" if pickled else "; give a torch.save file of one tensor"))
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_TORCH_MEMBERS:
                raise PandaError(f"{where} holds {len(infos)} records; a torch file of one prompt holds a few")
            if not any(i.filename.count("/") == 1 and i.filename.endswith("/data.pkl") for i in infos):
                raise PandaError(f"{where} is a zip but not a torch.save file (no data.pkl); give a torch.save "
                                 "file of one tensor, or import the .zip as a bundle of prompts")
            if any(i.compress_type != zipfile.ZIP_STORED or i.flag_bits & 0x1 for i in infos):
                raise PandaError(f"{where} has compressed or encrypted records, which torch.save never writes; "
                                 "save the tensor again with torch.save")
            if sum(i.file_size for i in infos) > MAX_RAW_BYTES:
                raise PandaError(f"{where}: its records claim over {MAX_RAW_BYTES >> 20} MB; save the tensor again")
    except PandaError:
        raise
    except Exception as err:  # noqa: BLE001 -- BadZipFile, OSError, ...: a damaged zip
        raise PandaError(f"{where} is not a readable torch file ({_first_line(err)}); save it again") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- any failure of a hostile file is a refusal
        if type(err).__name__ == "UnpicklingError":
            raise PandaError(f"{where} holds objects other than tensors, which are never loaded (weights_only); "
                             "save the prompt tensor alone with torch.save(tensor, path)") from None
        raise PandaError(f"{where} is not a readable torch file ({_first_line(err)}); save it again") from None
    return _as_prompt(_one_tensor(obj, where), where)


def _one_tensor(obj: object, where: str) -> torch.Tensor:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, dict | list | tuple):
        values = list(obj.values()) if isinstance(obj, dict) else list(obj)
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
        kind = type(obj).__name__
        if tensors:
            raise PandaError(f"{where} holds a {kind} of {len(tensors)} tensors; a prompt file holds one (save the "
                             "prompt tensor alone)")
        raise PandaError(f"{where} holds a {kind} without a tensor at its top level; save the prompt tensor alone")
    raise PandaError(f"{where} holds a {type(obj).__name__[:40]}, not a tensor; save the prompt tensor alone")


def _first_line(err: BaseException) -> str:
    return ((str(err).strip().splitlines() or [type(err).__name__])[0])[:100]


def importer_for(path: Path) -> PromptImporter:
    """The importer of `path`: the first entry that claims it (extension, then
    content); a file nobody claims goes to our safetensors reader, whose
    refusals name what it found (a pickle, a zip, ...)."""
    for entry in IMPORTERS:
        if entry.claims(path):
            return entry
    if path.is_dir():
        return IMPORTERS.get("folder")
    return IMPORTERS.get("safetensors")


def formats_line() -> str:
    """One line naming every importable format (for messages and the app)."""
    return "; ".join(f"{e.name}: {e.label}" for e in IMPORTERS)


from . import bundles as _bundles  # noqa: E402,F401 -- registers the folder and zip importers
