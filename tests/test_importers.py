"""Prompt-file importers (`panda_core.prompts.importers`, `bundles`,
`ops.import_prompt`): every format imports; every bad variant is refused in
one line with the cache unchanged; prompts of a backbone that is not
installed (RoBERTa-base, as Su et al. publish them) are stored and usable by
the embedding indicators and the cluster view, while model work on them is
refused naming the backbone. No test here loads a real model (the one
installed-backbone check uses the tiny random fixture)."""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_helpers import one_line_error, record, snapshot
from safetensors.torch import save, save_file

from panda_core import store
from panda_core.cli import main as cli_main
from panda_core.errors import PandaError
from panda_core.ops import import_prompt
from panda_core.prompts.importers import IMPORTERS, importer_for

FOREIGN = "roberta-base"


class _Evil:
    """Unpickling this would create a sentinel file: proves nothing unpickles."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


def _thunlp(root: Path, name: str, tensor: torch.Tensor) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    torch.save(tensor, root / name / "task_prompt")
    return root / name / "task_prompt"


def _npy(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr, allow_pickle=True)  # object arrays need it: the reader must refuse them
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# ------------------------------------------------------------------ the registry
def test_registry_names_every_format_and_dispatches_by_extension_and_content(tmp_path):
    assert IMPORTERS.names() == ["safetensors", "peft_prefix", "peft", "npy", "torch", "folder", "zip"]
    assert all(e.label and e.limits for e in IMPORTERS)
    plain = tmp_path / "plain"
    np.save(tmp_path / "a.npy", np.zeros((2, 3), np.float32))
    (tmp_path / "a.npy").rename(plain)
    assert importer_for(plain).name == "npy"  # content: the numpy magic
    prompt = _thunlp(tmp_path, "IMDBPromptRoberta", torch.zeros(2, 3))
    assert importer_for(prompt).name == "torch"  # the name task_prompt
    renamed = tmp_path / "noext"
    renamed.write_bytes(prompt.read_bytes())
    assert importer_for(renamed).name == "torch"  # content: a zip with data.pkl
    bundle = _zip(tmp_path / "bundle", {"x.npy": b"1"})
    assert importer_for(bundle).name == "zip"  # content: a zip without data.pkl
    assert importer_for(tmp_path / "IMDBPromptRoberta").name == "folder"
    assert importer_for(tmp_path / "x.safetensors").name == "safetensors"
    assert importer_for(tmp_path / "x.pt").name == "safetensors"  # absent: our reader says so


# ------------------------------------------------------------------ each format imports
def test_each_format_imports(private_cache, tmp_path, no_models):
    rng = torch.Generator().manual_seed(0)
    t = torch.randn(100, 768, generator=rng)
    out = import_prompt(_npy(tmp_path / "sst2.npy", t.numpy()), backbone=FOREIGN)
    assert (out["format"], out["task"], out["backbone"], out["length"], out["hidden_size"], out["installed"]) == \
        ("npy", "sst2", FOREIGN, 100, 768, False)
    assert torch.equal(store.load_prompt(out["prompt_id"]).tensor, t)
    assert out["method"] == "pt"  # a raw tensor of a backbone not installed is its task's published prompt
    half = import_prompt(_npy(tmp_path / "h.npy", t.numpy().astype(np.float16)), backbone=FOREIGN, task="mnli")
    assert half["task"] == "mnli"
    deep = import_prompt(_npy(tmp_path / "rte.npy", np.random.randn(12, 2, 5, 768)), backbone=FOREIGN)
    assert deep["prompt_type"] == "deep" and deep["length"] == 5

    th = import_prompt(_thunlp(tmp_path / "emb", "IMDBPromptRoberta", t))
    assert (th["format"], th["task"], th["backbone"], th["file"]) == ("torch", "imdb", FOREIGN,
                                                                     "IMDBPromptRoberta/task_prompt")
    meta = json.loads(store.prompt_path(th["prompt_id"]).with_suffix(".json").read_text())
    assert meta["extra"]["thunlp_model"] == "Roberta" and meta["extra"]["original_format"] == "torch"
    for i, obj in enumerate(({"model": t}, [t], (t, "note"), torch.nn.Parameter(t))):
        (tmp_path / f"qnli{i}.pt").write_bytes(_torch_bytes(obj))
        assert import_prompt(tmp_path / f"qnli{i}.pt", backbone=FOREIGN, task="qnli")["format"] == "torch"
    large = import_prompt(_thunlp(tmp_path / "emb", "SST2PromptRobertaLarge", torch.randn(100, 1024)))
    assert large["backbone"] == "roberta-large"

    ours = tmp_path / "ours.safetensors"
    ours.write_bytes(save({"prompt": t[:4].contiguous()},
                          metadata={"panda_meta": json.dumps({"backbone": FOREIGN, "task": "sst2"})}))
    assert import_prompt(ours, backbone=FOREIGN)["format"] == "safetensors"

    peft = tmp_path / "peft"
    peft.mkdir()
    (peft / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING",
                                                          "base_model_name_or_path": FOREIGN}))
    save_file({"prompt_embeddings": t[:8].contiguous()}, str(peft / "adapter_model.safetensors"))
    assert import_prompt(peft, backbone=FOREIGN, task="sst2")["format"] == "peft"

    prefix = tmp_path / "prefix"
    prefix.mkdir()
    (prefix / "adapter_config.json").write_text(json.dumps({
        "peft_type": "PREFIX_TUNING", "num_virtual_tokens": 3, "num_layers": 12, "token_dim": 768,
        "num_attention_heads": 12, "num_transformer_submodules": 1}))
    save_file({"prompt_embeddings": torch.randn(3, 12 * 2 * 768)}, str(prefix / "adapter_model.safetensors"))
    back = import_prompt(prefix, backbone=FOREIGN, task="sst2")
    assert (back["format"], back["prompt_type"], back["length"]) == ("peft_prefix", "deep", 3)


def test_an_installed_backbone_still_gets_its_hidden_size_check(private_cache, tmp_path):
    out = import_prompt(_npy(tmp_path / "mr.npy", np.random.randn(3, 64).astype(np.float32)), backbone="tiny-mlm")
    assert out["backbone"] == "tiny-mlm" and out["installed"] is True
    assert out["method"] == "imported"  # never displaces a prompt trained here as the task's prompt
    before = snapshot(private_cache)
    with pytest.raises(PandaError, match="hidden size 65") as err:
        import_prompt(_npy(tmp_path / "mr2.npy", np.random.randn(3, 65).astype(np.float32)), backbone="tiny-mlm",
                      task="mr")
    one_line_error(err.value)
    assert snapshot(private_cache) == before


def test_folders_and_zips_of_many_prompts(private_cache, tmp_path, no_models):
    emb = tmp_path / "task_prompt_emb"
    for name in ("IMDBPromptRoberta", "MNLIPromptRoberta", "QNLIPromptRoberta_mlm_s1"):
        _thunlp(emb, name, torch.randn(100, 768))
    (emb / "README.md").write_text("notes")
    (emb / "126.pkl").write_bytes(pickle.dumps(_Evil(tmp_path / "PWNED")))
    out = import_prompt(emb)
    assert out["format"] == "folder" and len(out["prompt_ids"]) == 3
    assert sorted(p["task"] for p in out["prompts"]) == ["imdb", "mnli", "qnli"]
    assert set(out["skipped"]) == {"README.md", "126.pkl"} and not (tmp_path / "PWNED").exists()

    # a zip with a CSV manifest: tasks and backbones from it, other files ignored
    data = _torch_bytes(torch.randn(100, 768))
    manifest = "file,task,backbone\na/p1.pt,sst2,roberta-base\nb.npy,rte,roberta-base\n"
    buf = io.BytesIO()
    np.save(buf, np.random.randn(100, 768).astype(np.float32))
    bundle = _zip(tmp_path / "many.zip", {"manifest.csv": manifest.encode(), "a/p1.pt": data,
                                          "b.npy": buf.getvalue(), "c.txt": b"x"})
    out = import_prompt(bundle)
    assert out["format"] == "zip" and [p["task"] for p in out["prompts"]] == ["sst2", "rte"]
    assert out["prompts"][0]["file"] == "many.zip/a/p1.pt" and out["skipped"] == ["c.txt"]
    # a JSON manifest, in a folder, with --backbone as the default
    folder = tmp_path / "jsonned"
    folder.mkdir()
    np.save(folder / "one.npy", np.random.randn(10, 768).astype(np.float32))
    (folder / "manifest.json").write_text(json.dumps({"one.npy": {"task": "mrpc"}}))
    out = import_prompt(folder, backbone=FOREIGN)
    assert out["prompts"][0]["task"] == "mrpc" and out["prompts"][0]["backbone"] == FOREIGN


# ------------------------------------------------------------------ bad inputs
def _bad_cases(d: Path) -> list[tuple[str, Path, dict, str]]:
    good = np.random.randn(4, 768).astype(np.float32)
    fb = {"backbone": FOREIGN, "task": "sst2"}
    cases: list[tuple[str, Path, dict, str]] = []

    def add(what, path, kwargs, message):
        cases.append((what, path, kwargs, message))

    add("npy int dtype", _npy(d / "int.npy", np.ones((4, 768), np.int64)), fb, "not float16/32/64")
    add("npy complex dtype", _npy(d / "cplx.npy", good.astype(np.complex64)), fb, "not float16/32/64")
    add("npy object array (a pickle inside)", _npy(d / "obj.npy", np.array([_Evil(d / "PWNED")], dtype=object)), fb,
        "not float16/32/64")
    add("npy rank 3", _npy(d / "r3.npy", good[None]), fb, "got shape")
    add("npy rank 1", _npy(d / "r1.npy", good[0]), fb, "got shape")
    add("npy empty", _npy(d / "e.npy", np.zeros((0, 768), np.float32)), fb, "empty prompt")
    nan = good.copy()
    nan[0, 0] = np.nan
    add("npy NaN", _npy(d / "nan.npy", nan), fb, "NaN or Inf")
    add("npy beyond float32", _npy(d / "big.npy", good.astype(np.float64) * 1e39), fb, "NaN or Inf")
    full = (d / "int.npy").read_bytes()
    (d / "trunc.npy").write_bytes(_npy(d / "ok.npy", good).read_bytes()[:-10])
    add("npy truncated", d / "trunc.npy", fb, "does not fill")
    claim = io.BytesIO()
    np.lib.format.write_array_header_1_0(claim, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (9999999, 99999)})
    (d / "claim.npy").write_bytes(claim.getvalue() + b"\0" * 64)
    add("npy header claiming 8 TB", d / "claim.npy", fb, "does not fill")
    np.savez(d / "arch.npz", a=good)
    (d / "arch.npy").write_bytes((d / "arch.npz").read_bytes())
    add("npz renamed .npy", d / "arch.npy", fb, "npz")
    add("npy deep prompt of the wrong shape", _npy(d / "deep.npy", np.ones((12, 3, 5, 768), np.float32)), fb,
        "keys and values")

    (d / "evil.pt").write_bytes(_torch_bytes({"prompt": torch.zeros(2, 768), "x": _Evil(d / "PWNED")}))
    add("torch zip with a pickled object", d / "evil.pt", fb, "objects other than tensors")
    (d / "none.pt").write_bytes(_torch_bytes({"a": 1, "b": "text"}))
    add("torch dict without a tensor", d / "none.pt", fb, "without a tensor")
    (d / "two.pt").write_bytes(_torch_bytes({"a": torch.zeros(2, 768), "b": torch.zeros(2, 768)}))
    add("torch dict of two tensors", d / "two.pt", fb, "2 tensors")
    (d / "int.pt").write_bytes(_torch_bytes(torch.ones(4, 768, dtype=torch.int64)))
    add("torch int tensor", d / "int.pt", fb, "not a float type")
    (d / "r3.pt").write_bytes(_torch_bytes(torch.zeros(1, 4, 768)))
    add("torch rank 3", d / "r3.pt", fb, "got shape")
    (d / "sparse.pt").write_bytes(_torch_bytes(torch.eye(4).to_sparse()))
    add("torch sparse tensor", d / "sparse.pt", fb, "sparse")
    (d / "num.pt").write_bytes(_torch_bytes(3))
    add("torch plain number", d / "num.pt", fb, "not a tensor")
    torch.save(torch.zeros(4, 768), d / "legacy.pt", _use_new_zipfile_serialization=False)
    add("legacy torch pickle", d / "legacy.pt", fb, "legacy pre-1.6")
    (d / "pickle.bin").write_bytes(pickle.dumps(_Evil(d / "PWNED")))
    add("plain pickle named .bin", d / "pickle.bin", fb, "never loaded")
    with zipfile.ZipFile(io.BytesIO(_torch_bytes(torch.zeros(4, 768)))) as src, \
            zipfile.ZipFile(d / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    add("torch zip re-compressed", d / "deflated.pt", fb, "compressed")
    add("zip without data.pkl named .pt", _zip(d / "plain.pt", {"x/y": b"1"}), fb, "not a torch.save file")
    (d / "text.pt").write_text("hello")
    add("text named .pt", d / "text.pt", fb, "not a torch zip")
    (d / "damaged.pt").write_bytes(_torch_bytes(torch.zeros(4, 768))[:-30])
    add("truncated torch zip", d / "damaged.pt", fb, "not a readable torch file|not a torch zip")
    for name in ("huge.npy", "huge.pt", "huge.zip"):
        with open(d / name, "wb") as fh:
            fh.truncate((520 if name.endswith("zip") else 70) * 1024 * 1024)
        add(f"oversized {name}", d / name, fb, "over the")

    add("zip with a ../ member", _zip(d / "trav.zip", {"ok.npy": full, "../evil.npy": full}), {}, "outside")
    add("zip with an absolute member", _zip(d / "abs.zip", {"/etc/evil.npy": full}), {}, "outside")
    link = zipfile.ZipInfo("link.npy")
    link.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(d / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    add("zip with a symlink", d / "link.zip", {}, "symbolic link")
    with zipfile.ZipFile(d / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("IMDBPromptRoberta/task_prompt", b"\0" * (65 * 1024 * 1024))
    add("zip member over 64 MB (a bomb)", d / "bomb.zip", {}, "over the 64 MB limit")
    add("zip with too many members", _zip(d / "many.zip", {f"f{i}.txt": b"" for i in range(1001)}), {}, "members")
    _zip(d / "onebad.zip", {"IMDBPromptRoberta/task_prompt": _torch_bytes(torch.randn(100, 768)),
                            "MNLIPromptRoberta/task_prompt": _torch_bytes(torch.ones(100, 768, dtype=torch.int32))})
    add("zip with one bad member among good ones", d / "onebad.zip", {}, "MNLIPromptRoberta/task_prompt")
    (d / "fake.zip").write_bytes((d / "ok.npy").read_bytes())
    add("not a zip named .zip", d / "fake.zip", {}, "not a zip archive")

    def folder(name: str, files: dict[str, bytes | str]) -> Path:
        root = d / name
        root.mkdir()
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data.encode() if isinstance(data, str) else data)
        return root

    ok = (d / "ok.npy").read_bytes()
    add("manifest naming an unknown file", folder("m1", {"a.npy": ok, "manifest.json": '{"b.npy": "sst2"}'}),
        {"backbone": FOREIGN}, "names 'b.npy', which is not in the bundle")
    add("manifest with an unknown task", folder("m2", {"a.npy": ok, "manifest.csv": "a.npy,nope\n"}),
        {"backbone": FOREIGN}, "unknown task 'nope'")
    add("manifest pointing outside", folder("m3", {"a.npy": ok, "manifest.json": '{"../a.npy": "sst2"}'}),
        {"backbone": FOREIGN}, "outside the bundle")
    add("manifest not JSON", folder("m4", {"a.npy": ok, "manifest.json": "{"}), {"backbone": FOREIGN},
        "not readable")
    add("manifest listing a non-prompt", folder("m5", {"a.txt": "x", "manifest.csv": "a.txt,sst2\n"}),
        {"backbone": FOREIGN}, "not a prompt file")
    add("manifest naming a local folder as backbone", folder("m6", {"a.npy": ok, "manifest.csv": f"a.npy,sst2,{d}\n"}),
        {}, "a local path")
    add("empty folder", folder("empty", {}), {}, "holds no prompt files")
    add("folder of no prompts", folder("docs", {"README.md": "x"}), {}, r"no prompt files \(skipped: README.md")
    add("folder with one bad file", folder("mixed", {"sst2.npy": ok, "rte.npy": full}), {"backbone": FOREIGN},
        "mixed/rte.npy: array dtype int64")
    add("--task for many prompts", folder("two", {"sst2.npy": ok, "rte.npy": ok}),
        {"backbone": FOREIGN, "task": "sst2"}, "--task names one task")

    emb = d / "emb"
    add("Prompt-Transferability model not in the table", _thunlp(emb, "IMDBPromptT5XXL", torch.randn(4, 768)), {},
        "'T5XXL' is not in the table")
    add("Prompt-Transferability task unknown here", _thunlp(emb, "laptopPromptRoberta", torch.randn(4, 768)), {},
        "unknown task 'laptop'")
    add("width of another backbone", _thunlp(emb, "SST2PromptRoberta", torch.randn(100, 1024)), {},
        "width 768, this one has 1024 .roberta-large")
    add("--backbone contradicting the name", emb / "SST2PromptRoberta" / "task_prompt",
        {"backbone": "bert-base-uncased"}, "trained on backbone 'roberta-base' .*not 'bert-base-uncased'")
    add("--backbone of an installed model contradicting the name (no model loaded)",
        emb / "SST2PromptRoberta" / "task_prompt", {"backbone": "minilm"}, "not 'minilm'; drop --backbone")
    add("file name that is no task", _npy(d / "myprompt.npy", good), {"backbone": FOREIGN},
        "does not name a known task")
    add("no backbone at all", d / "ok.npy", {"task": "sst2"}, "pass --backbone")
    add("backbone id that is no id", d / "ok.npy", {"task": "sst2", "backbone": "a b/../c"}, "hub-style id")
    add("foreign prompt too long", _npy(d / "long.npy", np.zeros((2000, 768), np.float32)), fb, "over the 1024")
    return cases


def test_bad_files_are_refused_in_one_line_and_leave_the_cache_unchanged(private_cache, tmp_path, no_models,
                                                                          capsys):
    d = tmp_path / "bad"
    d.mkdir()
    cases = _bad_cases(d)
    before = snapshot(private_cache)
    for what, path, kwargs, message in cases:
        with pytest.raises(PandaError) as info:
            import_prompt(path, **kwargs)
        one_line_error(info.value)
        assert re.search(message, str(info.value)), (what, str(info.value))
        assert snapshot(private_cache) == before, what
    assert not (d / "PWNED").exists()
    # the CLI: exit 2, one error line, nothing written
    for what, path, kwargs, _ in cases[::6]:
        args = ["prompts", "import", str(path), "--json"] + [x for k, v in kwargs.items() for x in (f"--{k}", v)]
        code = cli_main(args)
        out = capsys.readouterr()
        lines = [ln for ln in out.err.strip().splitlines() if ln.strip()]
        assert code == 2 and out.out == "" and len(lines) == 1 and lines[0].startswith("error: "), (what, out)
    assert snapshot(private_cache) == before and not list(tmp_path.rglob("PWNED"))
    record("bad_inputs", prompt_files=len(cases))


# ------------------------------------------------------------------ foreign backbones
def _foreign_prompts(tmp_path: Path) -> list[str]:
    emb = tmp_path / "emb"
    base = torch.randn(100, 768, generator=torch.Generator().manual_seed(1))
    for i, name in enumerate(("SST2PromptRoberta", "IMDBPromptRoberta", "MNLIPromptRoberta", "QNLIPromptRoberta")):
        _thunlp(emb, name, base * (1 if i < 2 else -1) + 0.3 * torch.randn(100, 768))
    return import_prompt(emb)["prompt_ids"]


def test_foreign_prompts_work_with_embedding_indicators_and_clusters(private_cache, tmp_path, no_models, capsys):
    from panda_core.indicators.clusters import prompt_points
    from panda_core.indicators.similarity import similarity_table

    _foreign_prompts(tmp_path)
    for metric in ("c_avg", "spot", "e_concat"):
        table = similarity_table(metric, backbone=FOREIGN, prompt_length=100)
        m = np.array(table["matrix"])
        assert m.shape == (4, 4) and np.isfinite(m).all() and table["backbone"] == FOREIGN
    spot = similarity_table("spot", backbone=FOREIGN, tasks=["sst2", "imdb", "mnli"], prompt_length=100)
    at = {t: i for i, t in enumerate(spot["tasks"])}
    row = spot["matrix"][at["sst2"]]
    assert row[at["imdb"]] > 0.5 > row[at["mnli"]]  # the two sentiment prompts share a direction
    points = prompt_points(FOREIGN, prompt_length=100, method="pca")
    assert len(points) == 4 and set(points["task"]) == {"sst2", "imdb", "mnli", "qnli"}
    code = cli_main(["similarity", "--metric", "c_avg", "--backbone", FOREIGN, "--prompt-len", "100", "--json"])
    out = capsys.readouterr()
    assert code == 0 and len(json.loads(out.out)["matrix"]) == 4, out.err


def test_model_work_on_foreign_prompts_names_the_backbone(private_cache, tmp_path, no_models, capsys):
    from panda_core.indicators.similarity import similarity_table
    from panda_core.ops import plan_transfer

    _foreign_prompts(tmp_path)
    wanted = f"prompts of '{FOREIGN}' need that backbone, which is not installed"
    for metric in ("on", "panda"):
        with pytest.raises(PandaError, match=wanted) as err:
            similarity_table(metric, backbone=FOREIGN, prompt_length=100)
        one_line_error(err.value)
        assert "PANDA_ALLOW_HUB=1" in str(err.value)
    with pytest.raises(PandaError, match="delta|" + wanted):
        similarity_table("c_avg", backbone=FOREIGN, prompt_length=100, options={"delta": True})
    with pytest.raises(PandaError, match=wanted):
        plan_transfer("imdb", "sst2", "pot", FOREIGN)
    with pytest.raises(PandaError, match=wanted):
        from panda_core.ops import export_prompt

        export_prompt(store.list_prompts(backbone=FOREIGN)[0]["id"], "peft", tmp_path / "out")
    for args in (["similarity", "--metric", "on", "--backbone", FOREIGN, "--prompt-len", "100"],
                 ["transfer", "--source", "imdb_uci", "--target", "mr", "--method", "pot", "--backbone", FOREIGN]):
        code = cli_main([*args, "--json"])
        out = capsys.readouterr()
        assert code == 2 and out.out == "" and wanted in out.err and len(out.err.strip().splitlines()) == 1, out.err


def test_hub_opt_in_is_what_the_refusal_says(private_cache, tmp_path, no_models, monkeypatch):
    """With PANDA_ALLOW_HUB=1 the refusal goes away and the loader is asked for
    the backbone (here: refused by the test's stub instead of the network)."""
    from panda_core.backbones.foreign import require_installed

    _foreign_prompts(tmp_path)
    monkeypatch.setenv("PANDA_ALLOW_HUB", "1")
    require_installed(FOREIGN)  # no refusal
    with pytest.raises(AssertionError, match="a model was loaded"):
        from panda_core.indicators.similarity import similarity_table

        similarity_table("on", backbone=FOREIGN, prompt_length=100)
    monkeypatch.delenv("PANDA_ALLOW_HUB")
    with pytest.raises(PandaError, match="PANDA_ALLOW_HUB=1"):
        require_installed(FOREIGN)
