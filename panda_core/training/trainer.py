"""The one training loop. Prompt tuning, prompt transfer (PoT), PANDA, model
tuning, batched multi-prompt training and cross-model projectors all run
through `Trainer`; what differs between them is named, not copied:

- the *objective* (`objectives.py`): what one step's loss is and how it is
  back-propagated (CE, CE + distillation, routing over stacked prompts,
  projector losses);
- the *parameter groups* (`ParamGroup`): what is trained, at which learning
  rate, and whether its gradient norm is clipped;
- the *members* (`Member`): what is evaluated on dev and kept at its best-dev
  state, each with its own seeded batch stream (one per task of a batched run).

The Trainer owns everything else once: AdamW with linear warm-up then linear
decay, the batch streams, dev evaluation every ``eval_every`` steps, best-dev
tracking and patience, checkpoint/resume, the progress callback and
cancellation (`should_stop` -> `Cancelled`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import torch

from ..errors import Cancelled, PandaError
from . import checkpoint as ckpt
from .config import TrainConfig

Progress = Callable[[dict], None]
OnEval = Callable[[str, int, float], None]  # (member name, step, dev accuracy)
MEMBER_KEYS = {"offset", "best_dev", "best_step", "bad_evals", "curve"}
RUN_KEYS = {"step", "optimizer", "scheduler", "elapsed"}


def lr_lambda(step: int, total: int, warmup_steps: int) -> float:
    """Linear warm-up over `warmup_steps`, then linear decay to 0 at `total`."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    return max(0.0, (total - step) / max(1, total - warmup_steps))


#: batches per length-sorted group of a length-grouped epoch (the `group_by_length` idea)
GROUP_BATCHES = 50


class Stream:
    """Seeded shuffled epochs of example positions, `batch_size` at a time (an
    epoch's incomplete last batch is dropped unless it is the only one).

    With `lengths` (length-grouped batching) an epoch's permutation is cut
    into groups of `GROUP_BATCHES` batches, each group is sorted by length
    and cut into batches, and the order of the full batches is shuffled (an
    incomplete one stays last): every batch holds texts of similar length, so
    little padding is computed, and the batches still come in random order.
    The epoch order is a function of the generator state alone, so a
    checkpoint's state restores it exactly either way.

    Its state is the generator state before the current epoch's permutation
    plus the offset in it, which is what a checkpoint stores. Kept from the
    first loop so stored results reproduce bit for bit: the epoch after a
    finished one starts at the offset left behind, so one permutation is drawn
    and skipped between epochs. `restore` reproduces that skip too, so a run
    resumed from a checkpoint taken at an epoch's end continues exactly."""

    def __init__(self, n: int, batch_size: int, seed: int, lengths: torch.Tensor | None = None) -> None:
        self.n, self.batch_size = n, batch_size
        self.lengths = None if lengths is None else lengths[:n].clone()
        self.gen = torch.Generator().manual_seed(seed)
        self.seed = seed
        self.epoch_gen = self.gen.get_state()
        self.offset = 0
        self._order: torch.Tensor | None = None
        self._next = 0

    @property
    def _stop(self) -> int:
        return max(self.n - self.batch_size + 1, 1)

    def __iter__(self) -> Stream:
        return self

    def _epoch(self) -> torch.Tensor:
        """One epoch's order of positions (draws from the generator)."""
        order = torch.randperm(self.n, generator=self.gen)
        if self.lengths is None:
            return order
        group = GROUP_BATCHES * self.batch_size
        chunks = []
        for start in range(0, self.n, group):
            part = order[start:start + group]
            part = part[torch.argsort(self.lengths[part], descending=True, stable=True)]
            chunks += list(part.split(self.batch_size))
        full = [c for c in chunks if len(c) == self.batch_size]
        rest = [c for c in chunks if len(c) < self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=self.gen).tolist()]
        return torch.cat(shuffled + rest)

    def __next__(self) -> torch.Tensor:
        while True:
            if self._order is None:
                self.epoch_gen = self.gen.get_state()
                self._order = self._epoch()
                self._next, self.offset = self.offset, 0
            start = self._next
            if start < self._stop:
                self._next = self.offset = start + self.batch_size
                return self._order[start : start + self.batch_size]
            self._order = None

    def restore(self, epoch_gen: torch.Tensor, offset: int) -> None:
        """Continue from a saved (epoch generator state, offset)."""
        self.gen.set_state(epoch_gen)
        self.epoch_gen, self.offset, self._order = self.gen.get_state(), int(offset), None
        if self.offset >= self._stop:  # saved at an epoch's end: that permutation is spent already
            self._epoch()

    def visits(self, steps: int) -> torch.Tensor:
        """The positions the first `steps` batches of a fresh stream like this one
        visit (this stream is not advanced): what a teacher pass must cover."""
        fresh = Stream(self.n, self.batch_size, self.seed, self.lengths)
        return torch.unique(torch.cat([next(fresh) for _ in range(steps)])) if steps > 0 else torch.zeros(0, dtype=torch.long)


