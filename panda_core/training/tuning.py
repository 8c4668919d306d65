"""Training one task's prompt through the one loop: prompt tuning (PT),
vanilla prompt transfer (PoT), PANDA and model tuning. They differ in a few
named choices handed to `Trainer`:

- initialisation: a fresh prompt (PT), or a copy of the source prompt (PoT);
- objective: `CrossEntropy`, or PANDA's `Distillation`, which adds
  ``kd_weight * MSE(student logits, teacher logits)`` where the teacher is the
  frozen backbone driven by a fixed prompt;
- parameter groups: the prompt (and the readout's parameters or the optional
  linear head), or, for model tuning, every weight of a private copy of the
  backbone as well.

The readout (`config.readout`, `prompts.readouts`) decides what is read and
how classes are scored; PANDA's teacher is scored through the student's own
readout parameters, so both sets of logits live in one space.

Evaluation on dev every ``eval_every`` steps keeps the best-dev checkpoint;
test accuracy is reported for that checkpoint.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..data import get_task, load_split
from ..errors import PandaError
from ..prompts import PROMPT_TYPES, PromptScorer, check_init, task_seed
from . import checkpoint as ckpt
from .config import TrainConfig
from .objectives import CrossEntropy, Distillation, TeacherCache
from .trainer import Member, ParamGroup, Progress, Stream, Trainer

CLIP = 1.0  # max gradient norm of the prompt (the head and model weights are not clipped)


@dataclass
class TrainResult:
    prompt: torch.Tensor
    head: dict[str, torch.Tensor] | None
    best_dev: float
    best_step: int
    test_acc: float
    dev_curve: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    trainable_params: int = 0
    stopped_early: bool = False
    #: (N,) bool, each test item right or wrong in the split's order: the
    #: interval of `test_acc` and paired comparisons are computed from it
    test_correct: torch.Tensor | None = None
    #: the readout trained and scored with (a `READOUTS` name, "auto" resolved)
    readout: str = ""


def task_splits(task_name: str) -> tuple[list, list, list]:
    """The train, dev and test examples of a task (none may be empty)."""
    splits = tuple(load_split(task_name, s) for s in ("train", "dev", "test"))
    if not all(splits):
        raise PandaError(f"task '{task_name}' has an empty split; re-run `python -m panda_core data prepare`")
    return splits


def backbone_lr(backbone, config: TrainConfig) -> float:
    """The prompt's learning rate: the config's, else its prompt type's default,
    else the backbone's."""
    if config.lr is not None:
        return config.lr
    typed = PROMPT_TYPES.get(config.prompt_type).default_lr
    return typed if typed is not None else getattr(backbone, "default_lr", 0.01)


def n_train(config: TrainConfig, enc) -> int:
    """How many training examples the batch stream walks (`train_limit`)."""
    return len(enc) if config.train_limit is None else min(config.train_limit, len(enc))


def make_head(backbone, n_labels: int) -> torch.nn.Linear:
    return torch.nn.Linear(backbone.hidden_size, n_labels).to(backbone.device)


def load_head(scorer: PromptScorer, state: dict[str, torch.Tensor] | None) -> torch.nn.Module | None:
    """The head a stored state dict describes for `scorer`'s task and readout:
    the readout's parameters (fresh when `state` does not fit them, e.g. another
    task's label set; class vectors then start at the label descriptions), or a
    linear head over the features (None when it does not fit: label scoring)."""
    fresh = scorer.new_head()
    module = fresh if fresh is not None else make_head(scorer.backbone, len(scorer.task.labels))
    if not state:
        return fresh
    try:
        module.load_state_dict({k: v.to(scorer.device) for k, v in state.items()})
    except RuntimeError:  # a head belongs to its task's label set (and its readout)
        return fresh
    return module


