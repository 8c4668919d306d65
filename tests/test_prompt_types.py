"""Deep prompts as a second prompt type beside input-level prompts (issue 11
item 3): every method, the indicators, the store, PEFT PREFIX_TUNING import
and export and the CLI take both; mixing the types is refused in one line;
the keys of existing input-level runs do not change. Tiny budgets on tiny-mlm
(the CLI end to end) and minilm (the scorer and a short training)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from panda_core import store
from panda_core.cli import main
from panda_core.errors import PandaError
from panda_core.prompts import PROMPT_TYPES, PromptScorer, SoftPrompt, check_init
from panda_core.training import TrainConfig
from panda_core.transfer import TransferConfig

BB = ["--backbone", "tiny-mlm"]
STEPS = ["--steps", "4", "--prompt-len", "3", "--dev-limit", "16", "--test-limit", "24", "--train-limit", "32",
         "--eval-every", "2"]
DEEP = ["--prompt-type", "deep"]


def _cli(*args) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        code = main([*args, "--json"])
    assert code == 0, buf.getvalue()[-400:]
    return json.loads(buf.getvalue())


def _refusal(*args) -> str:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([*args, "--json"])
    assert code != 0
    return err.getvalue().strip()


@pytest.fixture(scope="module")
def deep_cache(tmp_path_factory):
    """Deep PT prompts of mr and yelp_uci on tiny-mlm, and an input-level one of mr."""
    from conftest import link_project_data

    root = tmp_path_factory.mktemp("cache")
    link_project_data(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PANDA_CACHE", str(root))
        runs = [("mr", "mr", DEEP), ("yelp_uci", "yelp_uci", DEEP), ("mr_input", "mr", [])]
        yield root, {name: _cli("train", "--task", task, *BB, *STEPS, *flag) for name, task, flag in runs}


@pytest.fixture
def deep(deep_cache, monkeypatch):
    monkeypatch.setenv("PANDA_CACHE", str(deep_cache[0]))
    return deep_cache[1]


def test_existing_input_level_keys_are_unchanged():
    """Hashes computed with the code before prompt types existed (commit 25db50e)."""
    assert "prompt_type" not in TrainConfig().to_dict()
    c = TransferConfig(train=TrainConfig(steps=6, prompt_length=4))
    assert c.key("pot", "mr", "yelp_uci", "minilm", ("a", "b")) == "e9c1224364148211f9d4"
    assert c.key("panda", "mr", "yelp_uci", "minilm", ("a", "b")) == "291d7401f43228a222d3"
    assert TransferConfig().key("pt", None, "mr", "tiny-mlm") == "7c2c507116129dfa685e"
    d = TransferConfig(train=TrainConfig(steps=6, prompt_length=4, prompt_type="deep"))
    assert d.key("pot", "mr", "yelp_uci", "minilm", ("a", "b")) != "e9c1224364148211f9d4"


def test_unknown_prompt_type_refused_in_one_line():
    with pytest.raises(PandaError, match="prompt_type") as err:
        TrainConfig(prompt_type="shallow")
    assert "\n" not in str(err.value)


def test_pt_trains_saves_and_loads_a_deep_prompt(deep):
    row = deep["mr"]
    p = store.load_prompt(row["prompt_id"])
    assert p.prompt_type == "deep" and p.tensor.dim() == 4 and p.length == 3
    assert p.extra["config"]["prompt_type"] == "deep"
    assert row["trainable_params"] == p.tensor.numel()
    rows = {r["id"]: r for r in store.list_prompts(backbone="tiny-mlm")}
    assert rows[row["prompt_id"]]["prompt_type"] == "deep"
    assert rows[deep["mr_input"]["prompt_id"]]["prompt_type"] == "input"
    # the latest-prompt rule keeps the types apart
    assert store.latest_prompt_id("mr", "tiny-mlm", "pt", 3) == deep["mr_input"]["prompt_id"]
    assert store.latest_prompt_id("mr", "tiny-mlm", "pt", 3, "deep") == row["prompt_id"]


@pytest.mark.parametrize("method", ["zero-shot", "pot", "panda"])
def test_transfer_methods_take_deep_prompts(deep, method):
    out = _cli("transfer", "--source", "mr", "--target", "yelp_uci", "--method", method, *BB, *STEPS, *DEEP)
    assert out["source_prompt"] == deep["mr"]["prompt_id"] and 0 <= out["test_acc"] <= 1
    if out.get("prompt_id"):
        assert store.load_prompt(out["prompt_id"]).prompt_type == "deep"


@pytest.mark.parametrize("method", ["pt", "model-tuning"])
def test_fresh_prompt_methods_take_deep_prompts(deep, method):
    out = _cli("transfer", "--target", "yelp_uci", "--method", method, *BB, *STEPS, *DEEP)
    assert 0 <= out["test_acc"] <= 1
    if method == "pt":
        assert store.load_prompt(out["prompt_id"]).prompt_type == "deep"


@pytest.mark.parametrize("metric", ["e_concat", "c_avg", "spot", "on", "on_inputs", "panda"])
def test_indicators_give_k_by_k_on_deep_prompts(deep, metric):
    out = _cli("similarity", "--metric", metric, *BB, "--tasks", "mr", "yelp_uci", "--prompt-len", "3", *DEEP,
               "--n-inputs", "8")
    m = np.array(out["matrix"])
    assert m.shape == (2, 2) and np.isfinite(m).all() and out["prompt_type"] == "deep"
    assert out["prompt_ids"] == sorted([deep["mr"]["prompt_id"], deep["yelp_uci"]["prompt_id"]],
                                       key=lambda i: i.split(".")[1])


def test_on_prompt_alone_on_deep_prompts(deep):
    out = _cli("similarity", "--metric", "on", *BB, "--tasks", "mr", "yelp_uci", "--prompt-len", "3", *DEEP,
               "--option", "inputs=prompt_alone")
    assert np.array(out["matrix"]).shape == (2, 2)


def test_mixing_types_is_refused_in_one_line(deep):
    from panda_core.indicators.base import stack_prompts

    a = store.load_prompt(deep["mr"]["prompt_id"])
    b = store.load_prompt(deep["mr_input"]["prompt_id"])
    with pytest.raises(PandaError, match="mix types") as err:
        stack_prompts([a, b])
    assert "\n" not in str(err.value)
    with pytest.raises(PandaError, match="is a input prompt but the run trains a deep prompt"):
        check_init(b.tensor, TrainConfig(prompt_length=3, prompt_type="deep"))
    with pytest.raises(PandaError, match="deep prompt"):
        from panda_core.crossmodel import PromptProjector

        PromptProjector(3, 64, 64, 8)(a.tensor)
    # an input-level transfer never reads the deep prompt of a task without an input one
    msg = _refusal("transfer", "--source", "yelp_uci", "--target", "mr", "--method", "pot", *BB, *STEPS)
    assert "no trained 3-token prompt for task 'yelp_uci'" in msg and len(msg.splitlines()) == 1


def test_peft_prefix_export_import_round_trip(deep, tmp_path):
    from panda_core.ops import export_prompt, import_prompt

    pid = deep["mr"]["prompt_id"]
    out = export_prompt(pid, "peft", tmp_path)
    assert out["peft_type"] == "PREFIX_TUNING"
    cfg = json.loads((tmp_path / pid / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "PREFIX_TUNING" and cfg["num_virtual_tokens"] == 3
    back = import_prompt(tmp_path / pid)
    assert back["prompt_type"] == "deep" and back["task"] == "mr" and back["backbone"] == "tiny-mlm"
    assert torch.equal(store.load_prompt(back["prompt_id"]).tensor, store.load_prompt(pid).tensor)
    # the safetensors file keeps its type too
    st = export_prompt(pid, "safetensors", tmp_path / "st")
    again = import_prompt(st["files"][0])
    assert again["prompt_type"] == "deep"


def test_minilm_scores_and_trains_a_deep_prompt():
    """The scorer drives minilm with a deep prompt (no rows spliced, the mean
    readout over the text), batched per-row prompts stack to (B, L, 2, n, w),
    and two training steps move the prompt."""
    from panda_core.backbones import get_backbone
    from panda_core.data import get_task, load_split
    from panda_core.training import train

    bb = get_backbone("minilm")
    deep = PROMPT_TYPES.get("deep").init(bb, 4, "vocab", seed=1)
    scorer = PromptScorer(bb, get_task("mr"), 4)
    enc = scorer.encode(load_split("mr", "dev")[:8])
    batch = next(scorer.batches(enc, 8))
    with torch.no_grad():
        one = scorer.logits(batch, deep)
        rows = scorer.scoring_outputs(batch, deep.unsqueeze(0).expand(8, -1, -1, -1, -1))
        hidden, mask, start, n = scorer.states(batch, deep)
    assert one.shape == (8, 2) and n == 0 and hidden.shape[1] == mask.shape[1] == batch.input_ids.shape[1]
    assert torch.allclose(scorer.class_scores(rows), one, atol=1e-4)
    cfg = TrainConfig(steps=2, batch_size=4, eval_every=2, prompt_length=4, prompt_type="deep", dev_limit=8,
                      test_limit=8, train_limit=16)
    result = train(bb, "mr", cfg)
    assert result.prompt.shape == deep.shape and result.trainable_params == deep.numel()
    sp = SoftPrompt(tensor=result.prompt, backbone="minilm", task="mr")
    assert sp.prompt_type == "deep" and sp.metadata()["prompt_type"] == "deep"
