"""The training loop: PT learns, PoT starts from the source, PANDA's
distillation term behaves as specified, model tuning trains the backbone copy."""

from __future__ import annotations

import pytest
import torch

from panda_core.backbones import get_backbone
from panda_core.prompts import init_prompt
from panda_core.train import TrainConfig, train

TASK = "yelp_uci"  # small, real, balanced


@pytest.fixture(autouse=True)
def _own_cache(private_cache):
    """Checkpoints of these runs go to a throw-away cache."""
    return private_cache


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=12, eval_every=6, batch_size=8, dev_limit=40, test_limit=40, seed=0, prompt_length=4)
    return TrainConfig(**(base | kw))


def test_panda_reduces_to_pot_when_lambda_is_zero():
    bb = get_backbone("minilm")
    source = init_prompt(bb.embeddings(), 4, "vocab", seed=7)
    teacher = init_prompt(bb.embeddings(), 4, "vocab", seed=8)
    pot = train(bb, TASK, _cfg(), init=source)
    panda0 = train(bb, TASK, _cfg(kd_weight=0.0), init=source, teacher_prompt=teacher)
    assert torch.equal(pot.prompt, panda0.prompt)
    assert pot.dev_curve == panda0.dev_curve


def test_distillation_changes_the_result_and_the_teacher_gets_no_gradient():
    bb = get_backbone("minilm")
    source = init_prompt(bb.embeddings(), 4, "vocab", seed=7)
    teacher = init_prompt(bb.embeddings(), 4, "vocab", seed=8).requires_grad_(True)
    before = teacher.detach().clone()
    pot = train(bb, TASK, _cfg(), init=source)
    panda = train(bb, TASK, _cfg(kd_weight=5.0), init=source, teacher_prompt=teacher)
    assert not torch.equal(pot.prompt, panda.prompt)
    assert teacher.grad is None and torch.equal(teacher.detach(), before)


def test_backbone_stays_frozen_during_prompt_tuning():
    bb = get_backbone("minilm")
    before = {k: v.clone() for k, v in list(bb.model.state_dict().items())[:6]}
    res = train(bb, TASK, _cfg())
    after = bb.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert res.trainable_params == 4 * bb.hidden_size


def test_model_tuning_trains_a_private_copy_only():
    bb = get_backbone("minilm")
    before = {k: v.clone() for k, v in list(bb.model.state_dict().items())[:6]}
    res = train(bb, TASK, _cfg(tune_model=True, steps=4, eval_every=4))
    assert res.trainable_params > 1_000_000
    after = bb.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_same_seed_same_result_and_cancel_stops():
    from panda_core.train import Cancelled

    bb = get_backbone("minilm")
    a = train(bb, TASK, _cfg(steps=6, eval_every=3))
    b = train(bb, TASK, _cfg(steps=6, eval_every=3))
    assert torch.equal(a.prompt, b.prompt)
    with pytest.raises(Cancelled):
        train(bb, TASK, _cfg(), should_stop=lambda: True)


def test_an_interrupted_run_resumes_and_ends_as_if_never_stopped(private_cache):
    from panda_core.train import Cancelled

    bb = get_backbone("minilm")
    cfg = _cfg(steps=10, eval_every=2, head=True)
    whole = train(bb, TASK, cfg)
    assert not list((private_cache / "checkpoints").glob("*"))  # removed once finished
    calls = []
    with pytest.raises(Cancelled):
        train(bb, TASK, cfg, should_stop=lambda: len(calls) >= 5, progress=calls.append)
    assert len(list((private_cache / "checkpoints").glob("*.safetensors"))) == 1
    seen, evals = [], []
    again = train(bb, TASK, cfg, progress=seen.append, on_eval=lambda s, a: evals.append(s))
    assert seen[0]["step"] == 5  # the checkpoint of step 4, not step 1
    assert evals == [0, 2, 4, 6, 8, 10]  # the resumed run reports the whole dev curve
    assert torch.allclose(again.prompt, whole.prompt, atol=1e-6)
    assert torch.allclose(again.head["weight"], whole.head["weight"], atol=1e-6)
    assert again.dev_curve == whole.dev_curve and again.test_acc == whole.test_acc


def test_a_damaged_checkpoint_is_ignored(private_cache):
    from panda_core.train import Cancelled

    bb = get_backbone("minilm")
    cfg = _cfg(steps=6, eval_every=2)
    whole = train(bb, TASK, cfg)
    with pytest.raises(Cancelled):
        train(bb, TASK, cfg, should_stop=lambda: bool(list((private_cache / "checkpoints").glob("*.json"))))
    for path in (private_cache / "checkpoints").glob("*.safetensors"):
        path.write_bytes(b"not a checkpoint")
    seen = []
    again = train(bb, TASK, cfg, progress=seen.append)
    assert seen[0]["step"] == 1 and torch.equal(again.prompt, whole.prompt)


@pytest.mark.slow
def test_prompt_tuning_on_mr_beats_the_untrained_prompt_and_075():
    bb = get_backbone("minilm")
    cfg = TrainConfig(steps=300, seed=0)
    init = init_prompt(bb.embeddings(), cfg.prompt_length, cfg.init, seed=0)
    from panda_core.train import evaluate

    init_acc = evaluate(bb, "mr", init, "test")
    res = train(bb, "mr", cfg, init=init)
    assert res.test_acc > 0.75
    assert res.test_acc > init_acc + 0.03
