"""Cross-model projectors through the one training loop: dev evaluation,
best-dev selection, warm-up from the config, resume and the projection run."""

from __future__ import annotations

import pytest
import torch

from panda_core import store
from panda_core.backbones import get_backbone
from panda_core.crossmodel import projector_config, run_projection, train_projector
from panda_core.errors import Cancelled, PandaError
from panda_core.prompts import SoftPrompt, init_prompt

TASK = "yelp_uci"


@pytest.fixture
def pt_prompts(private_cache):
    """Stand-in PT prompts of two tasks on minilm (untrained: the projector only maps them)."""
    bb = get_backbone("minilm")
    for seed, task in enumerate((TASK, "amazon_uci")):
        store.save_prompt(SoftPrompt(tensor=init_prompt(bb.embeddings(), 4, "vocab", seed=seed), backbone="minilm",
                                     task=task, method="pt"))
    return private_cache


def _config(**kw):
    return projector_config(**({"steps": 8, "lr": 0.05, "prompt_length": 4, "batch_size": 8, "seed": 0}
                               | {"eval_every": 2, "dev_limit": 24} | kw))


def _dev_acc(proj, task=TASK):
    from panda_core.data import get_task, load_split
    from panda_core.prompts import PromptScorer

    bb = get_backbone("minilm")
    p_s = store.load_prompt(store.latest_prompt_id(task, "minilm", "pt", 4)).tensor
    scorer = PromptScorer(bb, get_task(task), 4)
    with torch.no_grad():
        return scorer.accuracy(scorer.encode(load_split(task, "dev")), proj(p_s), None, limit=24)


def test_projector_training_evaluates_on_dev_and_keeps_the_best(pt_prompts, monkeypatch):
    from panda_core.crossmodel import training
    from panda_core.crossmodel.projector import PromptProjector

    made, states, evals = [], {}, []

    class Recorded(PromptProjector):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(training, "PromptProjector", Recorded)
    proj, meta = train_projector(
        "minilm", "minilm", TASK, "task", hidden=8, config=_config(),
        on_eval=lambda name, step, acc: evals.append((step, acc)),
        progress=lambda p: states.__setitem__(p["step"], {k: v.clone() for k, v in made[0].state_dict().items()}))
    assert [s for s, _ in meta["dev_curve"]] == [2, 4, 6, 8] and evals == meta["dev_curve"]  # no random step 0
    accs = [a for _, a in meta["dev_curve"]]
    best_step = meta["dev_curve"][accs.index(max(accs))][0]  # the first best
    assert meta["best_step"] == best_step and meta["best_dev"] == round(max(accs), 4)
    assert all(torch.equal(v, states[best_step][k]) for k, v in proj.state_dict().items())  # not the last one
    assert best_step == 8 or any(not torch.equal(v, states[8][k]) for k, v in proj.state_dict().items())
    assert _dev_acc(proj) == max(accs)
    assert meta["warmup"] == 0.06 and not list((pt_prompts / "checkpoints").glob("*"))


def test_projector_warmup_comes_from_the_config(pt_prompts):
    losses = {}
    for warmup in (0.06, 0.5):  # 0 warm-up steps of 8, or 4: the first update is 4 times smaller
        seen = []
        _, meta = train_projector("minilm", "minilm", TASK, "distance", hidden=8, progress=seen.append,
                                  config=_config(eval_every=8, warmup=warmup))
        assert meta["warmup"] == warmup
        losses[warmup] = [p["loss"] for p in seen]
    assert losses[0.06][0] == losses[0.5][0] and losses[0.06][1] != losses[0.5][1]


def test_an_interrupted_projector_run_resumes_exactly(pt_prompts):
    whole, meta = train_projector("minilm", "minilm", TASK, "task", hidden=8, config=_config())
    seen = []
    with pytest.raises(Cancelled, match="step 4/8"):
        train_projector("minilm", "minilm", TASK, "task", hidden=8, config=_config(), progress=seen.append,
                        should_stop=lambda: len(seen) >= 4)
    again_seen = []
    again, again_meta = train_projector("minilm", "minilm", TASK, "task", hidden=8, config=_config(),
                                        progress=again_seen.append)
    assert again_seen[0]["step"] == 5 and again_meta["dev_curve"] == meta["dev_curve"]
    for (k, x), y in zip(whole.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(x, y), k


def test_projection_run_is_recorded_with_its_dev_curve(pt_prompts):
    out = run_projection("minilm", "minilm", TASK, "task", eval_tasks=[TASK, "amazon_uci"], steps=4,
                         prompt_length=4, test_limit=16)
    assert [r["task"] for r in out["results"]] == [TASK, "amazon_uci"]
    assert {"projector_id", "run_id", "source_backbone", "target_backbone", "train_task", "method", "steps",
            "lr", "seed", "seconds", "results"} <= set(out)
    for r in out["results"]:  # the projected, random and own PT prompt on the same 16 items, paired
        assert r["n_test"] == 16 and 0 <= r["majority_test_acc"] <= 1
        for key in ("test_acc", "random_prompt_acc", "target_pt_acc"):
            low, high = r[f"{key}_ci"]
            assert low <= r[key] <= high
        for key, other in (("projected_vs_random", "random_prompt_acc"), ("projected_vs_target_pt", "target_pt_acc")):
            d = r[key]
            assert d["n"] == 16 and d["diff"] == pytest.approx(r["test_acc"] - r[other], abs=1e-3)
            assert d["low"] <= d["diff"] <= d["high"] and 0 <= d["p_value"] <= 1
    run = store.get_run(out["run_id"])
    assert run["status"] == "done" and run["kind"] == "project"
    assert [tuple(x) for x in store.curve(out["run_id"])] == [tuple(x) for x in out["dev_curve"]]


def test_projection_refuses_bad_settings_before_loading_anything(private_cache):
    with pytest.raises(PandaError, match="steps=0"):
        run_projection("minilm", "smollm2", TASK, steps=0)
    with pytest.raises(PandaError, match="unknown projector method"):
        run_projection("minilm", "smollm2", TASK, method="nearest")
    assert store.list_runs() == []
