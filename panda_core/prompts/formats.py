"""Prompt file formats and their checks: our safetensors prompt file.

Files come from users (uploads, `import`), so nothing in them is trusted:
`inspect_safetensors` validates the framing byte by byte before any tensor is
loaded, `read_prompt_file` then type-checks tensors and metadata. Every
problem is a one-line PandaError. Never unpickles. The store writes and
registers files; this module only reads and checks them (it must not import
the store: the store imports it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from ..errors import PandaError
from .soft_prompt import SoftPrompt, check_tensor

if TYPE_CHECKING:
    import torch

MAX_PROMPT_BYTES = 64 * 1024 * 1024  # a 20 x 4096 float32 prompt is 320 KB
MAX_HEADER_BYTES = 1024 * 1024
MAX_TENSORS = 64
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
ALL_DTYPES = FLOAT_DTYPES | {"I8": 1, "U8": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4, "I64": 8, "U64": 8,
                             "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_CONVERT_HINT = "convert it with safetensors.torch.save_file({'prompt': tensor.float()}, path)"
_TEXT_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,300}$")


def checked_size(path: Path, where: str, limit: int, what: str) -> int:
    """The size in bytes of a file about to be read as `what`, refused in one
    line when it is missing, not a regular file, or over `limit` - checked
    before a byte is read, so a wrong or huge file costs nothing."""
    try:
        size = path.stat().st_size
    except OSError:
        raise PandaError(f"{where}: file not found") from None
    if not path.is_file():
        raise PandaError(f"{where} is not a file; give {what}")
    if size > limit:
        raise PandaError(f"{where} is {size / 2**20:.0f} MB, over the {limit >> 20} MB limit for {what}; "
                         "a prompt is far smaller, so check that this is the right file")
    return size


def inspect_safetensors(path: Path, max_bytes: int = MAX_PROMPT_BYTES) -> tuple[dict, dict]:
    """Validate a safetensors file's framing without loading tensors or
    trusting anything in it. Returns ({name: {"dtype", "shape", ...}}, metadata).

    Refuses (one-line PandaError) pickles, torch.save zips, truncated files,
    absurd header lengths, malformed headers, unknown dtypes and tensors whose
    byte ranges do not add up."""
    path = Path(path)
    name = path.name
    size = checked_size(path, name, max_bytes, "a .safetensors prompt file")
    with open(path, "rb") as fh:
        head = fh.read(9)
        n = int.from_bytes(head[:8], "little")
        plausible = len(head) == 9 and head[8:9] == b"{" and 8 + n <= size
        if not plausible and head[:4] == b"PK\x03\x04":
            raise PandaError(f"{name} is a zip/torch.save file, which could run code when loaded; only "
                             f"safetensors prompts are accepted: {_CONVERT_HINT}")
        if not plausible and head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise PandaError(f"{name} looks like a pickle/torch.save file, which could run code when loaded; "
                             f"only safetensors prompts are accepted: {_CONVERT_HINT}")
        if len(head) < 9:
            raise PandaError(f"{name} is not a readable safetensors file (only {size} bytes: truncated or empty); "
                             "export the prompt again")
        fh.seek(8)
        if n > MAX_HEADER_BYTES:
            raise PandaError(f"{name} is not a readable safetensors file (its header claims {n} bytes); "
                             "it is corrupt or another format: export the prompt again")
        if 8 + n > size:
            raise PandaError(f"{name} is not a readable safetensors file (truncated: header of {n} bytes, file of "
                             f"{size}); copy or export it again")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PandaError(f"{name} is not a readable safetensors file (its header is not JSON); "
                         "export the prompt again") from None
    if not isinstance(header, dict):
        raise PandaError(f"{name} is not a readable safetensors file (header is not an object); export it again")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise PandaError(f"{name} is not a readable safetensors file (its metadata must map text to text); "
                         "export it again")
    if len(header) > MAX_TENSORS:
        raise PandaError(f"{name} holds {len(header)} tensors; a prompt file holds a prompt (and a head)")
    data_len = size - 8 - n
    spans = []
    for key, info in header.items():
        bad = f"{name} is not a readable safetensors file (tensor {key[:40]!r} is malformed); export it again"
        if not isinstance(info, dict):
            raise PandaError(bad)
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in ALL_DTYPES:
            raise PandaError(f"{name}: tensor {key[:40]!r} has unknown dtype {str(dtype)[:20]!r}; "
                             "save the prompt as float32")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
            raise PandaError(bad)
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise PandaError(bad)
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
        if not 0 <= begin <= end <= data_len or end - begin != count * ALL_DTYPES[dtype]:
            raise PandaError(f"{name} is not a readable safetensors file (tensor {key[:40]!r} does not fit in the "
                             "file: truncated or corrupt); export it again")
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise PandaError(f"{name} is not a readable safetensors file (overlapping or missing tensor data); "
                             "export it again")
        pos = end
    if pos != data_len:
        raise PandaError(f"{name} is not a readable safetensors file ({data_len - pos} stray bytes after the "
                         "tensors); export it again")
    return header, meta


_META_TYPES: dict[str, tuple[type, ...]] = {
    "backbone": (str,), "task": (str,), "method": (str,), "seed": (int,), "steps": (int,),
    "source_prompt": (str, type(None)), "scores": (dict,), "created": (int, float), "code_version": (str,),
    "extra": (dict,),
}


def _clean_meta(meta: dict, name: str, tensor) -> dict:
    """The provenance fields a SoftPrompt takes, type-checked; refuses
    metadata that contradicts the tensor."""
    out: dict[str, Any] = {}
    for key, types in _META_TYPES.items():
        if key not in meta:
            continue
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise PandaError(f"{name}: metadata field '{key}' has the wrong type ({type(value).__name__}); "
                             "export the prompt again")
        if key in ("backbone", "task", "method") and not _TEXT_RE.match(value):
            raise PandaError(f"{name}: metadata field '{key}' is empty, too long or has control characters; "
                             "export the prompt again")
        if key in ("seed", "steps") and abs(value) >= 2**63:
            raise PandaError(f"{name}: metadata field '{key}' is out of range; export the prompt again")
        if key == "created" and not (0 <= value < 1e11):
            raise PandaError(f"{name}: metadata field 'created' is not a time; export the prompt again")
        out[key] = value
    if "scores" in out and not all(isinstance(k, str) and (v is None or isinstance(v, (int, float)))
                                   for k, v in out["scores"].items()):
        raise PandaError(f"{name}: metadata 'scores' must map names to numbers; export the prompt again")
    from .types import prompt_type_of

    kind = prompt_type_of(tensor).name
    if meta.get("prompt_type", kind) != kind:
        raise PandaError(f"{name}: metadata says a {str(meta['prompt_type'])[:20]} prompt but the tensor "
                         f"{tuple(tensor.shape)} is a {kind} prompt (file edited or corrupt); export the prompt again")
    for key, actual in (("length", tensor.shape[-2]), ("hidden_size", tensor.shape[-1])):
        if key in meta and meta[key] != actual:
            raise PandaError(f"{name}: metadata says {key} {str(meta[key])[:20]} but the tensor has {actual} "
                             "(file edited or corrupt); export the prompt again")
    return out


def read_prompt_file(path: Path) -> SoftPrompt:
    """Read a safetensors prompt file, validating everything; never unpickles.

    Every problem (not safetensors, a pickle or zip, truncated, wrong dtype,
    NaN/Inf, metadata that contradicts the tensor, ...) is a one-line PandaError."""
    from safetensors.torch import load_file

    path = Path(path)
    header, raw_meta = inspect_safetensors(path)
    if "prompt" not in header:
        names = ", ".join(sorted(k[:40] for k in header)[:8]) or "none"
        raise PandaError(f"{path.name} has no 'prompt' tensor (found: {names}); save the prompt under the key 'prompt'")
    info = header["prompt"]
    if info["dtype"] not in FLOAT_DTYPES:
        raise PandaError(f"{path.name}: prompt dtype {info['dtype']} is not a float type; save it as float32")
    if len(info["shape"]) not in (2, 4):
        raise PandaError(f"{path.name}: a prompt must be (tokens x hidden) for an input prompt or (layers, 2, "
                         f"tokens, width) for a deep prompt, got shape {tuple(info['shape'])}")
    for key, hinfo in header.items():
        if key.startswith("head.") and hinfo["dtype"] not in FLOAT_DTYPES:
            raise PandaError(f"{path.name}: head tensor '{key[5:45]}' has dtype {hinfo['dtype']}; save it as float32")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise PandaError(f"{path.name} is not a readable safetensors file ({first}); export the prompt again") from None
    tensor = tensors["prompt"]
    check_tensor(tensor, where=path.name)
    tensor = tensor.float()  # float64 values beyond float32's range become Inf: check again
    check_tensor(tensor, where=path.name)
    try:
        meta = json.loads(raw_meta.get("panda_meta", "{}"))
    except (ValueError, RecursionError):
        raise PandaError(f"{path.name}: its panda_meta metadata is not JSON; export the prompt again") from None
    if not isinstance(meta, dict):
        raise PandaError(f"{path.name}: its panda_meta metadata is not a JSON object; export the prompt again")
    kwargs = _clean_meta(meta, path.name, tensor)
    head = {k[5:]: v.float() for k, v in tensors.items() if k.startswith("head.")} or None
    check_head(head, tensor, path.name)
    kwargs.setdefault("backbone", "unknown")
    kwargs.setdefault("task", "unknown")
    return SoftPrompt(tensor=tensor, head=head, **kwargs)


def check_head(head: dict[str, torch.Tensor] | None, tensor: torch.Tensor, name: str) -> None:
    """Refuse (one line) stored head tensors that fit neither a readout's
    parameters (class vectors, the pair head) nor a linear head over the
    prompt's features, or that are not finite. Shared by our prompt files and
    the head our PEFT exports carry beside the adapter (`peft_meta`)."""
    import torch

    if head is None:
        return
    if set(head) != {"weight", "bias"}:  # a readout's parameters (class vectors, pair head)
        from .readouts import params_problem

        problem = params_problem(head, tensor.shape[-1])
        if problem:
            raise PandaError(f"{name}: {problem}; export the prompt again")
        if not all(torch.isfinite(v).all() for v in head.values()):
            raise PandaError(f"{name}: its readout parameters contain NaN or Inf values; retrain or re-export it")
        return
    w, b = head["weight"], head["bias"]
    if (w.dim() != 2 or b.dim() != 1 or w.shape[0] != b.shape[0]
            or (tensor.dim() == 2 and w.shape[1] != tensor.shape[1]) or w.shape[0] < 1):
        raise PandaError(f"{name}: its head must be weight (classes x {tensor.shape[-1]}) and bias "
                         "(classes); export the prompt again")
    if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
        raise PandaError(f"{name}: its head contains NaN or Inf values; retrain or re-export it")
