"""Batched multi-prompt training: routing, gradient isolation, and parity with
separate runs."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_config as _cfg

from panda_core.backbones import get_backbone
from panda_core.ops import train_prompts
from panda_core.training import train
from panda_core.training.multitask import (
    MultiTaskBatcher,
    build_slots,
    multitask_step,
    train_multitask,
)

TASKS = ["yelp_uci", "amazon_uci", "imdb_uci"]  # small, real, balanced


@pytest.fixture(autouse=True)
def _own_cache(private_cache):
    """Checkpoints and records of these runs go to a throw-away cache."""
    return private_cache


def _grads(batcher, rows):
    optim = torch.optim.SGD([s.prompt for s in batcher.slots], lr=0.0)  # lr 0: grads only
    multitask_step(batcher, rows, optim, clip=1e9)
    return [None if s.prompt.grad is None else s.prompt.grad.clone() for s in batcher.slots]


def test_a_prompt_gets_gradient_only_from_its_own_tasks_examples():
    bb = get_backbone("minilm")
    slots = build_slots(bb, TASKS, _cfg())
    batcher = MultiTaskBatcher(slots)
    a, b = torch.arange(0, 5), torch.arange(10, 16)
    mixed = _grads(batcher, {0: a, 1: b})
    # task 2 has no example in the batch: no gradient at all (and no update)
    assert mixed[2] is None
    assert mixed[0].abs().sum() > 0 and mixed[1].abs().sum() > 0
    # each prompt's gradient equals the one from a batch of its own examples alone
    alone0 = _grads(batcher, {0: a})
    alone1 = _grads(batcher, {1: b})
    assert alone0[1] is None and alone1[0] is None
    assert torch.allclose(mixed[0], alone0[0], atol=1e-6, rtol=1e-4)
    assert torch.allclose(mixed[1], alone1[1], atol=1e-6, rtol=1e-4)
    # changing the other task's examples leaves a prompt's gradient as it was
    other = _grads(batcher, {0: a, 1: torch.arange(40, 46)})
    assert torch.allclose(other[0], mixed[0], atol=1e-6, rtol=1e-4)


def test_exactly_zero_gradient_through_the_stacked_prompt_tensor():
    """Indexing the (K, n, d) stack per example sends nothing to absent rows."""
    bb = get_backbone("minilm")
    slots = build_slots(bb, TASKS, _cfg())
    batcher = MultiTaskBatcher(slots)
    stacked = batcher.stacked().detach().requires_grad_(True)
    index = torch.cat([torch.arange(0, 4), torch.arange(0, 3) + slots[1].offset])
    weights = torch.tensor([0.25, 1 / 3, 0.0])
    batcher.loss(index, weights, stacked).backward()
    assert torch.count_nonzero(stacked.grad[2]) == 0
    assert torch.count_nonzero(stacked.grad[0]) > 0 and torch.count_nonzero(stacked.grad[1]) > 0


def test_an_absent_prompt_is_not_moved_by_the_optimiser():
    bb = get_backbone("minilm")
    slots = build_slots(bb, TASKS, _cfg())
    batcher = MultiTaskBatcher(slots)
    optim = torch.optim.AdamW([s.prompt for s in slots], lr=0.05, weight_decay=0.1)
    multitask_step(batcher, {0: torch.arange(4), 2: torch.arange(4)}, optim)  # builds momentum for 0 and 2
    before = slots[2].prompt.detach().clone()
    multitask_step(batcher, {0: torch.arange(4, 8)}, optim)
    assert torch.equal(slots[2].prompt.detach(), before)


def test_token_budget_chunks_give_the_same_gradient():
    bb = get_backbone("minilm")
    slots = build_slots(bb, TASKS, _cfg())
    rows = {0: torch.arange(0, 6), 1: torch.arange(0, 6), 2: torch.arange(0, 6)}
    whole = _grads(MultiTaskBatcher(slots), rows)
    chunked = _grads(MultiTaskBatcher(slots, token_budget=200), rows)
    for g, h in zip(whole, chunked, strict=True):
        assert torch.allclose(g, h, atol=1e-6, rtol=1e-4)


def test_batched_run_reaches_the_dev_score_of_separate_runs():
    """Same examples, same steps, same seed: each task's best dev accuracy is
    within 0.05 of its own separate run (in practice equal up to float noise)."""
    bb = get_backbone("minilm")
    cfg = _cfg(steps=16, eval_every=8, lr=0.05)
    tasks = TASKS[:2]
    batched = train_multitask(bb, tasks, cfg)
    for t in tasks:
        alone = train(bb, t, cfg)
        assert abs(batched[t].best_dev - alone.best_dev) <= 0.05, (t, batched[t].best_dev, alone.best_dev)
        assert batched[t].dev_curve[0] == alone.dev_curve[0]
        assert len(batched[t].dev_curve) == len(alone.dev_curve)
        # the prompts themselves agree closely (float noise from padding widths only)
        assert torch.allclose(batched[t].prompt, alone.prompt, atol=1e-3)


def test_train_prompts_records_one_run_and_prompt_per_task(private_cache):
    from panda_core import store

    rows = train_prompts(TASKS[:2], "minilm", _cfg(steps=4, eval_every=2, dev_limit=16, test_limit=16))
    assert [r["task"] for r in rows] == TASKS[:2]
    for r in rows:
        run = store.get_run(r["run_id"])
        assert run["status"] == "done" and run["method"] == "pt" and run["kind"] == "train"
        p = store.load_prompt(r["prompt_id"])
        assert p.task == r["task"] and p.method == "pt" and p.length == 4
        assert store.latest_prompt_id(r["task"], "minilm", "pt", 4) == r["prompt_id"]
        assert [tuple(x) for x in store.curve(r["run_id"])] == [tuple(x) for x in r["dev_curve"]]


def test_an_interrupted_batched_run_resumes_and_ends_as_if_never_stopped(private_cache):
    """Killed after a dev evaluation (should_stop raises Cancelled), run again:
    same prompts, curves and test accuracy as an uninterrupted run."""
    from panda_core.errors import Cancelled

    bb = get_backbone("minilm")
    tasks = TASKS[:2]
    cfg = _cfg(steps=6, eval_every=2, lr=0.05, train_limit=20, dev_limit=16, test_limit=16)  # epochs of 2 steps
    whole = train_multitask(bb, tasks, cfg)
    assert not list((private_cache / "checkpoints").glob("*"))  # removed once finished
    seen = []
    with pytest.raises(Cancelled):
        train_multitask(bb, tasks, cfg, progress=seen.append,
                        should_stop=lambda: any(p["step"] == 4 and "dev" in p for p in seen))
    assert len(list((private_cache / "checkpoints").glob("*.safetensors"))) == 1
    again_seen, evals = [], []
    again = train_multitask(bb, tasks, cfg, progress=again_seen.append,
                            on_eval=lambda task, step, acc: evals.append((task, step)))
    assert again_seen[0]["step"] == 5  # continued after the checkpoint of step 4
    assert sorted(evals) == sorted((t, s) for t in tasks for s in (0, 2, 4, 6))  # the whole curves
    for t in tasks:
        assert torch.equal(again[t].prompt, whole[t].prompt), t
        assert again[t].dev_curve == whole[t].dev_curve and again[t].test_acc == whole[t].test_acc
    assert not list((private_cache / "checkpoints").glob("*"))
