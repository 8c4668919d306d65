"""The named objectives of the one training loop (`trainer.Trainer`). Each
turns one step's rows into a loss and back-propagates it:

- `CrossEntropy`: prompt tuning, prompt transfer (PoT) and model tuning: CE
  of the task's class scores under the prompt (and optional head);
- `Distillation`: PANDA: CE + ``kd_weight * MSE(student, teacher)`` class
  scores, the frozen teacher's read once per example (`TeacherCache`) and
  scored through the student's own head, so both live in one logit space;
- `Routing`: batched multi-prompt training: the K prompts are stacked and
  indexed per example, one forward of the shared trunk serves every task
  (`MultiTaskBatcher`), and the loss is the sum of each task's mean CE;
- `ProjectorDistance` and `ProjectorTask`: the two ways to train a
  cross-model projector (Su et al.): distance to the target backbone's own
  prompt, or the task loss through the frozen target backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..prompts import Encoded, PromptScorer
from ..prompts.encoding import EVAL_BATCH_SIZE
from .trainer import take_step


class TeacherCache:
    """PANDA's frozen teacher, run once per training example (eval mode, no
    gradient) into one table: a later epoch (or a later step that meets the
    example again) costs one gather, no forward.

    Without a head the table holds the teacher's (N, C) class logits. With one
    (the readout's class vectors or pair head, or a linear head) it holds what
    the head reads (`PromptScorer.head_inputs`), and each call scores those
    rows through the student's current head without gradient: the teacher's
    and the student's logits are then in the same space (a teacher scored
    through the label descriptions would not be)."""

    def __init__(self, scorer: PromptScorer, enc: Encoded, teacher: torch.Tensor,
                 head: torch.nn.Module | None = None) -> None:
        self.scorer, self.enc, self.teacher, self.head = scorer, enc, teacher, head
        self.table: torch.Tensor | None = None
        self.have = torch.zeros(len(enc), dtype=torch.bool)

    def prefill(self, index: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> int:
        """Run the teacher on the examples at `index` it has not seen, before
        training starts: one inference pass in batches grouped by length (a
        training batch would pad them to its own longest text, and run them in
        train-sized batches between steps). Returns how many it ran."""
        todo = torch.unique(index)
        todo = todo[~self.have[todo]]
        if not len(todo):
            return 0
        longest_first = todo[torch.argsort(self.enc.lengths[todo], descending=True, stable=True)]
        for start in range(0, len(longest_first), batch_size):
            self._fill(longest_first[start:start + batch_size])
        return len(todo)

    def _fill(self, todo: torch.Tensor) -> None:
        sub = self.scorer.collate(self.enc, todo)
        model = self.scorer.model
        was = model.training
        model.eval()
        with torch.no_grad():
            if self.head is None:
                z_t = self.scorer.logits(sub, self.teacher, None).float()
            else:
                z_t = self.scorer.head_inputs(sub, self.teacher, self.head).float()
        model.train(was)
        if self.table is None:
            self.table = torch.zeros(len(self.enc), z_t.shape[1], device=z_t.device)
        self.table[todo.to(z_t.device)] = z_t
        self.have[todo] = True

    def __call__(self, batch) -> torch.Tensor:
        index = batch.index
        have = self.have[index]
        if not bool(have.all()):  # bookkeeping on the CPU: no device sync
            self._fill(index[~have])
        rows = self.table[index.to(self.table.device)]
        if self.head is None:
            return rows
        with torch.no_grad():  # the student's head, as it is now; no gradient through the teacher
            return self.scorer.class_scores(rows, self.head).float()


class SingleLoss:
    """An objective with one member: its loss of one step's rows, back-propagated."""

    def loss(self, index: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, rows: dict[int, torch.Tensor | None]) -> torch.Tensor:
        return _backward(self.loss(rows.get(0)))


def _backward(loss: torch.Tensor) -> torch.Tensor:
    loss.backward()
    return loss.detach()


