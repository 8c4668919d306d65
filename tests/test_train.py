"""The training loop: PT learns, PoT starts from the source, PANDA's
distillation term behaves as specified, model tuning trains the backbone copy."""

from __future__ import annotations

import pytest
import torch

from panda_core.backbones import get_backbone
from panda_core.prompts import init_prompt
from panda_core.train import TrainConfig, train

TASK = "yelp_uci"  # small, real, balanced


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
