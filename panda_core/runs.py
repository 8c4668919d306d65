"""Recorded operations: each public function here does one piece of work
(train a prompt, ...), records it as a run in the store with its dev curve,
and returns the JSON-ready result the CLI prints and the app shows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from . import store
from .backbones import get_backbone
from .prompts import SoftPrompt
from .tasks import get_task
from .train import Cancelled, TrainConfig, evaluate, train


def train_prompt(
    task: str,
    backbone: str = "minilm",
    config: TrainConfig | None = None,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    run_id: str | None = None,
) -> dict:
    """Prompt tuning from scratch on `task`; saves the best-dev prompt.

    Returns {"prompt_id", "run_id", "task", "backbone", "init_test_acc",
    "dev_acc", "test_acc", "steps", "seconds", "dev_curve", ...}."""
    config = config or TrainConfig()
    get_task(task)  # fail fast on an unknown task
    bb = get_backbone(backbone)
    run_id = run_id or store.create_run("train", "pt", task, bb.name, config.to_dict())
    if run_id and store.get_run(run_id) and store.get_run(run_id)["status"] == "queued":
        store.update_run(run_id, status="running")
    try:
        from .prompts import init_prompt

        init = init_prompt(bb.embeddings(), config.prompt_length, config.init, seed=config.seed)
        init_acc = evaluate(bb, task, init, "test", limit=config.test_limit,
                            max_length=config.max_length, temperature=config.temperature)
        result = train(bb, task, replace(config), init=init, progress=progress, should_stop=should_stop,
                       on_eval=lambda step, acc: store.add_curve_point(run_id, step, acc))
        prompt = SoftPrompt(
            tensor=result.prompt, backbone=bb.name, task=task, method="pt", seed=config.seed,
            steps=result.steps, head=result.head,
            scores={"init_test_acc": init_acc, "dev_acc": result.best_dev, "test_acc": result.test_acc},
            extra={"config": config.to_dict(), "best_step": result.best_step,
                   "trainable_params": result.trainable_params, "run_id": run_id},
        )
        prompt_id = store.save_prompt(prompt)
        out = {
            "prompt_id": prompt_id, "run_id": run_id, "task": task, "backbone": bb.name,
            "init_test_acc": round(init_acc, 4), "dev_acc": round(result.best_dev, 4),
            "test_acc": round(result.test_acc, 4), "steps": result.steps,
            "seconds": round(result.seconds, 1), "best_step": result.best_step,
            "trainable_params": result.trainable_params, "dev_curve": result.dev_curve,
        }
        store.update_run(run_id, status="done", result=out, prompt_id=prompt_id)
        return out
    except Cancelled as err:
        store.update_run(run_id, status="cancelled", error=str(err))
        raise
    except BaseException as err:
        store.update_run(run_id, status="failed", error=str(err).splitlines()[0][:500] if str(err) else type(err).__name__)
        raise


def seconds_per_step(backbone: str) -> dict[str, float]:
    """Median wall seconds per training step (dev evaluations included) of the
    finished `train` runs on `backbone`, per task, plus "*" over all tasks:
    what the app uses to say how long a batch of training will take here."""
    import statistics

    per_task: dict[str, list[float]] = {}
    for run in store.list_runs(kind="train", status="done", limit=2000):
        res = run.get("result") or {}
        if run.get("backbone") != backbone or not res.get("steps") or not res.get("seconds"):
            continue
        per_task.setdefault(run["target"], []).append(float(res["seconds"]) / int(res["steps"]))
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
