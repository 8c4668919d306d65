"""Backbones: the offline registry, loading, freezing, FFN hooks, name resolution.

mpnet and smollm2 are read from the project cache (prepared once by set-up;
the first test to need them prepares them, about a minute).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from panda_core import backbones as bb
from panda_core.backbones import kinds, packages
from panda_core.backbones.gguf import _read_gguf_sizes
from panda_core.backbones.splitzip import _open_split_zip, _zip_root
from panda_core.errors import PandaError

EXPECTED = {
    "minilm": ("encoder", 384, 6, 1536),
    "mpnet": ("encoder", 768, 12, 3072),
    "smollm2": ("causal", 576, 30, 1536),
}
INFO_KEYS = {
    "name",
    "kind",
    "hidden_size",
    "num_layers",
    "ffn_size",
    "available",
    "device",
    "ffn_hook",
    "source",
    "warning",
}


def _output(backbone: bb.Backbone, out) -> torch.Tensor:
    return out.last_hidden_state if backbone.kind == "encoder" else out.logits


def test_list_backbones_reports_three_registry_models_without_loading_weights():
    code = (
        "import json, sys, time\n"
        "from panda_core.backbones import list_backbones\n"
        "t = time.perf_counter(); rows = list_backbones(); dt = time.perf_counter() - t\n"
        "print(json.dumps({'rows': rows, 'seconds': dt, 'transformers': 'transformers' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows = {row["name"]: row for row in result["rows"]}
    assert list(rows) == ["minilm", "mpnet", "smollm2"]
    for name, (kind, hidden, layers, ffn) in EXPECTED.items():
        row = rows[name]
        assert row["available"], row.get("reason")
        assert (row["kind"], row["hidden_size"], row["num_layers"], row["ffn_size"]) == (
            kind,
            hidden,
            layers,
            ffn,
        )
        assert row["license"] and row["description"]
    assert not result["transformers"], "listing must not import transformers, let alone load weights"
    assert result["seconds"] < 1.0


@pytest.mark.parametrize("name", list(EXPECTED))
def test_backbone_loads_frozen_with_one_ffn_hook_per_layer(name):
    backbone = bb.get_backbone(name)
    kind, hidden, layers, ffn = EXPECTED[name]
    assert (backbone.kind, backbone.hidden_size, backbone.num_layers, backbone.ffn_size) == (
        kind,
        hidden,
        layers,
        ffn,
    )
    assert backbone.source == "package" and backbone.warning is None
    assert not any(p.requires_grad for p in backbone.model.parameters())
    assert not backbone.model.training
    assert backbone.embeddings().weight.shape[1] == hidden
    info = backbone.info()
    assert INFO_KEYS <= set(info) and info["available"] is True
    assert info["ffn_hook"] == backbone.ffn_hook_path() and "{i}" in info["ffn_hook"]

    modules = backbone.ffn_modules()
    assert len(modules) == layers
    seen: list[torch.Size] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: seen.append(out.shape)) for m in modules]
    try:
        enc = backbone.tokenizer(["a quietly moving film"], return_tensors="pt").to(backbone.device)
        with torch.no_grad():
            backbone.model(**enc)
    finally:
        for h in handles:
            h.remove()
    assert len(seen) == layers
    assert all(shape[-1] == ffn for shape in seen)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_inputs_embeds_forward_equals_input_ids_forward(name):
    backbone = bb.get_backbone(name)
    enc = backbone.tokenizer(
        ["the film is a charming, funny ride", "dull"], return_tensors="pt", padding=True
    ).to(backbone.device)
    mask = enc.attention_mask.bool()
    assert not mask[1].all(), "the second row must be padded"
    with torch.no_grad():
        by_ids = _output(backbone, backbone.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask))
        embeds = backbone.embeddings()(enc.input_ids)
        by_embeds = _output(backbone, backbone.model(inputs_embeds=embeds, attention_mask=enc.attention_mask))
    # MPNet numbers pad positions differently for inputs_embeds; real tokens must agree.
    torch.testing.assert_close(by_embeds[mask], by_ids[mask], atol=1e-4, rtol=0)


def test_causal_tokenizer_pads_on_the_right_with_eos():
    tok = bb.get_backbone("smollm2").tokenizer
    assert tok.pad_token is not None and tok.pad_token == tok.eos_token
    assert tok.padding_side == "right"


def test_get_backbone_returns_the_same_object_the_second_time():
    first = bb.get_backbone("minilm")
    start = time.perf_counter()
    assert bb.get_backbone("minilm") is first
    assert bb.get_backbone("MiniLM", device="cpu") is first or first.device.type != "cpu"
    assert time.perf_counter() - start < 0.1


def test_local_folder_loads_with_kind_from_its_config():
    folder = packages._minilm_folder()
    backbone = bb.get_backbone(str(folder))
    assert backbone.source == "folder" and backbone.kind == "encoder"
    assert (backbone.hidden_size, backbone.num_layers, backbone.ffn_size) == (384, 6, 1536)
    assert len(backbone.ffn_modules()) == 6


def test_folder_claiming_masked_lm_without_head_is_used_as_encoder():
    # all-mpnet-base-v2's config says MPNetForMaskedLM but the checkpoint has no LM head.
    folder = bb.prepare_backbones(["mpnet"])[0]["path"]
    backbone = bb.get_backbone(folder)
    assert backbone.kind == "encoder" and backbone.warning is None
    assert type(backbone.model).__name__ == "MPNetModel"


@pytest.mark.parametrize("name", ["no-such-backbone-xyz", "org/no-such-model", "bad name!", ""])
def test_unknown_name_raises_panda_error_without_network(name, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PandaError) as err:
        bb.get_backbone(name)
    assert "\n" not in str(err.value)


def test_paths_that_are_not_model_folders_raise_panda_error(tmp_path):
    with pytest.raises(PandaError, match="no config.json"):
        bb.get_backbone(str(tmp_path))
    afile = tmp_path / "weights.bin"
    afile.write_bytes(b"x")
    with pytest.raises(PandaError, match="is a file"):
        bb.get_backbone(str(afile))


def test_bad_device_raises_panda_error():
    with pytest.raises(PandaError):
        bb.get_backbone("minilm", device="no-such-device")
    if not torch.cuda.is_available():
        with pytest.raises(PandaError, match="CUDA"):
            bb.get_backbone("minilm", device="cuda")


def test_tiny_mlm_gives_vocab_sized_logits_and_a_warning():
    backbone = bb.tiny_mlm(seed=0)
    assert backbone.kind == "mlm" and backbone.source == "random" and backbone.warning
    assert (backbone.hidden_size, backbone.num_layers, backbone.ffn_size) == (64, 2, 128)
    assert not any(p.requires_grad for p in backbone.model.parameters())
    tok = backbone.tokenizer
    enc = tok([f"it was {tok.mask_token} ."], return_tensors="pt")
    with torch.no_grad():
        logits = backbone.model(**enc).logits
    assert logits.shape == (1, enc.input_ids.shape[1], 30522)
    assert len(backbone.ffn_modules()) == 2
    again = bb.tiny_mlm(seed=0)
    torch.testing.assert_close(again.embeddings().weight, backbone.embeddings().weight)


def test_prepare_backbones_is_idempotent_and_fast_the_second_time():
    bb.prepare_backbones()
    start = time.perf_counter()
    rows = bb.prepare_backbones()
    assert time.perf_counter() - start < 1.0
    assert [r["status"] for r in rows] == ["ready", "ready", "ready"]
    with pytest.raises(PandaError):
        bb.prepare_backbones(["nope"])


def test_split_zip_reads_like_the_concatenated_archive(tmp_path):
    buf = io.BytesIO()
    payload = bytes(range(256)) * 4000
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/config.json", '{"hidden_size": 8}')
        zf.writestr("model/model.safetensors", payload)
    data = buf.getvalue()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    parts = []
    for k in range(3):
        part = tmp_path / f"archive.zip.{k + 1:03d}"
        part.write_bytes(data[cuts[k] : cuts[k + 1]])
        parts.append(part)
    with _open_split_zip(parts) as zf:
        assert _zip_root(zf) == "model/"
        assert zf.read("model/model.safetensors") == payload


def test_gguf_header_gives_the_same_sizes_as_the_prepared_config():
    path = packages._smol_gguf()
    assert path is not None
    assert _read_gguf_sizes(path) == {"hidden_size": 576, "num_layers": 30, "ffn_size": 1536}


def test_hub_ids_need_an_explicit_opt_in(monkeypatch):
    monkeypatch.delenv("PANDA_ALLOW_HUB", raising=False)
    with pytest.raises(PandaError, match="PANDA_ALLOW_HUB=1"):
        bb.get_backbone("some-org/some-model")


# ------------------------------------------------------------------ kinds
STRATEGY = ("claims", "auto_class", "prepare_tokenizer", "text_ids", "verbalizer_text", "splice", "trunk_module",
            "trunk", "pool", "readout_positions", "read_outputs", "forward_outputs", "class_scores", "prompt_alone")


@pytest.mark.parametrize("kind", bb.KINDS.names())
def test_every_registered_kind_implements_the_strategy_interface(kind):
    impl = bb.KINDS.get(kind)
    assert isinstance(impl, kinds.BackboneKind) and impl.name == kind and impl.label
    assert not getattr(type(impl), "__abstractmethods__", None), "an abstract method is left unimplemented"
    assert all(callable(getattr(impl, m)) for m in STRATEGY)
    assert impl.auto_class_name.startswith("AutoModel") and impl.peft_task_type
    assert isinstance(impl.slot_tokens, int) and impl.slot_tokens >= 0
    # splice, pool and readout agree on shapes with a stand-in embedding and tokenizer
    B, L, n, d = 2, 5, 3, 8
    emb, prompt = torch.randn(B, L, d), torch.randn(B, n, d)
    attention = torch.tensor([[1] * L, [1] * (L - 2) + [0, 0]])
    table = torch.nn.Embedding(10, d)
    tok = type("Tok", (), {"mask_token_id": 4})()
    embeds, mask, start = impl.splice(emb, prompt, attention, table, tok)
    assert embeds.shape == (B, L + n + impl.slot_tokens, d) and mask.shape == embeds.shape[:2]
    torch.testing.assert_close(embeds[:, start : start + n], prompt)
    assert int(mask.sum()) == int(attention.sum()) + B * (n + impl.slot_tokens)
    assert impl.pool(torch.randn(*embeds.shape), mask, start, n).shape == (B, d)
    positions = impl.readout_positions(mask, start, n)
    assert positions.shape == (B,) and bool((positions >= 0).all() and (positions < mask.shape[1]).all())


def test_an_unknown_kind_is_refused_with_a_panda_error():
    with pytest.raises(PandaError, match="unknown backbone kind 'seq2seq'"):
        bb.KINDS.get("seq2seq")
    with pytest.raises(PandaError, match="backbone kind"):
        bb.Backbone("x", "seq2seq", torch.nn.Linear(2, 2), None, torch.device("cpu"), "random")


def test_kind_from_architectures_follows_the_config():
    assert bb.kind_from_architectures(["BertForMaskedLM"]) == "mlm"
    assert bb.kind_from_architectures(["LlamaForCausalLM"]) == "causal"
    assert bb.kind_from_architectures(["GPT2LMHeadModel"]) == "causal"
    assert bb.kind_from_architectures(["BertModel"]) == bb.kind_from_architectures(None) == "encoder"