class CrossEntropy(SingleLoss):
    """CE of the task's class scores under the prompt (and head)."""

    name = "ce"

    def __init__(self, scorer: PromptScorer, enc: Encoded | None, prompt: torch.Tensor,
                 head: torch.nn.Module | None = None) -> None:
        self.scorer, self.enc, self.prompt, self.head = scorer, enc, prompt, head

    def loss(self, index: torch.Tensor | None) -> torch.Tensor:
        return self.batch_loss(self.scorer.collate(self.enc, index))

    def batch_loss(self, batch) -> torch.Tensor:
        return self.term(self.scorer.logits(batch, self.prompt, self.head), batch)

    def term(self, z: torch.Tensor, batch) -> torch.Tensor:
        return F.cross_entropy(z, batch.labels)


class Distillation(CrossEntropy):
    """PANDA: CE + ``kd_weight * MSE(z_student, z_teacher)``; the teacher (a
    fixed prompt on the frozen backbone) gets no gradient."""

    name = "ce+kd"

    def __init__(self, scorer: PromptScorer, enc: Encoded | None, prompt: torch.Tensor,
                 head: torch.nn.Module | None, teacher: TeacherCache, kd_weight: float) -> None:
        super().__init__(scorer, enc, prompt, head)
        self.teacher, self.kd_weight = teacher, kd_weight

    def term(self, z: torch.Tensor, batch) -> torch.Tensor:
        return super().term(z, batch) + self.kd_weight * F.mse_loss(z, self.teacher(batch))


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
    """One optimisation step of prompt tuning on a ready batch (the benchmark
    times exactly this): CE (+ kd_weight * MSE to the cached teacher logits),
    backward, clip the prompt's gradient, optimiser and schedule step.
    Returns the detached loss (no host sync here)."""
    objective = CrossEntropy(scorer, None, prompt, head) if teacher is None else \
        Distillation(scorer, None, prompt, head, teacher, kd_weight)
    return take_step(optim, sched, [([prompt], clip)], lambda: _backward(objective.batch_loss(batch)))


# ------------------------------------------------------------ multi-prompt routing
@dataclass
class TaskSlot:
    """One task of a batched run: its scorer (labels), splits and prompt."""

    name: str
    scorer: PromptScorer
    train: Encoded
    dev: Encoded
    test_examples: list
    prompt: torch.nn.Parameter
    offset: int = 0  # where its training examples start in the combined split
    n_train: int = 0


