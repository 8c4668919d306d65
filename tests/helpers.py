"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from panda_core.training import TrainConfig


def tiny_config(**kw) -> TrainConfig:
    """A small, fast training config (12 steps of 8, dev and test on 40 items,
    a 4-token prompt); keyword arguments override any field."""
    base = dict(steps=12, eval_every=6, batch_size=8, dev_limit=40, test_limit=40, seed=0, prompt_length=4)
    return TrainConfig(**(base | kw))