def train(
    backbone,
    task_name: str,
    config: TrainConfig,
    init: torch.Tensor | None = None,
    teacher_prompt: torch.Tensor | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_eval: Callable[[int, float], None] | None = None,
    resume: bool = True,
) -> TrainResult:
    """Train a prompt on `task_name` and return the best-dev checkpoint.

    Args:
        init: the starting prompt (n, d); PoT passes the source prompt here.
        teacher_prompt: PANDA's teacher prompt; with ``config.kd_weight > 0`` the
            loss is ``CE + kd_weight * MSE(z_student, z_teacher)``.
        progress: called with {"step", "steps", "loss", "dev_acc"?} dicts.
        should_stop: polled every step; True cancels the run (raises Cancelled).
        resume: save a checkpoint at every dev evaluation and continue from
            one left by an interrupted run of the same work (not for model
            tuning, whose state is the whole backbone).
    """
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)  # before anything draws from the global generator (head, dropout)
    task = get_task(task_name)
    train_ex, dev_ex, test_ex = task_splits(task_name)

    model = backbone.model
    if config.tune_model:
        model = copy.deepcopy(backbone.model)
        for p in model.parameters():
            p.requires_grad_(True)
    scorer = PromptScorer(backbone, task, config.prompt_length, config.max_length, config.temperature, model=model,
                          readout=config.readout)
    if init is None:
        init = PROMPT_TYPES.get(config.prompt_type).init(backbone, config.prompt_length, config.init,
                                                         seed=task_seed(task_name, config.seed))
    check_init(init, config)
    prompt = torch.nn.Parameter(init.detach().clone().float().to(backbone.device))
    head = make_head(backbone, len(task.labels)) if config.head else scorer.new_head()

    lr = backbone_lr(backbone, config)
    groups = [ParamGroup("prompt", [prompt], lr, clip=CLIP)]
    if head is not None:
        groups.append(ParamGroup("head", list(head.parameters()), lr))
    if config.tune_model:
        groups.append(ParamGroup("model", list(model.parameters()), config.model_lr))

    teacher = None
    if config.kd_weight > 0:
        if teacher_prompt is None:
            raise PandaError("distillation (kd_weight > 0) needs a teacher prompt")
        teacher = teacher_prompt.detach().float().to(backbone.device)

    enc_train, enc_dev = scorer.encode(train_ex), scorer.encode(dev_ex)
    stream = Stream(n_train(config, enc_train), config.batch_size, config.seed,
                    lengths=enc_train.lengths if config.batching == "length" else None)
    objective = CrossEntropy(scorer, enc_train, prompt, head)
    if teacher is not None:
        cache = TeacherCache(scorer, enc_train, teacher, head)
        cache.prefill(stream.visits(config.steps))  # every example the run will meet, in one sorted pass
        objective = Distillation(scorer, enc_train, prompt, head, cache, config.kd_weight)
    params = {"prompt": prompt} | ({f"head.{k}": v for k, v in head.named_parameters()} if head else {})
    member = Member(task_name, params, stream=stream,
                    evaluate=lambda: scorer.accuracy(enc_dev, prompt.detach(), head, limit=config.dev_limit))
    digest = ckpt.run_digest(task_name, backbone.name, config.to_dict(), init, teacher) \
        if resume and not config.tune_model else None
    trainer = Trainer(config, objective, groups, [member], digest=digest, model=model, model_train=config.tune_model,
                      progress=progress, should_stop=should_stop, t0=t0,
                      on_eval=(lambda _name, step, acc: on_eval(step, acc)) if on_eval else None)
    steps = trainer.run()

    best_prompt = member.best["prompt"]
    best_head = {k[5:]: v for k, v in member.best.items() if k.startswith("head.")} or None
    head_mod = load_head(scorer, best_head)
    test_correct = scorer.correct_items(scorer.encode(test_ex), best_prompt, head_mod, limit=config.test_limit)
    test_acc = float(test_correct.float().mean()) if len(test_correct) else 0.0
    trainer.finish()
    return TrainResult(
        prompt=best_prompt.cpu(),
        head={k: v.cpu() for k, v in best_head.items()} if best_head else None,
        best_dev=member.best_dev,
        best_step=member.best_step,
        test_acc=test_acc,
        dev_curve=member.curve,
        steps=steps,
        seconds=trainer.seconds(),
        trainable_params=trainer.trainable,
        stopped_early=trainer.stopped_early,
        test_correct=test_correct,
        readout=scorer.readout.name,
    )


def evaluate_items(
    backbone, task_name: str, prompt: torch.Tensor, split: str = "test", head: dict | None = None,
    limit: int | None = None, max_length: int = 128, temperature: float = 20.0, readout: str | None = None,
) -> torch.Tensor:
    """(N,) bool: each item of a task split right or wrong under a fixed prompt,
    read by `readout` ("auto"/None: the kind's default; a stored prompt's is
    `prompts.readouts.recorded(prompt, kind)`) with its stored `head`."""
    scorer = PromptScorer(backbone, get_task(task_name), prompt.shape[-2], max_length, temperature, readout=readout)
    enc = scorer.encode(load_split(task_name, split))
    return scorer.correct_items(enc, prompt.to(backbone.device), load_head(scorer, head), limit=limit)


def evaluate(
    backbone, task_name: str, prompt: torch.Tensor, split: str = "test", head: dict | None = None,
    limit: int | None = None, max_length: int = 128, temperature: float = 20.0, readout: str | None = None,
) -> float:
    """Accuracy of a fixed prompt on a task split (zero-shot transfer uses this)."""
    correct = evaluate_items(backbone, task_name, prompt, split, head, limit, max_length, temperature, readout)
    return float(correct.float().mean()) if len(correct) else 0.0