class MultiTaskBatcher:
    """Routes the rows of a mixed batch: the combined training split of all
    tasks, and the forward + loss of a mixed batch with per-example prompts."""

    def __init__(self, slots: Sequence[TaskSlot], token_budget: int | None = None) -> None:
        self.slots = list(slots)
        self.lead = self.slots[0].scorer  # splice/trunk/pool do not depend on the task
        self.token_budget = token_budget
        self.combined = _concat([s.train for s in self.slots], self.lead.pad_id)
        offset = 0
        task_of = []
        for k, s in enumerate(self.slots):
            s.offset = offset
            offset += len(s.train)
            task_of.append(torch.full((len(s.train),), k, dtype=torch.long))
        self.task_of = torch.cat(task_of)

    def stacked(self) -> torch.Tensor:
        """The (K, n, d) stack of the prompts (differentiable)."""
        return torch.stack([s.prompt for s in self.slots])

    def chunks(self, index: torch.Tensor) -> list[torch.Tensor]:
        """Split a step's rows into forward passes. Without a token budget: one
        pass. With one: rows sorted by length and cut so that rows x width stays
        under the budget, which avoids padding short texts to a long task's width."""
        if self.token_budget is None:
            return [index]
        lengths = self.combined.lengths[index]
        order = torch.argsort(lengths, descending=True, stable=True)
        out, start = [], 0
        sorted_len = lengths[order].tolist()
        while start < len(order):
            width = sorted_len[start]
            rows = max(1, self.token_budget // max(width, 1))
            out.append(index[order[start : start + rows]])
            start += rows
        return out

    def loss(self, index: torch.Tensor, weights: torch.Tensor, stacked: torch.Tensor) -> torch.Tensor:
        """Weighted CE of one forward pass over combined-split rows `index`;
        `weights[k]` scales task k's per-example losses (1 / its rows in the step)."""
        batch = self.lead.collate(self.combined, index)
        task = self.task_of[index]
        per_example = stacked[task.to(stacked.device)]  # (B, n, d): each row's own prompt
        outputs = self.lead.scoring_outputs(batch, per_example)
        total = outputs.new_zeros(())
        for k in torch.unique(task).tolist():
            rows = (task == k).nonzero().squeeze(1).to(outputs.device)
            z = self.slots[k].scorer.class_scores(outputs[rows])
            total = total + weights[k] * F.cross_entropy(z, batch.labels[rows], reduction="sum")
        return total


def _concat(encs: Sequence[Encoded], pad_id: int) -> Encoded:
    """One Encoded holding every task's examples in order (ids are shared, not copied)."""
    ids = [row for e in encs for row in e.ids]
    labels = torch.cat([e.labels for e in encs])
    width = max(e.padded.shape[1] for e in encs)
    padded = torch.full((len(ids), width), pad_id, dtype=torch.long)
    start = 0
    for e in encs:
        padded[start : start + len(e), : e.padded.shape[1]] = e.padded
        start += len(e)
    segments = None
    if any(e.padded_segments is not None for e in encs):  # tasks of single texts are all segment 0
        segments = torch.zeros_like(padded)
        start = 0
        for e in encs:
            if e.padded_segments is not None:
                segments[start : start + len(e), : e.padded_segments.shape[1]] = e.padded_segments
            start += len(e)
    return Encoded(ids=ids, labels=labels, padded=padded, lengths=torch.cat([e.lengths for e in encs]),
                   padded_segments=segments)


class Routing:
    """Batched multi-prompt training. `rows[k]` are task k's example positions
    in its own split. Loss = sum over tasks of the task's mean CE, so each
    prompt's gradient is the one its separate run would get from the same
    examples; prompts of tasks without rows get no gradient (and so no
    optimiser update, no momentum or decay drift either)."""

    name = "routing"

    def __init__(self, batcher: MultiTaskBatcher) -> None:
        self.batcher = batcher

    def backward(self, rows: dict[int, torch.Tensor | None]) -> torch.Tensor:
        slots = self.batcher.slots
        parts, weights = [], torch.zeros(len(slots))
        for k, idx in rows.items():
            if len(idx):
                parts.append(idx + slots[k].offset)
                weights[k] = 1.0 / len(idx)
        total = torch.zeros(())
        for chunk in self.batcher.chunks(torch.cat(parts)) if parts else []:
            loss = self.batcher.loss(chunk, weights, self.batcher.stacked())
            loss.backward()
            total = total + loss.detach().cpu()
        for k, s in enumerate(slots):
            if k not in rows or not len(rows[k]):
                s.prompt.grad = None
        return total


def multitask_step(
    batcher: MultiTaskBatcher,
    rows: dict[int, torch.Tensor],
    optim: torch.optim.Optimizer,
    sched=None,
    clip: float = 1.0,
) -> torch.Tensor:
    """One optimisation step over a mixed batch (see `Routing`); each prompt's
    gradient is clipped on its own, as in its separate run. A step without
    rows changes nothing."""
    if not any(len(idx) for idx in rows.values()):
        optim.zero_grad(set_to_none=True)
        return torch.zeros(())
    clips = [([s.prompt], clip) for s in batcher.slots]
    return take_step(optim, sched, clips, lambda: Routing(batcher).backward(rows))


# ------------------------------------------------------------ projector losses
class ProjectorDistance(SingleLoss):
    """Distance minimising: mean over positions of ||Proj(P_s) - P_t||, P_t a
    prompt trained on the target backbone for the same task (no batches)."""

    name = "distance"

    def __init__(self, projector: torch.nn.Module, source: torch.Tensor, target: torch.Tensor) -> None:
        self.projector, self.source, self.target = projector, source, target

    def loss(self, index: torch.Tensor | None) -> torch.Tensor:
        return (self.projector(self.source) - self.target).norm(dim=-1).mean()


class ProjectorTask(SingleLoss):
    """Task tuning: CE of the frozen target backbone driven by Proj(P_s)
    (transfers better zero-shot)."""

    name = "task"

    def __init__(self, projector: torch.nn.Module, source: torch.Tensor, scorer: PromptScorer, enc: Encoded) -> None:
        self.projector, self.source, self.scorer, self.enc = projector, source, scorer, enc

    def loss(self, index: torch.Tensor | None) -> torch.Tensor:
        batch = self.scorer.collate(self.enc, index)
        return F.cross_entropy(self.scorer.logits(batch, self.projector(self.source)), batch.labels)
