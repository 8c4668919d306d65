"""Portable PEFT exports (issue 13 item 6): the adapter names the backbone's
hub id, never a folder on this machine; our readout, prompt type, task,
labels and head travel in the sidecar ``panda.json`` (PEFT ignores it and
warns about nothing); ``PeftModel.from_pretrained`` on the local minilm loads
the exact prompt, which gives the same class scores through our scorer; deep
prompts export as PREFIX_TUNING adapters under the same rules; importing our
own export back gives the identical tensor, readout and head. Loads minilm
once; the base model PEFT wraps is a copy, so the cached backbone is untouched."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest
import torch
from reliability_helpers import one_line_error, snapshot

from panda_core import store
from panda_core.errors import PandaError
from panda_core.ops import export_prompt, import_prompt
from panda_core.prompts import PROMPT_TYPES, PromptScorer, SoftPrompt
from panda_core.prompts.peft_meta import HEAD_FILE, SIDECAR, backbone_for_hub_id, hub_id
from panda_core.prompts.readouts import recorded

HUB = "sentence-transformers/all-MiniLM-L6-v2"
TASK = "mr"


@pytest.fixture(scope="module")
def minilm():
    from panda_core.backbones import get_backbone

    return get_backbone("minilm")


def _store(tensor: torch.Tensor, readout: str | None, head: dict | None = None) -> str:
    extra = {"config": {"readout": readout}} if readout else {}
    return store.save_prompt(SoftPrompt(tensor=tensor, backbone="minilm", task=TASK, method="pt", seed=3,
                                        head=head, scores={"test_acc": 0.5}, extra=extra))


def _scores(bb, tensor: torch.Tensor, readout: str, head: dict | None) -> torch.Tensor:
    """Class scores of 8 test items of mr through our scorer."""
    from panda_core.data import get_task, load_split
    from panda_core.training.tuning import load_head

    scorer = PromptScorer(bb, get_task(TASK), tensor.shape[-2], readout=readout)
    batch = next(scorer.batches(scorer.encode(load_split(TASK, "test")[:8]), 8))
    with torch.no_grad():
        return scorer.logits(batch, tensor.to(bb.device), load_head(scorer, head)).cpu()


def _sidecar(folder: Path) -> tuple[dict, dict | None]:
    from safetensors.torch import load_file

    record = json.loads((folder / SIDECAR).read_text())
    head = {k[5:]: v for k, v in load_file(str(folder / HEAD_FILE)).items()} if record["head"] else None
    return record, head


def _portable(folder: Path, peft_type: str) -> dict:
    """The config names the hub id and loads in PEFT without a warning."""
    from peft import PeftConfig

    cfg = json.loads((folder / "adapter_config.json").read_text())
    assert cfg["peft_type"] == peft_type and cfg["base_model_name_or_path"] == HUB
    assert not set(cfg) & {"readout", "task", "labels"}  # ours live in panda.json: PEFT would warn about them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = PeftConfig.from_pretrained(str(folder))
    assert loaded.base_model_name_or_path == HUB
    assert not [w for w in caught if "nexpected" in str(w.message)], [str(w.message) for w in caught]
    return cfg


def test_prompt_tuning_export_round_trips_through_peft_and_back(private_cache, tmp_path, minilm):
    from peft import PeftModel

    gen = torch.Generator().manual_seed(0)
    tensor = 0.5 * torch.randn(5, 384, generator=gen)
    head = {"vectors": torch.randn(2, 384, generator=gen)}  # mean-vectors: learnable class vectors travel too
    pid = _store(tensor, "mean-vectors", head)
    stored = store.load_prompt(pid)
    out = export_prompt(pid, "peft", tmp_path)
    folder = tmp_path / pid
    assert (out["peft_type"], out["base_model"], out["readout"]) == ("PROMPT_TUNING", HUB, "mean-vectors")
    _portable(folder, "PROMPT_TUNING")
    record, side_head = _sidecar(folder)
    assert (record["readout"], record["prompt_type"], record["task"], record["backbone"], record["hub_id"]) == \
        ("mean-vectors", "input", TASK, "minilm", HUB)
    assert record["labels"] == ["negative", "positive"] and torch.equal(side_head["vectors"], head["vectors"])
    assert str(private_cache) not in (folder / "adapter_config.json").read_text()

    peft_model = PeftModel.from_pretrained(copy.deepcopy(minilm.model), str(folder)).eval()
    theirs = peft_model.prompt_encoder["default"].embedding.weight.detach().cpu()
    assert torch.equal(theirs, stored.tensor)
    enc = minilm.tokenizer(["a fine film"], return_tensors="pt")
    with torch.no_grad():
        hidden = peft_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
    assert hidden.shape[1] == 5 + enc.input_ids.shape[1]  # PEFT drives the backbone with our 5 rows
    ours = _scores(minilm, stored.tensor, recorded(stored, "encoder"), stored.head)
    from_adapter = _scores(minilm, theirs, record["readout"], side_head)
    assert (ours - from_adapter).abs().max() <= 1e-5

    back = import_prompt(folder)  # no --backbone, no --task: the sidecar says both
    again = store.load_prompt(back["prompt_id"])
    assert (back["format"], back["backbone"], back["task"], back["method"]) == ("peft", "minilm", TASK, "pt")
    assert torch.equal(again.tensor, stored.tensor) and torch.equal(again.head["vectors"], head["vectors"])
    assert recorded(again, "encoder") == "mean-vectors" and again.seed == 3
    assert again.extra["labels"] == ["negative", "positive"] and again.extra["exported_prompt_id"] == pid


def test_deep_prompt_exports_as_prefix_tuning_and_round_trips(private_cache, tmp_path, minilm):
    from peft import PeftModel

    from panda_core.prompts.peft_prefix import from_peft_embeddings, to_peft_embeddings
    from panda_core.prompts.types import PromptGeometry

    tensor = PROMPT_TYPES.get("deep").init(minilm, 3, "vocab", seed=1)
    pid = _store(tensor, "cls-desc")
    out = export_prompt(pid, "peft", tmp_path)
    folder = tmp_path / pid
    assert (out["peft_type"], out["base_model"], out["readout"]) == ("PREFIX_TUNING", HUB, "cls-desc")
    _portable(folder, "PREFIX_TUNING")
    record, side_head = _sidecar(folder)
    assert (record["prompt_type"], record["readout"], record["task"], side_head) == ("deep", "cls-desc", TASK, None)

    peft_model = PeftModel.from_pretrained(copy.deepcopy(minilm.model), str(folder)).eval()
    flat = peft_model.prompt_encoder["default"].embedding.weight.detach().cpu()
    assert torch.equal(flat, to_peft_embeddings(tensor))
    theirs = from_peft_embeddings(flat, PromptGeometry.of(minilm))
    assert (_scores(minilm, tensor, "cls-desc", None) - _scores(minilm, theirs, record["readout"], None)).abs().max() \
        <= 1e-5

    back = import_prompt(folder)
    again = store.load_prompt(back["prompt_id"])
    assert (back["format"], back["prompt_type"], back["backbone"], back["task"]) == ("peft_prefix", "deep", "minilm",
                                                                                     TASK)
    assert torch.equal(again.tensor, tensor) and recorded(again, "encoder") == "cls-desc"


def test_hub_ids_and_adapters_made_elsewhere(private_cache, tmp_path, minilm):
    from safetensors.torch import save_file

    assert hub_id(minilm) == HUB and backbone_for_hub_id(HUB.upper()) == "minilm"
    assert backbone_for_hub_id("roberta-base") is None

    class Folder:  # a local model folder whose config names only its own path
        name = str(tmp_path)
        model = type("M", (), {"config": type("C", (), {"_name_or_path": str(tmp_path)})()})()

    with pytest.raises(PandaError, match="no hub id") as err:
        hub_id(Folder())
    one_line_error(err.value)
    Folder.model.config._name_or_path = "org/model-x"  # a folder that remembers its hub id
    assert hub_id(Folder()) == "org/model-x"

    made = tmp_path / "made_with_peft"  # an adapter PEFT wrote, no sidecar: its hub id names the backbone
    made.mkdir()
    (made / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING",
                                                          "base_model_name_or_path": HUB}))
    save_file({"prompt_embeddings": torch.randn(4, 384)}, str(made / "adapter_model.safetensors"))
    got = import_prompt(made, task=TASK)
    assert (got["backbone"], got["method"]) == ("minilm", "imported")


def test_tampered_sidecars_are_refused_in_one_line(private_cache, tmp_path, minilm):
    pid = _store(torch.randn(4, 384), None)
    export_prompt(pid, "peft", tmp_path)
    folder = tmp_path / pid
    good = (folder / SIDECAR).read_text()
    assert json.loads(good)["readout"] == "mean-desc"  # no recorded readout: the encoder's legacy one
    cases = [
        ("length", json.dumps(json.loads(good) | {"length": 7}), "says length 7"),
        ("readout", json.dumps(json.loads(good) | {"readout": "telepathy"}), "readout 'telepathy'"),
        ("head", json.dumps(json.loads(good) | {"head": HEAD_FILE}), f"{HEAD_FILE} is missing"),
        ("json", "{not json", "not readable JSON"),
        ("format", json.dumps({"backbone": "minilm"}), "not a panda_core adapter record"),
        ("seed", json.dumps(json.loads(good) | {"seed": "x"}), "'seed' is not an integer"),
    ]
    before = snapshot(private_cache)
    for what, text, message in cases:
        (folder / SIDECAR).write_text(text)
        with pytest.raises(PandaError, match=message) as err:
            import_prompt(folder)
        one_line_error(err.value)
        assert snapshot(private_cache) == before, what
