"""Batched multi-prompt training: prompts for several tasks trained in one run
through one copy of the frozen backbone.

Each step takes ``batch_size`` examples from every task (each task walks its
own shuffled epochs, seeded as a separate ``train.train`` run would be), mixes
them into one batch, and routes every example to its task's prompt: the K
prompts are stacked into a (K, n, d) tensor and indexed per example into the
(B, n, d) prompt the scorer splices in. One forward of the shared trunk serves
every task; each task's rows are then scored through that task's labels and
the loss is the sum over tasks of each task's mean cross-entropy. So each
prompt's gradient is exactly the gradient its own separate run would get from
the same examples, a prompt without examples in a step gets no gradient and
no optimiser update, and each task keeps its own best-dev checkpoint.

On two CPU cores this saves little wall-clock (the frozen trunk does the same
work per example either way, see docs/performance.md); on a GPU, where one
task's small batch leaves the device idle, it is the way to fill it.

Example::

    from panda_core.multitask import train_prompts
    rows = train_prompts(["mr", "yelp_uci"], "minilm", TrainConfig(steps=100))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import PandaError
from .prompts import init_prompt
from .scoring import Encoded, PromptScorer
from .tasks import get_task, load_split
from .train import Cancelled, TrainConfig, TrainResult, lr_lambda

Progress = Callable[[dict], None]

# rows x padded width per forward pass: a step's mixed rows are sorted by length
# and cut into passes of about this many tokens, so a short task's texts are
# not padded to a long task's width (None: one pass for the whole step)
DEFAULT_TOKEN_BUDGET = 4096


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
    return Encoded(ids=ids, labels=labels, padded=padded, lengths=torch.cat([e.lengths for e in encs]))


def _task_stream(n_train: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """The same example order as a separate `train.train` run with this seed."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n_train, generator=gen)
        for s in range(0, max(n_train - batch_size + 1, 1), batch_size):
            yield order[s : s + batch_size]


def multitask_step(
    batcher: MultiTaskBatcher,
    rows: dict[int, torch.Tensor],
    optim: torch.optim.Optimizer,
    sched=None,
    clip: float = 1.0,
) -> torch.Tensor:
    """One optimisation step over a mixed batch. `rows[k]` are task k's example
    positions in its own split. Loss = sum over tasks of the task's mean CE;
    each prompt's gradient is clipped on its own (as in its separate run);
    prompts of tasks without rows get no gradient and are left untouched."""
    parts, weights = [], torch.zeros(len(batcher.slots))
    for k, idx in rows.items():
        if len(idx):
            parts.append(idx + batcher.slots[k].offset)
            weights[k] = 1.0 / len(idx)
    optim.zero_grad(set_to_none=True)
    if not parts:
        return torch.zeros(())
    index = torch.cat(parts)
    total = torch.zeros(())
    for chunk in batcher.chunks(index):
        loss = batcher.loss(chunk, weights, batcher.stacked())
        loss.backward()
        total = total + loss.detach().cpu()
    for k, s in enumerate(batcher.slots):
        if k not in rows or not len(rows[k]):
            s.prompt.grad = None  # AdamW skips it: no momentum or decay drift either
        elif s.prompt.grad is not None:
            torch.nn.utils.clip_grad_norm_([s.prompt], clip)
    optim.step()
    if sched is not None:
        sched.step()
    return total


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
        train_ex, dev_ex, test_ex = (load_split(name, s) for s in ("train", "dev", "test"))
        if not train_ex or not dev_ex or not test_ex:
            raise PandaError(f"task '{name}' has an empty split; re-run `python -m panda_core data prepare`")
        scorer = PromptScorer(backbone, task, config.prompt_length, config.max_length, config.temperature)
        init = (inits or {}).get(name)
        if init is None:
            init = init_prompt(backbone.embeddings(), config.prompt_length, config.init, seed=config.seed)
        if init.shape[0] != config.prompt_length:
            raise PandaError(f"initial prompt of '{name}' has {init.shape[0]} tokens, not {config.prompt_length}")
        prompt = torch.nn.Parameter(init.detach().clone().float().to(backbone.device))
        enc = scorer.encode(train_ex)
        n_train = len(enc) if config.train_limit is None else min(config.train_limit, len(enc))
        slots.append(TaskSlot(name, scorer, enc, scorer.encode(dev_ex), test_ex, prompt, n_train=n_train))
    return slots


