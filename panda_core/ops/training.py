"""Training a prompt as a recorded operation, and how long training takes here.

`train_prompt` (and `train_prompts`, several tasks in one batched run) does the work through `training` and records it through the one
run lifecycle (`lifecycle.recorded`): the run, its dev curve, the saved
best-dev prompt and the JSON-ready result the CLI prints and the app shows.
The estimates read the finished runs of the registry.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import TYPE_CHECKING

from .. import store
from ..training.config import DEFAULT_TOKEN_BUDGET
from .accuracy import accuracy_summary
from .lifecycle import recorded

if TYPE_CHECKING:
    from ..training import TrainConfig


def train_prompt(
    task: str,
    backbone: str = "minilm",
    config: TrainConfig | None = None,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    run_id: str | None = None,
) -> dict:
    """Prompt tuning from scratch on `task`; saves the best-dev prompt.

    `run_id` adopts a queued job's run. Returns {"prompt_id", "run_id", "task",
    "backbone", "init_test_acc", "dev_acc", "test_acc", "steps", "seconds",
    "dev_curve", ...}."""
    from ..backbones import get_backbone
    from ..data import get_task
    from ..prompts import PROMPT_TYPES, SoftPrompt, task_seed
    from ..training import TrainConfig, evaluate, train

    config = config or TrainConfig()
    get_task(task)  # fail fast on an unknown task, before a run is recorded
    bb = get_backbone(backbone)
    with recorded("train", "pt", task, bb.name, config.to_dict(), run_id=run_id) as run:
        init_seed = task_seed(task, config.seed)
        init = PROMPT_TYPES.get(config.prompt_type).init(bb, config.prompt_length, config.init, seed=init_seed)
        init_acc = evaluate(bb, task, init, "test", limit=config.test_limit,
                            max_length=config.max_length, temperature=config.temperature)
        result = train(bb, task, replace(config), init=init, progress=progress, should_stop=should_stop,
                       on_eval=run.curve)
        prompt = SoftPrompt(
            tensor=result.prompt, backbone=bb.name, task=task, method="pt", seed=config.seed,
            steps=result.steps, head=result.head,
            scores={"init_test_acc": init_acc, "dev_acc": result.best_dev, "test_acc": result.test_acc,
                    "n_test": len(result.test_correct)},
            extra={"config": config.to_dict(), "best_step": result.best_step, "init_seed": init_seed,
                   "trainable_params": result.trainable_params, "run_id": run.id},
        )
        prompt_id = store.save_prompt(prompt)
        out = {
            "prompt_id": prompt_id, "run_id": run.id, "task": task, "backbone": bb.name,
            "init_test_acc": round(init_acc, 4), "dev_acc": round(result.best_dev, 4),
            "test_acc": round(result.test_acc, 4), "steps": result.steps,
            "seconds": round(result.seconds, 1), "best_step": result.best_step,
            "trainable_params": result.trainable_params, "dev_curve": result.dev_curve,
        } | accuracy_summary(task, result.test_correct)
        run.done(out, prompt_id=prompt_id)
    return out


def train_prompts(
    tasks: Sequence[str],
    backbone: str = "minilm",
    config: TrainConfig | None = None,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    token_budget: int | None = DEFAULT_TOKEN_BUDGET,
) -> list[dict]:
    """Prompt tuning for several tasks in one batched run, recorded like
    `train_prompt`: one "train"/"pt" run per task with its dev curve, and
    each best-dev prompt saved to the store (method "pt"). Returns one result
    dict per task, in order (the same keys as `train_prompt`)."""
    from ..backbones import get_backbone
    from ..data import get_task
    from ..prompts import PROMPT_TYPES, SoftPrompt, task_seed
    from ..training import TrainConfig, evaluate, train_multitask

    config = config or TrainConfig()
    tasks = list(tasks)
    for t in tasks:
        get_task(t)  # fail fast on an unknown task
    bb = get_backbone(backbone)
    out = []
    with ExitStack() as stack:
        runs = {t: stack.enter_context(recorded("train", "pt", t, bb.name, config.to_dict())) for t in tasks}
        fresh = PROMPT_TYPES.get(config.prompt_type).init
        inits = {t: fresh(bb, config.prompt_length, config.init, seed=task_seed(t, config.seed)) for t in tasks}
        init_acc = {t: evaluate(bb, t, inits[t], "test", limit=config.test_limit, max_length=config.max_length,
                                temperature=config.temperature) for t in tasks}
        results = train_multitask(
            bb, tasks, config, inits=inits, progress=progress, should_stop=should_stop,
            on_eval=lambda task, step, acc: runs[task].curve(step, acc), token_budget=token_budget,
        )
        for t in tasks:
            r, run = results[t], runs[t]
            prompt = SoftPrompt(
                tensor=r.prompt, backbone=bb.name, task=t, method="pt", seed=config.seed, steps=r.steps,
                scores={"init_test_acc": init_acc[t], "dev_acc": r.best_dev, "test_acc": r.test_acc,
                        "n_test": len(r.test_correct)},
                extra={"config": config.to_dict(), "best_step": r.best_step, "trainable_params": r.trainable_params,
                       "init_seed": task_seed(t, config.seed),
                       "run_id": run.id, "batched_with": tasks},
            )
            prompt_id = store.save_prompt(prompt)
            row = {
                "prompt_id": prompt_id, "run_id": run.id, "task": t, "backbone": bb.name,
                "init_test_acc": round(init_acc[t], 4), "dev_acc": round(r.best_dev, 4),
                "test_acc": round(r.test_acc, 4), "steps": r.steps, "seconds": round(r.seconds, 1),
                "best_step": r.best_step, "trainable_params": r.trainable_params, "dev_curve": r.dev_curve,
                "batched_with": tasks,
            } | accuracy_summary(t, r.test_correct)
            run.done(row, prompt_id=prompt_id)
            out.append(row)
    return out


def done_train_run(task: str, backbone: str, config: TrainConfig, need_prompt: bool = False) -> dict | None:
    """The result of the newest finished `train` run of `task` on `backbone`
    with exactly `config` (its stored form), or None: how `pt-table`, the
    report and `zoo build` reuse a prompt instead of training it again.
    `need_prompt`: only a run whose saved prompt is still registered."""
    want = config.to_dict()
    for run in store.list_runs(kind="train", status="done", limit=10000):  # newest first
        if run["target"] != task or run["backbone"] != backbone or run["config"] != want or not run["result"]:
            continue
        if need_prompt and not (run["result"].get("prompt_id") and store.is_registered(run["result"]["prompt_id"])):
            continue
        return run["result"]
    return None


def seconds_per_step(backbone: str) -> dict[str, float]:
    """Median wall seconds per training step (dev evaluations included) of the
    finished `train` runs on `backbone`, per task, plus "*" over all tasks:
    what the app uses to say how long a batch of training will take here."""
    per_task: dict[str, list[float]] = {}
    for run in store.run_records(kind="train", status="done", limit=2000):
        res = run.result or {}
        if run.backbone != backbone or not res.get("steps") or not res.get("seconds"):
            continue
        per_task.setdefault(run.target, []).append(float(res["seconds"]) / int(res["steps"]))
    out = {task: statistics.median(v) for task, v in per_task.items()}
    if out:
        out["*"] = statistics.median([x for v in per_task.values() for x in v])
    return out


def estimate_seconds(backbone: str, tasks: list[str], steps: int) -> float | None:
    """Expected training time of `steps` steps on each of `tasks`, or None
    before any run on this backbone has been recorded."""
    rates = seconds_per_step(backbone)
    if not rates:
        return None
    return sum(rates.get(t, rates["*"]) for t in tasks) * steps
