"""Indicator matrices by name: the one entry point the CLI `similarity`, the
Similarity page, validation and the report call. The name is looked up in
`INDICATORS`; nothing here knows which indicators exist.

`similarity_table` is the glue between the store (which prompt per task: the
newest PT prompt, `store.latest_prompts`) and the indicators (the maths).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import store
from ..errors import PandaError
from ..lazy import lazy_module
from ..prompts import SoftPrompt
from .base import INDICATORS, IndicatorContext, Progress

torch = lazy_module("torch")

_ACTIVATION_CACHE: dict = {}  # model-indicator activations per prompt id, for the life of the process


def indicator_matrix(name: str, prompts: Sequence[SoftPrompt | torch.Tensor],
                     ctx: IndicatorContext | None = None) -> np.ndarray:
    """The (K, K) matrix of indicator `name` over `prompts` (unknown names are refused)."""
    return INDICATORS.get(name).matrix(prompts, ctx)


def _family(task: str) -> str:
    from ..data import get_task

    return get_task(task).family


def task_prompts(backbone: str, tasks: list[str] | None = None, prompt_length: int = 20,
                 prompt_type: str = "input") -> list[SoftPrompt]:
    """The newest PT prompt of `prompt_type` of each task (all tasks with a prompt
    when `tasks` is None), grouped by task family so heatmaps show blocks."""
    newest = store.latest_prompts(backbone, "pt", prompt_length, tasks, prompt_type)
    if tasks is None:
        tasks = sorted(newest)
    missing = [t for t in tasks if t not in newest]
    if missing:
        raise PandaError(
            f"no {prompt_length}-token {prompt_type} prompt on '{backbone}' for: {', '.join(missing)}; train them "
            f"first (python -m panda_core train --task TASK --backbone {backbone} --prompt-type {prompt_type})"
        )
    if len(tasks) < 2:
        raise PandaError(f"need at least 2 trained prompts on '{backbone}' to compare, found {len(tasks)}")
    prompts = [store.load_prompt(newest[t]["id"]) for t in tasks]
    prompts.sort(key=lambda p: (_family(p.task), p.task))
    return prompts


def similarity_table(
    metric: str, backbone: str = "minilm", tasks: list[str] | None = None, prompt_length: int = 20,
    layers: tuple[int, int] | None = None, n_inputs: int = 32, options: Mapping[str, Any] | None = None,
    progress: Progress | None = None, prompt_type: str = "input",
) -> dict:
    """{"metric", "backbone", "tasks", "families", "prompt_ids", "prompt_origins", "matrix"} for the CLI and the app.

    `layers` and `n_inputs` are the common indicator options; `options` adds
    any other option an indicator declares. The backbone is loaded only if the
    indicator needs it."""
    INDICATORS.get(metric)  # refuse an unknown name before touching the store
    prompts = task_prompts(backbone, tasks, prompt_length, prompt_type)
    return table_of_prompts(metric, prompts, backbone, {"layers": layers, "n_inputs": n_inputs, **(options or {})},
                            progress, prompt_type)


def table_of_prompts(metric: str, prompts: Sequence[SoftPrompt], backbone: str,
                     options: Mapping[str, Any] | None = None, progress: Progress | None = None,
                     prompt_type: str = "input") -> dict:
    """`similarity_table`'s dict over given prompts (one per task, in order):
    the store's prompts, or the zoo's when the study bundle is built, so both
    come from the same code. "prompt_origins" says, per prompt, whether it
    was shipped with the tool ("zoo") or is the user's own ("user")."""
    indicator = INDICATORS.get(metric)
    names = [p.task for p in prompts]
    ctx = IndicatorContext.for_backbone(backbone, tasks=names, options=dict(options or {}),
                                        cache=_ACTIVATION_CACHE, progress=progress)
    matrix = indicator.matrix(prompts, ctx)
    return {
        "metric": indicator.name, "backbone": backbone, "prompt_type": prompt_type, "tasks": names,
        "families": [_family(t) for t in names],
        "prompt_ids": [p.prompt_id for p in prompts], "prompt_origins": [store.prompt_origin(p) for p in prompts],
        "matrix": [[round(float(x), 6) for x in row] for row in matrix],
    }


def effective_options(metric: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The value of every option indicator `metric` declares once `options`
    are applied (None means its default, as `Indicator.option` reads them):
    what identifies a computed matrix besides its prompts. Windows are lists."""
    given = dict(options or {})
    out: dict[str, Any] = {}
    for opt in INDICATORS.get(metric).options:
        value = given.get(opt.name)
        value = opt.default if value is None else value
        out[opt.name] = list(value) if isinstance(value, tuple) else value
    return out
