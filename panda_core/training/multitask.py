"""Batched multi-prompt training: prompts for several tasks trained in one run
through one copy of the frozen backbone, by the one `Trainer` with the
`Routing` objective.

Each step takes ``batch_size`` examples from every task (each task walks its
own shuffled epochs, seeded as a separate ``train`` run would be), mixes them
into one batch, and routes every example to its task's prompt: the K prompts
are stacked into a (K, n, d) tensor and indexed per example into the
(B, n, d) prompt the scorer splices in. One forward of the shared trunk serves
every task; each task's rows are then scored through that task's labels and
the loss is the sum over tasks of each task's mean cross-entropy. So each
prompt's gradient is exactly the gradient its own separate run would get from
the same examples, a prompt without examples in a step gets no gradient and
no optimiser update, and each task keeps its own best-dev checkpoint and
patience. An interrupted run resumes from its last dev evaluation.

On two CPU cores this saves little wall-clock (the frozen trunk does the same
work per example either way, see docs/performance.md); on a GPU, where one
task's small batch leaves the device idle, it is the way to fill it.

Example::

    from panda_core.ops import train_prompts
    rows = train_prompts(["mr", "yelp_uci"], "minilm", TrainConfig(steps=100))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from ..data import get_task
from ..errors import PandaError
from ..prompts import PROMPT_TYPES, PromptScorer, check_init, task_seed
from . import checkpoint as ckpt
from .config import DEFAULT_TOKEN_BUDGET, TrainConfig
from .objectives import MultiTaskBatcher, Routing, TaskSlot, multitask_step
from .trainer import Member, ParamGroup, Progress, Stream, Trainer
from .tuning import CLIP, TrainResult, backbone_lr, n_train, task_splits

__all__ = ["DEFAULT_TOKEN_BUDGET", "MultiTaskBatcher", "TaskSlot", "build_slots", "multitask_step",
           "train_multitask"]


def build_slots(backbone, tasks: Sequence[str], config: TrainConfig,
                inits: dict[str, torch.Tensor] | None = None) -> list[TaskSlot]:
    """Scorers, tokenised splits and prompts of each task (validated)."""
    if len(set(tasks)) != len(tasks):
        raise PandaError(f"tasks repeat in {list(tasks)}; name each task once")
    if not tasks:
        raise PandaError("no tasks to train")
    slots = []
    for name in tasks:
        task = get_task(name)
        train_ex, dev_ex, test_ex = task_splits(name)
        scorer = PromptScorer(backbone, task, config.prompt_length, config.max_length, config.temperature,
                              readout=config.readout)
        if scorer.readout.has_params:
            raise PandaError(f"batched training covers prompt-only readouts; '{scorer.readout.name}' trains "
                             "parameters of its own: use `train`")
        init = (inits or {}).get(name)
        if init is None:
            init = PROMPT_TYPES.get(config.prompt_type).init(backbone, config.prompt_length, config.init,
                                                             seed=task_seed(name, config.seed))
        check_init(init, config, name)
        prompt = torch.nn.Parameter(init.detach().clone().float().to(backbone.device))
        enc = scorer.encode(train_ex)
        slots.append(TaskSlot(name, scorer, enc, scorer.encode(dev_ex), test_ex, prompt,
                              n_train=n_train(config, enc)))
    return slots


def _member(slot: TaskSlot, config: TrainConfig) -> Member:
    return Member(slot.name, {"prompt": slot.prompt}, stream=Stream(slot.n_train, config.batch_size, config.seed),
                  evaluate=lambda: slot.scorer.accuracy(slot.dev, slot.prompt.detach(), None, limit=config.dev_limit))


def train_multitask(
    backbone,
    tasks: Sequence[str],
    config: TrainConfig,
    inits: dict[str, torch.Tensor] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_eval: Callable[[str, int, float], None] | None = None,
    token_budget: int | None = DEFAULT_TOKEN_BUDGET,
    resume: bool = True,
) -> dict[str, TrainResult]:
    """Train one prompt per task in one batched run; returns each task's
    best-dev result (the same fields as `train`).

    `config` is shared (steps, per-task batch size, learning rate, schedule,
    evaluation); `inits` may give a task its starting prompt; `token_budget`
    bounds rows x width of one forward pass (see `MultiTaskBatcher.chunks`);
    `resume` checkpoints at every dev evaluation and continues an interrupted
    run of the same work. Prompt-only: heads, model tuning and distillation
    use `train`."""
    if config.head or config.tune_model or config.kd_weight:
        raise PandaError("batched training covers prompt tuning only (no head, model tuning or distillation)")
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    slots = build_slots(backbone, tasks, config, inits)
    batcher = MultiTaskBatcher(slots, token_budget)
    members = [_member(s, config) for s in slots]
    digest = None
    if resume:
        starts = torch.cat([s.prompt.detach() for s in slots])
        digest = ckpt.run_digest("+".join(tasks), backbone.name,
                                 config.to_dict() | {"batched": True, "token_budget": token_budget}, starts)
    group = ParamGroup("prompts", [s.prompt for s in slots], backbone_lr(backbone, config), clip=CLIP, clip_each=True)
    trainer = Trainer(config, Routing(batcher), [group], members, digest=digest, model=backbone.model,
                      progress=progress, should_stop=should_stop, on_eval=on_eval, t0=t0)
    steps = trainer.run()
    seconds = trainer.seconds()
    out = {}
    for s, m in zip(slots, members, strict=True):
        test_correct = s.scorer.correct_items(s.scorer.encode(s.test_examples), m.best["prompt"], None,
                                              limit=config.test_limit)
        test_acc = float(test_correct.float().mean()) if len(test_correct) else 0.0
        out[s.name] = TrainResult(
            prompt=m.best["prompt"].cpu(), head=None, best_dev=m.best_dev, best_step=m.best_step,
            test_acc=test_acc, dev_curve=m.curve, steps=steps, seconds=seconds,
            trainable_params=s.prompt.numel(), stopped_early=m.stopped, test_correct=test_correct,
        )
    trainer.finish()
    return out
