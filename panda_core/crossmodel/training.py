"""Training a cross-model projector through the one `training.Trainer`, and
the projection run (train, save, score projected prompts zero-shot).

The projector is one more member of the Trainer: its parameters are the one
parameter group, the objective is `ProjectorDistance` or `ProjectorTask`,
and the Trainer gives it what prompt training has: the warm-up and decay
schedule of its `TrainConfig`, a seeded batch stream (task method), a dev
evaluation every ``eval_every`` steps (the dev accuracy of the projected
training-task prompt on the target backbone, for both methods), best-dev
selection, checkpoint/resume and cancellation. A freshly initialised
projector is random, so it is not evaluated at step 0 and never "best".
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from .. import store
from ..backbones import get_backbone
from ..data import get_task
from ..data.lookup import majority_of_test
from ..prompts import PromptInit, PromptScorer, init_prompt, readouts
from ..stats import accuracy_with_ci, paired_difference
from ..training import checkpoint as ckpt
from ..training.config import TrainConfig
from ..training.objectives import ProjectorDistance, ProjectorTask
from ..training.trainer import Member, OnEval, ParamGroup, Progress, Stream, Trainer
from ..training.tuning import evaluate_items, n_train, task_splits
from .config import DEFAULT_LR, HIDDEN, projector_config, projector_method, pt_prompt
from .projector import PromptProjector, save_projector


def train_projector(
    source_backbone: str,
    target_backbone: str,
    train_task: str,
    method: str = "task",
    steps: int = 200,
    lr: float = DEFAULT_LR,
    hidden: int = HIDDEN,
    prompt_length: int = 20,
    batch_size: int = 16,
    seed: int = 0,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    config: TrainConfig | None = None,
    on_eval: OnEval | None = None,
    resume: bool = True,
) -> tuple[PromptProjector, dict]:
    """Train a projector from the `train_task` prompt of the source backbone;
    returns the best-dev projector (eval mode) and its metadata. `config`
    replaces the step/lr/length/batch/seed arguments (see `projector_config`)."""
    method = projector_method(method)
    config = config or projector_config(steps, lr, prompt_length, batch_size, seed)
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)  # the projector's initial weights
    bb_s, bb_t = get_backbone(source_backbone), get_backbone(target_backbone)
    length = config.prompt_length
    p_s = pt_prompt(train_task, bb_s.name, length).to(bb_t.device)
    proj = PromptProjector(length, bb_s.hidden_size, bb_t.hidden_size, hidden).to(bb_t.device)
    train_ex, dev_ex, _ = task_splits(train_task)
    scorer = PromptScorer(bb_t, get_task(train_task), length, config.max_length, config.temperature)
    enc_dev = scorer.encode(dev_ex)
    p_t, stream = None, None
    if method == "distance":
        p_t = pt_prompt(train_task, bb_t.name, length).to(bb_t.device)
        objective = ProjectorDistance(proj, p_s, p_t)
    else:
        enc = scorer.encode(train_ex)
        objective = ProjectorTask(proj, p_s, scorer, enc)
        stream = Stream(n_train(config, enc), config.batch_size, config.seed)

    def dev_acc() -> float:
        with torch.no_grad():
            projected = proj(p_s)
        return scorer.accuracy(enc_dev, projected, None, limit=config.dev_limit)

    member = Member("projector", dict(proj.named_parameters()), dev_acc, stream, baseline=False)
    digest = ckpt.run_digest(train_task, f"{bb_s.name}->{bb_t.name}",
                             config.to_dict() | {"projector": method, "hidden": hidden}, p_s, p_t) if resume else None
    group = ParamGroup("projector", list(proj.parameters()), config.lr if config.lr is not None else DEFAULT_LR)
    trainer = Trainer(config, objective, [group], [member], digest=digest, progress=progress,
                      should_stop=should_stop, on_eval=on_eval, t0=t0)
    trainer.run()
    proj.load_state_dict(member.best)
    trainer.finish()
    meta = {"source_backbone": bb_s.name, "target_backbone": bb_t.name, "train_task": train_task,
            "method": method, "steps": config.steps, "lr": group.lr, "seed": config.seed,
            "seconds": round(trainer.seconds(), 1), "warmup": config.warmup, "best_dev": round(member.best_dev, 4),
            "best_step": member.best_step, "dev_curve": member.curve}
    return proj.eval(), meta


_REFERENCE: dict[tuple, torch.Tensor] = {}


def _reference_items(bb, task: str, which: tuple, prompt: torch.Tensor | None, limit: int | None) -> torch.Tensor:
    """Per-item correctness of a reference prompt (random, or the target
    backbone's own PT prompt with its recorded readout and head), computed once
    per process: both projector methods compare to it."""
    key = (bb.name, task, which, limit)
    if key not in _REFERENCE:
        head, readout = None, None
        if prompt is None:
            stored = store.load_prompt(which[1])
            prompt, head, readout = stored.tensor, stored.head, readouts.recorded(stored, bb.kind)
        _REFERENCE[key] = evaluate_items(bb, task, prompt, head=head, limit=limit, readout=readout)
    return _REFERENCE[key]


def _scored(name: str, items: torch.Tensor) -> dict:
    """{name: accuracy, name_ci: its Wilson 95% interval} over the scored items."""
    got = accuracy_with_ci(items)
    return {name: got["acc"], f"{name}_ci": got["ci"]}


def _projected_row(proj: PromptProjector, task: str, bb_s, bb_t, config: TrainConfig, rand: torch.Tensor) -> dict:
    """One eval task: its projected source prompt, a random prompt and the
    target's own PT prompt, zero-shot on the same test items, each accuracy
    with its interval, next to the majority class; projected - random and
    projected - own PT are paired differences on those items."""
    length, limit = config.prompt_length, config.test_limit
    with torch.no_grad():
        projected = proj(pt_prompt(task, bb_s.name, length).to(bb_t.device))
    mine = evaluate_items(bb_t, task, projected, limit=limit)
    random_items = _reference_items(bb_t, task, ("random", config.seed, length), rand, limit)
    row = {"task": task, "family": get_task(task).family, "n_test": len(mine),
           "majority_test_acc": majority_of_test(task, len(mine))}
    row |= _scored("test_acc", mine) | _scored("random_prompt_acc", random_items)
    row["projected_vs_random"] = paired_difference(mine, random_items).to_dict()
    own = store.latest_prompt_id(task, bb_t.name, "pt", length)
    row["target_pt_acc"] = row["target_pt_acc_ci"] = row["projected_vs_target_pt"] = None
    if own:
        own_items = _reference_items(bb_t, task, ("own", own), None, limit)
        row |= _scored("target_pt_acc", own_items)
        row["projected_vs_target_pt"] = paired_difference(mine, own_items).to_dict()
    return row


def run_projection(
    source_backbone: str,
    target_backbone: str,
    train_task: str,
    method: str = "task",
    eval_tasks: list[str] | None = None,
    steps: int = 200,
    prompt_length: int = 20,
    seed: int = 0,
    test_limit: int | None = None,
    progress: Callable[[dict], None] | None = None,
    run_id: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Train, save and evaluate a projector: each eval task's source prompt is
    projected and scored zero-shot on the target backbone, next to a random
    prompt and (when one exists) the target backbone's own PT prompt. The run
    is recorded (kind "project") with the projector's dev curve."""
    from ..ops.lifecycle import recorded

    method = projector_method(method)
    config = projector_config(steps, prompt_length=prompt_length, seed=seed, test_limit=test_limit)
    tasks = list(eval_tasks or [train_task])
    for task in [train_task, *tasks]:
        get_task(task)  # unknown names are refused before any model loads
    bb_s, bb_t = get_backbone(source_backbone), get_backbone(target_backbone)
    settings = {"source_backbone": bb_s.name, "target_backbone": bb_t.name, "train_task": train_task,
                "method": method, "eval_tasks": tasks, "train": config.to_dict()}
    with recorded("project", method, train_task, bb_t.name, settings, source=bb_s.name, run_id=run_id) as run:
        proj, meta = train_projector(bb_s.name, bb_t.name, train_task, method, config=config, progress=progress,
                                     should_stop=should_stop, on_eval=lambda _name, step, acc: run.curve(step, acc))
        pid = save_projector(proj, meta)
        rand = init_prompt(bb_t.embeddings(), prompt_length, PromptInit.RANDOM, seed=seed)
        results = [_projected_row(proj, task, bb_s, bb_t, config, rand) for task in tasks]
        out = {"projector_id": pid, "run_id": run.id, **meta, "results": results}
        run.done(out)
    return out
