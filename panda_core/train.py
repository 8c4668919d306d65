"""One training loop for prompt tuning (PT), vanilla prompt transfer (PoT),
PANDA and model tuning. The differences are a few named lines:

- initialisation: a fresh prompt (PT), or a copy of the source prompt (PoT);
- teacher term: PANDA adds ``kd_weight * MSE(student logits, teacher logits)``
  where the teacher is the frozen backbone driven by a fixed prompt;
- trainable parameters: the prompt (and optional head), or, for model tuning,
  every weight of a private copy of the backbone as well.

Evaluation on dev every ``eval_every`` steps keeps the best-dev checkpoint;
test accuracy is reported for that checkpoint.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .errors import PandaError
from .prompts import PromptInit, init_prompt
from .scoring import PromptScorer
from .tasks import get_task, load_split

Progress = Callable[[dict], None]


class Cancelled(Exception):
    """Raised inside the loop when the caller's `should_stop` says so."""


@dataclass
class TrainConfig:
    """Every knob of a training run (defaults follow PANDA's released code,
    scaled down for 2 CPU cores)."""

    steps: int = 300
    batch_size: int = 16
    lr: float | None = None  # None: the backbone's default
    weight_decay: float = 1e-5
    warmup: float = 0.06  # fraction of steps with linear warm-up, then linear decay
    eval_every: int = 50
    patience: int | None = None  # stop after this many evals without dev improvement
    prompt_length: int = 20
    max_length: int = 128
    init: str = PromptInit.VOCAB.value
    head: bool = False  # train a per-task linear head next to the prompt
    temperature: float = 20.0
    seed: int = 0
    dev_limit: int | None = 500
    test_limit: int | None = None
    train_limit: int | None = None
    tune_model: bool = False  # model tuning: all backbone weights are trained
    model_lr: float = 2e-5
    kd_weight: float = 0.0  # PANDA: weight of the distillation term

    def to_dict(self) -> dict:
        return asdict(self)


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


