"""The training loop: PT learns, PoT starts from the source, PANDA's
distillation term behaves as specified, model tuning trains the backbone copy."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_config as _cfg

from panda_core.backbones import get_backbone
from panda_core.prompts import init_prompt
from panda_core.training import TrainConfig, train

TASK = "yelp_uci"  # small, real, balanced


@pytest.fixture(autouse=True)
def _own_cache(private_cache):
    """Checkpoints of these runs go to a throw-away cache."""
    return private_cache


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
    from panda_core.training import Cancelled

    bb = get_backbone("minilm")
    a = train(bb, TASK, _cfg(steps=6, eval_every=3))
    b = train(bb, TASK, _cfg(steps=6, eval_every=3))
    assert torch.equal(a.prompt, b.prompt)
    with pytest.raises(Cancelled):
        train(bb, TASK, _cfg(), should_stop=lambda: True)


def test_an_interrupted_run_resumes_and_ends_as_if_never_stopped(private_cache):
    from panda_core.training import Cancelled

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
    from panda_core.training import Cancelled

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
    from panda_core.training import evaluate

    init_acc = evaluate(bb, "mr", init, "test")
    res = train(bb, "mr", cfg, init=init)
    # measured 0.750 on this machine (old and new loop alike; the README's 0.767
    # was an earlier run); the floor leaves about one standard error of a
    # 1,000-example test set below it
    assert res.test_acc >= 0.735
    assert res.test_acc > init_acc + 0.03


# ------------------------------------------------------------ the config refuses bad values at once
BAD_VALUES = [
    ("steps", 0), ("steps", -5), ("steps", 2.5), ("steps", True), ("steps", "10"),
    ("batch_size", 0), ("prompt_length", 0), ("prompt_length", 513), ("lr", 0.0), ("lr", -0.1),
    ("lr", float("nan")), ("lr", float("inf")), ("eval_every", 0), ("patience", -1), ("max_length", 0),
    ("dev_limit", 0), ("test_limit", -3), ("train_limit", 0), ("kd_weight", -0.5), ("kd_weight", float("nan")),
    ("temperature", 0.0), ("weight_decay", -1e-3), ("warmup", 1.5), ("model_lr", 0), ("seed", -1),
    ("seed", 1.0), ("init", "gaussian"), ("head", "yes"), ("tune_model", 1),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_config_refuses_each_bad_value_in_one_line(name, value):
    import time

    from panda_core.errors import PandaError

    t0 = time.perf_counter()
    with pytest.raises(PandaError) as err:
        TrainConfig(**{name: value})
    message = str(err.value)
    assert "\n" not in message and name in message and repr(value) in message and "must be" in message
    cfg = TrainConfig()
    with pytest.raises(PandaError):
        setattr(cfg, name, value)  # a built config stays valid
    assert time.perf_counter() - t0 < 0.5


def test_config_accepts_the_edges_and_from_dict_refuses_unknown_keys():
    from panda_core.errors import PandaError

    ok = TrainConfig(steps=1, batch_size=1, prompt_length=512, lr=None, patience=0, warmup=0.0, kd_weight=0.0,
                     dev_limit=None, test_limit=1, init="random", seed=2**32)
    assert TrainConfig.from_dict(ok.to_dict()) == ok
    assert list(TrainConfig().to_dict()) == [  # stored in run configs and hashed into keys: order and names fixed
        "steps", "batch_size", "lr", "weight_decay", "warmup", "eval_every", "patience", "prompt_length",
        "max_length", "init", "head", "temperature", "seed", "dev_limit", "test_limit", "train_limit",
        "tune_model", "model_lr", "kd_weight"]
    with pytest.raises(PandaError, match="unknown training setting.*stepz") as err:
        TrainConfig.from_dict({"stepz": 3})
    assert "\n" not in str(err.value)


# ------------------------------------------------------------ the batch stream resumes exactly
def _first_loop_stream(n, batch_size, seed):
    """The batch order of the first training loop, which stored results follow."""
    gen = torch.Generator().manual_seed(seed)
    offset = 0
    while True:
        order = torch.randperm(n, generator=gen)
        start, offset = offset, 0
        for s in range(start, max(n - batch_size + 1, 1), batch_size):
            offset = s + batch_size
            yield order[s : s + batch_size]


@pytest.mark.parametrize(("n", "batch_size"), [(24, 8), (25, 8), (5, 8), (9, 3)])
def test_stream_keeps_the_first_loops_order_and_resumes_anywhere(n, batch_size):
    from panda_core.training.trainer import Stream

    ref = _first_loop_stream(n, batch_size, 3)
    stream = Stream(n, batch_size, 3)
    for _ in range(20):
        assert torch.equal(next(stream), next(ref))
    for k in range(12):  # interrupt after k batches (epoch ends included), resume, compare the rest
        whole, cut = Stream(n, batch_size, 3), Stream(n, batch_size, 3)
        for _ in range(k):
            next(whole), next(cut)
        again = Stream(n, batch_size, 3)
        again.restore(cut.epoch_gen, cut.offset)
        for _ in range(10):
            assert torch.equal(next(again), next(whole)), k
