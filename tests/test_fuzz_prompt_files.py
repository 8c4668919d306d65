"""Property-based tests (hypothesis) of every reader of prompt files:
safetensors, PEFT adapters, numpy .npy and torch.save zips. For every
generated input the reader either loads it correctly or raises PandaError
with a one-line message - never another exception. Inputs range from random
bytes, through structurally valid files with hostile headers and values, to
valid files with single-byte damage. The task-file loaders have the same
property in test_fuzz_task_files.py.

Example counts are set so the module runs in about a minute; raise them with
PANDA_FUZZ_SCALE (e.g. 10) for a longer hunt."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from reliability_helpers import fuzz_settings, json_values, one_line_error, record
from safetensors.torch import save

from panda_core import store
from panda_core.errors import PandaError
from panda_core.ops import prompt_files as export
from panda_core.prompts.importers import read_npy, read_torch_zip
from panda_core.prompts.readouts import params_problem

# ------------------------------------------------------------------ prompt files
DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", "X", 7, None]
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1}

JSON_VALUES = json_values()
meta_fields = st.fixed_dictionaries({}, optional={
    "backbone": st.sampled_from(["minilm", "mpnet", "unknown", "", "a\nb", "x" * 400]) | JSON_VALUES,
    "task": st.sampled_from(["mr", "nope", "", "unknown"]) | JSON_VALUES,
    "method": st.sampled_from(["pt", "pot", "panda", "imported"]) | JSON_VALUES,
    "seed": st.integers(-2**70, 2**70) | JSON_VALUES,
    "steps": st.integers(0, 10**6) | JSON_VALUES,
    "scores": st.dictionaries(st.text(max_size=8), st.floats() | st.none() | st.text(max_size=3), max_size=3)
    | JSON_VALUES,
    "created": st.floats() | JSON_VALUES,
    "length": st.integers(-1, 30) | JSON_VALUES,
    "hidden_size": st.integers(-1, 800) | JSON_VALUES,
    "extra": JSON_VALUES,
    "prompt_id": st.text(max_size=20),
    "source_prompt": st.none() | st.text(max_size=20) | JSON_VALUES,
})


@st.composite
def raw_safetensors(draw) -> bytes:
    """A hand-framed safetensors file: arbitrary header entries, offsets and data."""
    header: dict = {}
    data_len = 0
    for i in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["prompt", "head.weight", "head.bias", "x", f"t{i}"]))
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(-1, 6), max_size=3) | st.just([2**40, 2**40]) | JSON_VALUES)
        n = 1
        for d in shape if isinstance(shape, list) else []:
            n *= d if isinstance(d, int) else 1
        size = max(0, n) * SIZES.get(dtype, 4) if isinstance(dtype, str) else 8
        if draw(st.booleans()):
            offsets = [data_len, data_len + size]
        else:
            offsets = draw(st.lists(st.integers(-5, 200), max_size=3) | JSON_VALUES)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
        data_len += size if size < 10_000 else 0
    if draw(st.booleans()):
        header["__metadata__"] = draw(
            st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=3) | JSON_VALUES
            | st.builds(lambda m: {"panda_meta": json.dumps(m)}, meta_fields))
    blob = json.dumps(header).encode()
    blob += b" " * draw(st.integers(0, 9))
    claimed = len(blob) if draw(st.booleans()) else draw(st.integers(0, 2**64 - 1))
    data = draw(st.binary(min_size=0, max_size=min(data_len, 4096) + 16))
    return struct.pack("<Q", claimed) + blob + data


valid_meta = st.fixed_dictionaries({"backbone": st.just("minilm"), "task": st.sampled_from(["mr", "yelp_uci"])},
                                    optional={"method": st.sampled_from(["pt", "pot", "panda", "projected"]),
                                              "seed": st.integers(0, 2**31), "steps": st.integers(0, 10**5),
                                              "scores": st.dictionaries(st.sampled_from(["dev_acc", "test_acc"]),
                                                                        st.floats(0, 1), max_size=2),
                                              "created": st.floats(1e9, 2e9), "extra": st.dictionaries(
                                                  st.text(max_size=5), st.integers(), max_size=2)})


@st.composite
def real_prompts(draw) -> bytes:
    """A genuine safetensors file from safetensors itself. Half are clean
    prompts (they must load); the rest vary dtype, shape, values (NaN/Inf,
    overflow), heads, tensor names and metadata."""
    if draw(st.booleans()):
        n = draw(st.integers(1, 24))
        t = torch.randn(n, 384) * 0.1
        tensors = {"prompt": t.to(draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16])))}
        if draw(st.booleans()):
            tensors["head.weight"] = torch.randn(2, 384)
            tensors["head.bias"] = torch.zeros(2)
        return save(tensors, metadata={"panda_meta": json.dumps(draw(valid_meta))})
    dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
                                  torch.int8, torch.bool]))
    shape = draw(st.sampled_from([(4, 384), (1, 384), (3, 8), (0, 384), (384,), (2, 4, 384), (20, 384)]))
    t = torch.randn(shape, dtype=torch.float64) * draw(st.sampled_from([1e-3, 1.0, 1e4]))
    if t.numel() and draw(st.booleans()):
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = draw(st.sampled_from([float("nan"), float("inf"),
                                                                                -float("inf"), 1e39]))
    tensors = {"prompt": t.to(dtype)}
    if draw(st.booleans()):
        c = draw(st.integers(1, 3))
        d = shape[-1] if draw(st.booleans()) else 5
        tensors["head.weight"] = torch.randn(c, d)
        if draw(st.booleans()):
            tensors["head.bias"] = torch.zeros(draw(st.sampled_from([c, c + 1])))
    if draw(st.booleans()):
        tensors["other"] = torch.zeros(2)
    if draw(st.integers(0, 3)) == 0:
        tensors = {("weights" if k == "prompt" else k): v for k, v in tensors.items()}
    meta = draw(meta_fields | valid_meta)
    metadata = {"panda_meta": json.dumps(meta)} if draw(st.integers(0, 3)) else None
    return save(tensors, metadata=metadata)


@st.composite
def damaged(draw, inner) -> bytes:
    """A file with a few bytes flipped, cut, inserted or its length field changed."""
    data = bytearray(draw(inner))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)):]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "length" and len(data) >= 8:
            data[:8] = struct.pack("<Q", draw(st.integers(0, 2**64 - 1)))
    return bytes(data)


prompt_files = st.one_of(
    st.binary(max_size=512),
    st.binary(max_size=64).map(lambda b: b"\x80\x04" + b),
    st.binary(max_size=64).map(lambda b: b"PK\x03\x04" + b),
    raw_safetensors(),
    real_prompts(),
    damaged(real_prompts()),
    damaged(raw_safetensors()),
)

COUNTS = {"prompt_files": 0, "prompt_loaded": 0, "peft": 0, "raw": 0, "raw_loaded": 0}


def _check_prompt(p) -> None:
    assert p.tensor.dim() in (2, 4) and p.tensor.dtype == torch.float32  # an input or a deep prompt
    assert p.length >= 1 and p.hidden_size >= 1 and torch.isfinite(p.tensor).all()
    assert isinstance(p.backbone, str) and isinstance(p.task, str)
    if p.head is not None and set(p.head) == {"weight", "bias"}:  # a linear head
        assert p.head["weight"].shape[1] == p.hidden_size and p.head["bias"].shape[0] == p.head["weight"].shape[0]
    elif p.head is not None:  # a registered readout's parameters, names and shapes exactly
        assert params_problem(p.head, p.hidden_size) is None
        assert all(torch.isfinite(v).all() for v in p.head.values())
    json.dumps(p.metadata(), default=str)


def test_prompt_file_reader_never_raises_anything_but_panda_error(tmp_path):
    path = tmp_path / "fuzz.safetensors"

    @fuzz_settings(1500)
    @given(prompt_files)
    def check(data: bytes) -> None:
        COUNTS["prompt_files"] += 1
        path.write_bytes(data)
        try:
            prompt = store.read_prompt_file(path)
        except PandaError as err:
            one_line_error(err)
            return
        _check_prompt(prompt)
        COUNTS["prompt_loaded"] += 1

    before = dict(COUNTS)
    check()
    _record(before)


def _record(before: dict) -> None:
    """Counts of this test only (COUNTS accumulates over the module)."""
    delta = {k: COUNTS[k] - before.get(k, 0) for k in COUNTS}
    record("fuzz", prompt_files=delta["prompt_files"] + delta["peft"] + delta["raw"],
           prompt_loaded=delta["prompt_loaded"] + delta["raw_loaded"], task_files=0, task_loaded=0)


def test_prompt_import_never_raises_anything_but_panda_error(private_cache, tmp_path):
    """The full import path (reader + backbone/task/length checks + save) on
    inputs likely to get far: only PandaError, and a success is really stored."""
    from panda_core.backbones import get_backbone

    get_backbone("minilm")
    path = tmp_path / "fuzz.safetensors"

    @fuzz_settings(300)
    @given(real_prompts() | damaged(real_prompts()), st.sampled_from([None, "minilm", "mpnet"]),
           st.sampled_from([None, "mr", "nope"]))
    def check(data: bytes, backbone, task) -> None:
        COUNTS["prompt_files"] += 1
        path.write_bytes(data)
        before = len(store.list_prompts())
        try:
            out = export.import_prompt(path, backbone=backbone, task=task)
        except PandaError as err:
            one_line_error(err)
            assert len(store.list_prompts()) == before
            return
        back = store.load_prompt(out["prompt_id"], backbone="minilm", hidden_size=384)
        _check_prompt(back)
        COUNTS["prompt_loaded"] += 1

    before = dict(COUNTS)
    check()
    _record(before)


peft_configs = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"peft_type": st.sampled_from(["PROMPT_TUNING", "LORA", 3, None])},
                          optional={"base_model_name_or_path": JSON_VALUES}).map(lambda v: json.dumps(v).encode()),
)


def test_peft_adapter_reader_never_raises_anything_but_panda_error(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()

    @fuzz_settings(300)
    @given(peft_configs, st.one_of(real_prompts(), raw_safetensors(), damaged(real_prompts()), st.binary(max_size=64))
           .map(lambda b: b.replace(b'"prompt"', b'"prompt_embeddings"', 1)))
    def check(config: bytes, weights: bytes) -> None:
        COUNTS["peft"] += 1
        (folder / "adapter_config.json").write_bytes(config)
        (folder / "adapter_model.safetensors").write_bytes(weights)
        try:
            tensor = export.peft_prompt_embeddings(folder)
        except PandaError as err:
            one_line_error(err)
            return
        assert tensor.dim() == 2 and torch.isfinite(tensor).all()

    before = dict(COUNTS)
    check()
    _record(before)


# ------------------------------------------------------------------ raw tensors (.npy, torch zips)
UNPICKLED: list[str] = []  # set if a hostile object were ever unpickled


def _unpickled() -> None:
    UNPICKLED.append("unpickled")


class _Marker:
    """An object whose unpickling would record itself in UNPICKLED."""

    def __reduce__(self):
        return (_unpickled, ())


RAW_SHAPES = [(4, 8), (1, 384), (0, 8), (8,), (2, 3, 4), (2, 2, 3, 8), (2, 3, 3, 8), (20, 384), ()]


@st.composite
def raw_arrays(draw) -> np.ndarray:
    """Random values (NaN/Inf/overflow sometimes) of a random shape."""
    shape = draw(st.sampled_from(RAW_SHAPES))
    arr = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=shape)
    arr *= draw(st.sampled_from([1e-3, 1.0, 1e4]))
    if arr.size and draw(st.booleans()):
        arr.reshape(-1)[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e39]))
    return arr


@st.composite
def npy_files(draw) -> bytes:
    """Genuine np.save output (half clean float prompts, which must load; the
    rest other dtypes, ranks, object arrays with a pickle inside), hand-framed
    headers with hostile contents, or junk after the magic."""
    kind = draw(st.sampled_from(["clean", "real", "header", "junk"]))
    buf = io.BytesIO()
    if kind == "clean":
        arr = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=(draw(st.integers(1, 24)), 384))
        np.save(buf, arr.astype(draw(st.sampled_from([np.float32, np.float16, np.float64, ">f4"]))))
        return buf.getvalue()
    if kind == "real":
        arr = draw(raw_arrays())
        dtype = draw(st.sampled_from([np.float32, np.float16, np.float64, np.int64, np.bool_, np.complex64, "O"]))
        with np.errstate(all="ignore"):
            arr = np.array([_Marker()] * max(1, arr.size), dtype=object) if dtype == "O" and draw(st.booleans()) \
                else arr.astype(dtype)
        np.save(buf, np.asfortranarray(arr) if draw(st.booleans()) else arr, allow_pickle=True)
        return buf.getvalue()
    if kind == "header":
        descr = draw(st.sampled_from(["<f4", "<f2", ">f8", "<i8", "|b1", "O", "|V8", "<f4x", "<c8", 7, None])
                     | JSON_VALUES)
        shape = draw(st.lists(st.integers(-2, 10), max_size=5).map(tuple) | st.just((2**40, 2**40)) | JSON_VALUES)
        text = repr({"descr": descr, "fortran_order": draw(st.booleans() | JSON_VALUES), "shape": shape})
        if draw(st.integers(0, 3)) == 0:
            text = draw(st.text(max_size=80))
        header = text.encode("latin-1", "replace") + b" " * draw(st.integers(0, 20)) + b"\n"
        version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
        size = struct.pack("<H" if version == (1, 0) else "<I", min(len(header), 2**16 - 1))
        return b"\x93NUMPY" + bytes(version) + size + header + draw(st.binary(max_size=400))
    return b"\x93NUMPY" + draw(st.binary(max_size=200))


@st.composite
def torch_files(draw) -> bytes:
    """Genuine torch.save zips: half a clean prompt tensor (bare or the one
    tensor of a dict/list: must load); the rest other dtypes, ranks, sparse
    tensors, containers of none or several tensors, plain values, and objects
    whose unpickling would run code (weights_only must refuse them)."""
    if draw(st.booleans()):
        t = torch.randn(draw(st.integers(1, 24)), 384).to(draw(st.sampled_from([torch.float32, torch.bfloat16])))
        obj = draw(st.sampled_from(["bare", "dict", "list", "param"]))
        obj = {"bare": t, "dict": {"model": t}, "list": [t], "param": torch.nn.Parameter(t)}[obj]
    else:
        with np.errstate(all="ignore"):
            t = torch.from_numpy(draw(raw_arrays())).to(draw(st.sampled_from(
                [torch.float32, torch.float16, torch.float64, torch.int64, torch.bool, torch.complex64])))
        choices = [t, {"a": t, "b": t.clone()}, {"a": 1, "b": "text"}, [t, _Marker()], {"p": t, "x": _Marker()},
                   3, "text", None, (t,), {"nested": {"p": t}}]
        if t.dim() == 2 and t.dtype == torch.float32:
            choices.append(t.to_sparse())
        obj = draw(st.sampled_from(choices))
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


raw_files = st.one_of(
    st.tuples(st.just("npy"), st.one_of(npy_files(), damaged(npy_files()))),
    st.tuples(st.just("torch"), st.one_of(torch_files(), damaged(torch_files()))),
    st.tuples(st.sampled_from(["npy", "torch"]), st.binary(max_size=300)
              | st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b)
              | st.binary(max_size=64).map(lambda b: b"\x80\x04" + b)),
)


def test_npy_and_torch_readers_never_raise_anything_but_panda_error(tmp_path):
    readers = {"npy": (read_npy, tmp_path / "fuzz.npy"), "torch": (read_torch_zip, tmp_path / "fuzz.pt")}

    @fuzz_settings(400)
    @given(raw_files)
    def check(case) -> None:
        kind, data = case
        reader, path = readers[kind]
        COUNTS["raw"] += 1
        path.write_bytes(data)
        try:
            tensor = reader(path)
        except PandaError as err:
            one_line_error(err)
            return
        assert tensor.dim() in (2, 4) and tensor.dtype == torch.float32 and min(tensor.shape) >= 1
        assert torch.isfinite(tensor).all() and (tensor.dim() == 2 or tensor.shape[1] == 2)
        COUNTS["raw_loaded"] += 1

    before = dict(COUNTS)
    check()
    assert not UNPICKLED, "a hostile object was unpickled"
    _record(before)


def test_generated_inputs_reach_both_outcomes():
    """Guards the generators: they must produce loadable files, not only junk
    (runs after the property tests in file order)."""
    print(f"\nfuzz inputs: {COUNTS}")
    if COUNTS["prompt_files"] == 0:
        pytest.skip("run with the property tests above")
    assert COUNTS["prompt_loaded"] > 0, COUNTS
    assert COUNTS["raw"] == 0 or COUNTS["raw_loaded"] > 0, COUNTS