def train_multitask(
    backbone,
    tasks: Sequence[str],
    config: TrainConfig,
    inits: dict[str, torch.Tensor] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_eval: Callable[[str, int, float], None] | None = None,
    token_budget: int | None = DEFAULT_TOKEN_BUDGET,
) -> dict[str, TrainResult]:
    """Train one prompt per task in one batched run; returns each task's
    best-dev result (the same fields as `train.train`).

    `config` is shared (steps, per-task batch size, learning rate, schedule,
    evaluation); `inits` may give a task its starting prompt; `token_budget`
    bounds rows x width of one forward pass (see `MultiTaskBatcher.chunks`).
    Prompt-only: heads, model tuning and distillation use `train.train`."""
    if config.head or config.tune_model or config.kd_weight:
        raise PandaError("batched training covers prompt tuning only (no head, model tuning or distillation)")
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    slots = build_slots(backbone, tasks, config, inits)
    batcher = MultiTaskBatcher(slots, token_budget)
    lr = config.lr if config.lr is not None else getattr(backbone, "default_lr", 0.01)
    optim = torch.optim.AdamW([s.prompt for s in slots], lr=lr, weight_decay=config.weight_decay)
    warm = int(config.warmup * config.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: lr_lambda(s, config.steps, warm))
    streams = [_task_stream(s.n_train, config.batch_size, config.seed) for s in slots]

    def evaluate(k: int) -> float:
        s = slots[k]
        return s.scorer.accuracy(s.dev, s.prompt.detach(), None, limit=config.dev_limit)

    best = []
    for k, s in enumerate(slots):
        acc = evaluate(k)
        best.append({"dev": acc, "step": 0, "prompt": s.prompt.detach().clone(), "curve": [(0, acc)],
                     "bad": 0, "stopped": False})
        if on_eval:
            on_eval(s.name, 0, acc)
    step = 0
    backbone.model.eval()
    for step in range(1, config.steps + 1):
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled at step {step}")
        rows = {k: next(streams[k]) for k in range(len(slots)) if not best[k]["stopped"]}
        loss = multitask_step(batcher, rows, optim, sched)
        info = {"step": step, "steps": config.steps, "loss": float(loss) / max(len(rows), 1)}
        if not torch.isfinite(loss):
            raise PandaError(f"training diverged at step {step}; lower the learning rate")
        if step % config.eval_every == 0 or step == config.steps:
            devs = {}
            for k in rows:
                acc = evaluate(k)
                devs[slots[k].name] = acc
                b = best[k]
                b["curve"].append((step, acc))
                if on_eval:
                    on_eval(slots[k].name, step, acc)
                if acc > b["dev"]:
                    b.update(dev=acc, step=step, prompt=slots[k].prompt.detach().clone(), bad=0)
                else:
                    b["bad"] += 1
                    if config.patience is not None and b["bad"] >= config.patience:
                        b["stopped"] = True
            info["dev_acc"] = sum(devs.values()) / max(len(devs), 1)
            info["dev"] = devs
        if progress:
            progress(info)
        if all(b["stopped"] for b in best):
            break

    seconds = time.perf_counter() - t0
    out = {}
    for k, s in enumerate(slots):
        b = best[k]
        test_acc = s.scorer.accuracy(s.scorer.encode(s.test_examples), b["prompt"], None, limit=config.test_limit)
        out[s.name] = TrainResult(
            prompt=b["prompt"].cpu(), head=None, best_dev=b["dev"], best_step=b["step"], test_acc=test_acc,
            dev_curve=b["curve"], steps=step, seconds=seconds, trainable_params=s.prompt.numel(),
            stopped_early=b["stopped"],
        )
    return out


def train_prompts(
    tasks: Sequence[str],
    backbone: str = "minilm",
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    token_budget: int | None = DEFAULT_TOKEN_BUDGET,
) -> list[dict]:
    """Prompt tuning for several tasks in one batched run, recorded like
    `runs.train_prompt`: one "train"/"pt" run per task with its dev curve, and
    each best-dev prompt saved to the store (method "pt"). Returns one result
    dict per task, in order (the same keys as `runs.train_prompt`)."""
    from . import store
    from .backbones import get_backbone
    from .prompts import SoftPrompt
    from .train import evaluate

    config = config or TrainConfig()
    tasks = list(tasks)
    for t in tasks:
        get_task(t)  # fail fast on an unknown task
    bb = get_backbone(backbone)
    runs = {t: store.create_run("train", "pt", t, bb.name, config.to_dict()) for t in tasks}
    for rid in runs.values():
        store.update_run(rid, status="running")
    try:
        inits = {t: init_prompt(bb.embeddings(), config.prompt_length, config.init, seed=config.seed) for t in tasks}
        init_acc = {t: evaluate(bb, t, inits[t], "test", limit=config.test_limit, max_length=config.max_length,
                                temperature=config.temperature) for t in tasks}
        results = train_multitask(
            bb, tasks, config, inits=inits, progress=progress, should_stop=should_stop,
            on_eval=lambda task, step, acc: store.add_curve_point(runs[task], step, acc), token_budget=token_budget,
        )
    except Cancelled as err:
        for rid in runs.values():
            store.update_run(rid, status="cancelled", error=str(err))
        raise
    except BaseException as err:
        msg = str(err).splitlines()[0][:500] if str(err) else type(err).__name__
        for rid in runs.values():
            store.update_run(rid, status="failed", error=msg)
        raise
    out = []
    for t in tasks:
        r, run_id = results[t], runs[t]
        prompt = SoftPrompt(
            tensor=r.prompt, backbone=bb.name, task=t, method="pt", seed=config.seed, steps=r.steps,
            scores={"init_test_acc": init_acc[t], "dev_acc": r.best_dev, "test_acc": r.test_acc},
            extra={"config": config.to_dict(), "best_step": r.best_step, "trainable_params": r.trainable_params,
                   "run_id": run_id, "batched_with": tasks},
        )
        prompt_id = store.save_prompt(prompt)
        row = {
            "prompt_id": prompt_id, "run_id": run_id, "task": t, "backbone": bb.name,
            "init_test_acc": round(init_acc[t], 4), "dev_acc": round(r.best_dev, 4),
            "test_acc": round(r.test_acc, 4), "steps": r.steps, "seconds": round(r.seconds, 1),
            "best_step": r.best_step, "trainable_params": r.trainable_params, "dev_curve": r.dev_curve,
            "batched_with": tasks,
        }
        store.update_run(run_id, status="done", result=row, prompt_id=prompt_id)
        out.append(row)
    return out