@dataclass
class ParamGroup:
    """Trained tensors sharing a learning rate. `clip` bounds the group's
    gradient norm (None: unclipped); `clip_each` bounds each tensor's own norm
    (one prompt per task, as in its separate run)."""

    name: str
    params: list[torch.Tensor]
    lr: float
    clip: float | None = None
    clip_each: bool = False

    def clips(self) -> list[tuple[list[torch.Tensor], float]]:
        if self.clip is None:
            return []
        if self.clip_each:
            return [([p], self.clip) for p in self.params]
        return [(self.params, self.clip)]


@dataclass
class Member:
    """What is evaluated on dev and kept at its best: a task's prompt (and
    head), or a projector. `params` are the tensors a best-dev snapshot and a
    checkpoint hold (their names are the checkpoint's tensor names)."""

    name: str
    params: dict[str, torch.Tensor]
    evaluate: Callable[[], float]
    stream: Stream | None = None
    baseline: bool = True  # evaluate the starting point too (False: a random start, e.g. a fresh projector)
    best_dev: float = -math.inf
    best_step: int = 0
    best: dict[str, torch.Tensor] = field(default_factory=dict)
    bad_evals: int = 0
    stopped: bool = False
    curve: list[tuple[int, float]] = field(default_factory=list)

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.params.items()}

    def start(self) -> None:
        """Step 0: the starting point is the first best (when it is a `baseline`)."""
        self.best_step, self.best = 0, self.snapshot()
        if self.baseline:
            acc = self.evaluate()
            self.best_dev, self.curve = acc, [(0, acc)]

    def record(self, step: int, acc: float, patience: int | None) -> None:
        """A dev evaluation: keep a new best, or count towards patience."""
        self.curve.append((step, acc))
        if acc > self.best_dev:
            self.best_dev, self.best_step, self.bad_evals = acc, step, 0
            self.best = self.snapshot()
        else:
            self.bad_evals += 1
            if patience is not None and self.bad_evals >= patience:
                self.stopped = True

    # ------------------------------------------------------------ checkpoint
    def tensor_names(self, prefix: str) -> set[str]:
        names = {prefix + k for k in self.params} | {f"{prefix}best.{k}" for k in self.params}
        return names | ({prefix + "gen.epoch"} if self.stream is not None else set())

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {prefix + k: v for k, v in self.params.items()} | {f"{prefix}best.{k}": v for k, v in self.best.items()}
        return out | ({prefix + "gen.epoch": self.stream.epoch_gen} if self.stream is not None else {})

    def state(self) -> dict:
        return {"offset": self.stream.offset if self.stream is not None else 0, "best_dev": self.best_dev,
                "best_step": self.best_step, "bad_evals": self.bad_evals, "curve": self.curve,
                "stopped": self.stopped}

    def fits(self, tensors: dict[str, torch.Tensor], state: object, prefix: str) -> bool:
        """Whether a checkpoint's part for this member matches it (checked before anything is restored)."""
        return isinstance(state, dict) and MEMBER_KEYS <= set(state) and all(
            tensors[prefix + k].shape == v.shape == tensors[f"{prefix}best.{k}"].shape for k, v in self.params.items())

    def restore(self, tensors: dict[str, torch.Tensor], state: dict, prefix: str) -> None:
        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(tensors[prefix + k])
        self.best = {k: tensors[f"{prefix}best.{k}"].to(v.device) for k, v in self.params.items()}
        if self.stream is not None:
            self.stream.restore(tensors[prefix + "gen.epoch"], state["offset"])
        self.best_dev, self.best_step, self.bad_evals = state["best_dev"], state["best_step"], state["bad_evals"]
        self.curve = [(int(s), float(a)) for s, a in state["curve"]]
        self.stopped = bool(state.get("stopped", False))


class Objective(Protocol):
    """One step's loss: forward and backward over each active member's rows
    (`rows[k]`: example positions from member k's stream, None without one);
    returns the detached loss summed over members."""

    def backward(self, rows: dict[int, torch.Tensor | None]) -> torch.Tensor: ...


def take_step(optim: torch.optim.Optimizer, sched, clips: list[tuple[list[torch.Tensor], float]],
              backward: Callable[[], torch.Tensor]) -> torch.Tensor:
    """One optimisation step: clear gradients, back-propagate, clip, update,
    advance the schedule. Returns the detached loss (no host sync here)."""
    optim.zero_grad(set_to_none=True)
    loss = backward()
    for params, max_norm in clips:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    optim.step()
    if sched is not None:
        sched.step()
    return loss


