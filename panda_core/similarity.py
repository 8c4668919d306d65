"""Indicator matrices over the cached prompts of a backbone: the glue between
the store (which prompt per task) and metrics (the maths)."""

from __future__ import annotations

from . import store
from .backbones import get_backbone
from .errors import PandaError
from .metrics import OnOptions, similarity
from .prompts import SoftPrompt
from .tasks import get_task

_ACTIVATION_CACHE: dict = {}  # ON activations per prompt id, for the life of the process


def task_prompts(backbone: str, tasks: list[str] | None = None, prompt_length: int = 20) -> list[SoftPrompt]:
    """The newest PT prompt of each task (all tasks with a prompt when `tasks` is None)."""
    if tasks is None:
        rows = store.list_prompts(backbone=backbone, method="pt")
        tasks = sorted({r["task"] for r in rows if r["length"] == prompt_length})
    prompts = []
    missing = []
    for t in tasks:
        pid = store.latest_prompt_id(t, backbone, "pt", prompt_length)
        if pid is None:
            missing.append(t)
        else:
            prompts.append(store.load_prompt(pid))
    if missing:
        raise PandaError(
            f"no {prompt_length}-token prompt on '{backbone}' for: {', '.join(missing)}; train them first "
            f"(python -m panda_core train --task TASK --backbone {backbone})"
        )
    if len(prompts) < 2:
        raise PandaError(f"need at least 2 trained prompts on '{backbone}' to compare, found {len(prompts)}")
    # group by family so heatmaps show blocks
    prompts.sort(key=lambda p: (get_task(p.task).family, p.task))
    return prompts


def similarity_table(
    metric: str, backbone: str = "minilm", tasks: list[str] | None = None, prompt_length: int = 20,
    layers: tuple[int, int] | None = None, n_inputs: int = 32,
) -> dict:
    """{"metric", "backbone", "tasks", "families", "prompt_ids", "matrix"} for the CLI and the app."""
    prompts = task_prompts(backbone, tasks, prompt_length)
    bb = get_backbone(backbone) if metric in ("on", "panda") else None
    matrix = similarity(metric, prompts, bb, [p.task for p in prompts],
                        on_options=OnOptions(layers=layers), n_inputs=n_inputs, cache=_ACTIVATION_CACHE)
    return {
        "metric": metric, "backbone": backbone, "tasks": [p.task for p in prompts],
        "families": [get_task(p.task).family for p in prompts],
        "prompt_ids": [p.prompt_id for p in prompts], "matrix": [[round(float(x), 6) for x in row] for row in matrix],
    }