def lr_lambda(step: int, total: int, warmup_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    return max(0.0, (total - step) / max(1, total - warmup_steps))


class TeacherCache:
    """PANDA's frozen-teacher class logits, computed once per training example
    (eval mode, no gradient) into one (N, C) table: a later epoch (or a later
    step that meets the example again) costs one gather, no forward."""

    def __init__(self, scorer: PromptScorer, enc, teacher: torch.Tensor) -> None:
        self.scorer, self.enc, self.teacher = scorer, enc, teacher
        self.table: torch.Tensor | None = None
        self.have = torch.zeros(len(enc), dtype=torch.bool)

    def __call__(self, batch) -> torch.Tensor:
        index = batch.index
        have = self.have[index]
        if not bool(have.all()):  # bookkeeping on the CPU: no device sync
            todo = index[~have]
            sub = self.scorer.collate(self.enc, todo)
            model = self.scorer.model
            was = model.training
            model.eval()
            with torch.no_grad():
                z_t = self.scorer.logits(sub, self.teacher, None).float()  # teacher scores through the labels
            model.train(was)
            if self.table is None:
                self.table = torch.zeros(len(self.enc), z_t.shape[1], device=z_t.device)
            self.table[todo.to(z_t.device)] = z_t
            self.have[todo] = True
        return self.table[index.to(self.table.device)]


def prompt_step(
    scorer: PromptScorer,
    batch,
    prompt: torch.nn.Parameter,
    optim: torch.optim.Optimizer,
    sched=None,
    head: torch.nn.Module | None = None,
    teacher: TeacherCache | None = None,
    kd_weight: float = 0.0,
    clip: float = 1.0,
) -> torch.Tensor:
    """One optimisation step of the loop (the benchmark times exactly this):
    CE of the class scores (+ kd_weight * MSE to the cached teacher logits),
    backward, clip the prompt's gradient, optimiser and schedule step.
    Returns the detached loss (no host sync here)."""
    z = scorer.logits(batch, prompt, head)
    loss = F.cross_entropy(z, batch.labels)
    if teacher is not None:
        loss = loss + kd_weight * F.mse_loss(z, teacher(batch))
    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([prompt], clip)
    optim.step()
    if sched is not None:
        sched.step()
    return loss.detach()


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
    torch.manual_seed(config.seed)
    task = get_task(task_name)
    train_ex, dev_ex, test_ex = (load_split(task_name, s) for s in ("train", "dev", "test"))
    if not train_ex or not dev_ex or not test_ex:
        raise PandaError(f"task '{task_name}' has an empty split; re-run `python -m panda_core data prepare`")

    model = backbone.model
    if config.tune_model:
        model = copy.deepcopy(backbone.model)
        for p in model.parameters():
            p.requires_grad_(True)
    scorer = PromptScorer(backbone, task, config.prompt_length, config.max_length, config.temperature, model=model)
    if init is None:
        init = init_prompt(backbone.embeddings(), config.prompt_length, config.init, seed=config.seed)
    if init.shape[0] != config.prompt_length:
        raise PandaError(f"initial prompt has {init.shape[0]} tokens but prompt_length is {config.prompt_length}")
    prompt = torch.nn.Parameter(init.detach().clone().float().to(backbone.device))
    head = torch.nn.Linear(backbone.hidden_size, len(task.labels)).to(backbone.device) if config.head else None

    lr = config.lr if config.lr is not None else getattr(backbone, "default_lr", 0.01)
    groups = [{"params": [prompt], "lr": lr}]
    if head is not None:
        groups.append({"params": list(head.parameters()), "lr": lr})
    if config.tune_model:
        groups.append({"params": [p for p in model.parameters()], "lr": config.model_lr})
    optim = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    warm = int(config.warmup * config.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: lr_lambda(s, config.steps, warm))
    trainable = sum(p.numel() for g in groups for p in g["params"])

    teacher = None
    if config.kd_weight > 0:
        if teacher_prompt is None:
            raise PandaError("distillation (kd_weight > 0) needs a teacher prompt")
        teacher = teacher_prompt.detach().float().to(backbone.device)

    gen = torch.Generator().manual_seed(config.seed)
    enc_train = scorer.encode(train_ex)
    enc_dev = scorer.encode(dev_ex)
    teacher_logits = TeacherCache(scorer, enc_train, teacher) if teacher is not None else None
    n_train = len(enc_train) if config.train_limit is None else min(config.train_limit, len(enc_train))

    # where the batch stream stands: the generator state before this epoch's
    # permutation and the next offset in it (what a checkpoint needs to resume)
    stream = {"epoch_gen": gen.get_state(), "offset": 0}

    def batches():
        while True:
            stream["epoch_gen"] = gen.get_state()
            order = torch.randperm(n_train, generator=gen)
            start, stream["offset"] = stream["offset"], 0
            for s in range(start, max(n_train - config.batch_size + 1, 1), config.batch_size):
                stream["offset"] = s + config.batch_size
                yield scorer.collate(enc_train, order[s : s + config.batch_size])

    def snapshot():
        return prompt.detach().clone(), ({k: v.detach().clone() for k, v in head.state_dict().items()} if head else None)

    digest = ckpt.run_digest(task_name, backbone.name, config.to_dict(), init, teacher) \
        if resume and not config.tune_model else None
    saved = ckpt.load_checkpoint(digest) if digest else None
    if saved is not None and saved[0]["prompt"].shape != prompt.shape:
        saved = None
    first, elapsed = 1, 0.0
    if saved is not None:
        tensors, state = saved
        with torch.no_grad():
            prompt.copy_(tensors["prompt"])
        if head is not None:
            head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        ckpt.optimizer_from_parts(optim, tensors, state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(tensors["gen.epoch"])
        stream["offset"] = state["offset"]
        best_dev, best_step, bad_evals = state["best_dev"], state["best_step"], state["bad_evals"]
        best_prompt = tensors["best.prompt"].to(backbone.device)
        best_head = {k[10:]: v for k, v in tensors.items() if k.startswith("best.head.")} or None
        curve = [tuple(p) for p in state["curve"]]
        first, elapsed = state["step"] + 1, state["elapsed"]
    else:
        best_dev = scorer.accuracy(enc_dev, prompt.detach(), head, limit=config.dev_limit)
        best_step, (best_prompt, best_head) = 0, snapshot()
        curve = [(0, best_dev)]
        bad_evals = 0
    if on_eval:
        for point_step, acc in curve:
            on_eval(point_step, acc)

    def save_state(at: int) -> None:
        opt_tensors, opt_parts = ckpt.optimizer_to_parts(optim)
        tensors = {"prompt": prompt, "best.prompt": best_prompt, "gen.epoch": stream["epoch_gen"], **opt_tensors}
        if head is not None:
            tensors |= {f"head.{k}": v for k, v in head.state_dict().items()}
        if best_head:
            tensors |= {f"best.head.{k}": v for k, v in best_head.items()}
        ckpt.save_checkpoint(digest, tensors, {
            "step": at, "offset": stream["offset"], "best_dev": best_dev, "best_step": best_step,
            "bad_evals": bad_evals, "curve": curve, "optimizer": opt_parts, "scheduler": sched.state_dict(),
            "elapsed": elapsed + time.perf_counter() - t0})

    stopped_early, step = False, first - 1
    model.train(config.tune_model)
    batch_stream = batches()  # resumed: same permutation as the epoch under way, from the saved offset
    for step in range(first, config.steps + 1):
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled at step {step}")
        batch = next(batch_stream)
        loss = prompt_step(scorer, batch, prompt, optim, sched, head, teacher_logits, config.kd_weight)
        info = {"step": step, "steps": config.steps, "loss": float(loss)}
        if not math.isfinite(info["loss"]):
            raise PandaError(f"training diverged at step {step} (loss {info['loss']}); lower the learning rate")
        if step % config.eval_every == 0 or step == config.steps:
            dev = scorer.accuracy(enc_dev, prompt.detach(), head, limit=config.dev_limit)
            curve.append((step, dev))
            info["dev_acc"] = dev
            if on_eval:
                on_eval(step, dev)
            if dev > best_dev:
                best_dev, best_step, bad_evals = dev, step, 0
                best_prompt, best_head = snapshot()
            else:
                bad_evals += 1
                if config.patience is not None and bad_evals >= config.patience:
                    stopped_early = True
            if digest and step < config.steps and not stopped_early:
                save_state(step)
        if progress:
            progress(info)
        if stopped_early:
            break

    model.eval()
    head_mod = None
    if best_head is not None:
        head_mod = torch.nn.Linear(backbone.hidden_size, len(task.labels)).to(backbone.device)
        head_mod.load_state_dict(best_head)
    test_acc = scorer.accuracy(scorer.encode(test_ex), best_prompt, head_mod, limit=config.test_limit)
    if digest:
        ckpt.remove_checkpoint(digest)
    return TrainResult(
        prompt=best_prompt.cpu(),
        head={k: v.cpu() for k, v in best_head.items()} if best_head else None,
        best_dev=best_dev,
        best_step=best_step,
        test_acc=test_acc,
        dev_curve=curve,
        steps=step,
        seconds=elapsed + time.perf_counter() - t0,
        trainable_params=trainable,
        stopped_early=stopped_early,
    )


def evaluate(
    backbone, task_name: str, prompt: torch.Tensor, split: str = "test", head: dict | None = None,
    limit: int | None = None, max_length: int = 128, temperature: float = 20.0,
) -> float:
    """Accuracy of a fixed prompt on a task split (zero-shot transfer uses this)."""
    task = get_task(task_name)
    scorer = PromptScorer(backbone, task, prompt.shape[0], max_length, temperature)
    head_mod = None
    if head:
        head_mod = torch.nn.Linear(backbone.hidden_size, len(task.labels)).to(backbone.device)
        if head["weight"].shape[0] != len(task.labels):
            head_mod = None  # a head belongs to its task's label set; fall back to label scoring
        else:
            head_mod.load_state_dict(head)
    return scorer.accuracy(scorer.encode(load_split(task_name, split)), prompt.to(backbone.device), head_mod, limit=limit)