class Trainer:
    """Runs `config.steps` optimisation steps of `objective` over `groups`,
    evaluating `members` on dev every `config.eval_every` steps (and at the
    last step) and keeping each member's best-dev state.

    Args:
        digest: checkpoint name (see `checkpoint.run_digest`); None disables
            checkpoint/resume. A checkpoint is saved at every dev evaluation
            and picked up by a later run with the same digest.
        model: a module put in train mode `model_train` for the loop and in
            eval mode after it (None: nothing to switch).
        progress: called each step with {"step", "steps", "loss", "dev_acc"?,
            "dev"? (per member, batched runs)}.
        should_stop: polled before each step; True raises `Cancelled`.
        on_eval: called with (member name, step, dev accuracy) for every point
            of the dev curves, including those restored from a checkpoint.
        t0: when the run started (its seconds count from there).
    """

    def __init__(self, config: TrainConfig, objective: Objective, groups: list[ParamGroup],
                 members: list[Member], *, digest: str | None = None, model: torch.nn.Module | None = None,
                 model_train: bool = False, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None, on_eval: OnEval | None = None,
                 t0: float | None = None) -> None:
        self.config, self.objective, self.groups, self.members = config, objective, groups, members
        self.digest, self.model, self.model_train = digest, model, model_train
        self.progress, self.should_stop, self.on_eval = progress, should_stop, on_eval
        self.t0 = time.perf_counter() if t0 is None else t0
        self.elapsed = 0.0  # seconds of earlier, interrupted attempts
        self.optim = torch.optim.AdamW([{"params": g.params, "lr": g.lr} for g in groups],
                                       weight_decay=config.weight_decay)
        warm = int(config.warmup * config.steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, lambda s: lr_lambda(s, config.steps, warm))
        self.clips = [c for g in groups for c in g.clips()]
        self.trainable = sum(p.numel() for g in groups for p in g.params)
        self.step = 0

    @property
    def stopped_early(self) -> bool:
        return all(m.stopped for m in self.members)

    def seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.t0

    def run(self) -> int:
        """Train (resuming from a checkpoint when there is one); returns the last step run."""
        config = self.config
        resumed = self._resume()
        first = resumed or 1
        if resumed is None:
            for m in self.members:
                m.start()
        if self.on_eval:
            for m in self.members:
                for point_step, acc in m.curve:
                    self.on_eval(m.name, point_step, acc)
        if self.model is not None:
            self.model.train(self.model_train)
        self.step = first - 1
        for step in range(first, config.steps + 1):
            if self.should_stop is not None and self.should_stop():
                raise Cancelled(f"cancelled at step {step - 1}/{config.steps}")
            rows = {k: next(m.stream) if m.stream is not None else None
                    for k, m in enumerate(self.members) if not m.stopped}
            loss = take_step(self.optim, self.sched, self.clips, partial(self.objective.backward, rows))
            self.step = step
            info = {"step": step, "steps": config.steps, "loss": float(loss) / max(len(rows), 1)}
            if not math.isfinite(info["loss"]):
                raise PandaError(f"training diverged at step {step} (loss {info['loss']}); lower the learning rate")
            if step % config.eval_every == 0 or step == config.steps:
                self._evaluate(step, rows, info)
                if self.digest and step < config.steps and not self.stopped_early:
                    self._save(step)
            if self.progress:
                self.progress(info)
            if self.stopped_early:
                break
        if self.model is not None:
            self.model.eval()
        return self.step

    def finish(self) -> None:
        """Drop the checkpoint once the run's results are safe."""
        if self.digest:
            ckpt.remove_checkpoint(self.digest)

    def _evaluate(self, step: int, rows: dict, info: dict) -> None:
        devs = {}
        for k in rows:
            m = self.members[k]
            acc = m.evaluate()
            devs[m.name] = acc
            if self.on_eval:
                self.on_eval(m.name, step, acc)
            m.record(step, acc, self.config.patience)
        info["dev_acc"] = sum(devs.values()) / max(len(devs), 1)
        if len(self.members) > 1:
            info["dev"] = devs

    # ------------------------------------------------------------ checkpoint
    def _prefix(self, k: int) -> str:
        return "" if len(self.members) == 1 else f"m{k}."  # one member: the first loop's tensor names

    def _save(self, step: int) -> None:
        opt_tensors, opt_parts = ckpt.optimizer_to_parts(self.optim)
        tensors = dict(opt_tensors)
        for k, m in enumerate(self.members):
            tensors |= m.tensors(self._prefix(k))
        state = {"step": step, "optimizer": opt_parts, "scheduler": self.sched.state_dict(), "elapsed": self.seconds()}
        parts = [m.state() for m in self.members]
        ckpt.save_checkpoint(self.digest, tensors, state | (parts[0] if len(parts) == 1 else {"members": parts}))

    def _resume(self) -> int | None:
        """Restore a saved run of the same work; returns the first step to run (None: start afresh)."""
        if not self.digest:
            return None
        single = len(self.members) == 1
        names = set().union(*(m.tensor_names(self._prefix(k)) for k, m in enumerate(self.members)))
        saved = ckpt.load_checkpoint(self.digest, RUN_KEYS | (MEMBER_KEYS if single else {"members"}), names)
        if saved is None:
            return None
        tensors, state = saved
        parts = [state] if single else state["members"]
        if not isinstance(parts, list) or len(parts) != len(self.members) or not all(
                m.fits(tensors, part, self._prefix(k)) for k, (m, part) in enumerate(zip(self.members, parts, strict=True))):
            return None
        for k, (m, part) in enumerate(zip(self.members, parts, strict=True)):
            m.restore(tensors, part, self._prefix(k))
        ckpt.optimizer_from_parts(self.optim, tensors, state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.elapsed = float(state["elapsed"])
        return int(state["step"]) + 1
