"""Model stimulation similarity, ON (Su et al.; METHODS.md section 4): the
overlap of the FFN neurons two prompts activate in the frozen backbone.

Every layer's first FFN linear output is binarised at 0 and read; ON(P1, P2)
is the cosine of the (frequency) vectors, |A1 n A2| / sqrt(|A1| |A2|), over
all layers or a window of layers (the per-layer view).

Su et al. read `<mask>` because that is where their MLM readout reads: ON
should read where the prompt was trained to act. So by default
(`inputs="target"`) entry [s, t] drives the backbone with prompt s and with
prompt t on target t's first `n_inputs` dev inputs and compares the
activation frequencies at the positions the readout reads
(`PromptScorer.readout_positions`). Su et al.'s prompt-alone probe (no text,
read at `<mask>` / the last position) stays as `inputs="prompt_alone"`.

The capture machinery here (`ffn_capture`, `task_input_activations`,
`activation_rows`) is shared with `on_inputs` (each prompt on its own task).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import PandaError
from ..lazy import inference_mode, lazy_module
from ..prompts import SoftPrompt
from .base import (
    INDICATORS,
    Indicator,
    IndicatorContext,
    Option,
    Progress,
    dev_batches,
    make_scorer,
    stack_prompts,
    tensor_of,
)

torch = lazy_module("torch")

#: reads (B, F) rows from one layer's binarised activations (B, T, F), given (scorer, acts, mask, start, n)
Reader = Callable[[Any, "torch.Tensor", "torch.Tensor", int, int], "torch.Tensor"]


#: where ON's inputs come from (the `inputs` option)
ON_INPUTS = ("target", "prompt_alone")


@dataclass
class OnOptions:
    """Where ON reads the FFN, and which layers.

    `inputs`: "target" (default) drives the backbone with each prompt on the
    target task's dev inputs and reads the positions the readout reads, so
    entry [s, t] compares s and t on t's inputs where t's prompt was trained
    to act; "prompt_alone" is Su et al.'s probe (the prompt with no text, read
    at `<mask>` / the last position), kept for comparison."""

    layers: tuple[int, int] | None = None  # [start, end) window; None = all layers
    inputs: str = "target"
    n_inputs: int = 32

    def __post_init__(self) -> None:
        if self.inputs not in ON_INPUTS:
            raise PandaError(f"unknown ON inputs {self.inputs!r}; choose from {', '.join(ON_INPUTS)}")


def binary_cosine(A: torch.Tensor) -> torch.Tensor:
    """|Ai n Aj| / sqrt(|Ai| |Aj|) for rows of a 0/1 (or frequency) matrix."""
    A = A.double()
    inter = A @ A.T
    norms = inter.diagonal().clamp(min=1e-12).sqrt()
    return inter / norms[:, None] / norms[None, :]


# ------------------------------------------------------------ capture
@contextmanager
def ffn_capture(backbone) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward appends each layer's FFN pre-activation
    (B, T, ffn_size) to the yielded list, in layer order."""
    captured: list[torch.Tensor] = []

    def hook(_module, _inp, out):
        captured.append(out.detach())

    handles = [m.register_forward_hook(hook) for m in backbone.ffn_modules()]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


@inference_mode
def task_input_activations(backbone, prompt: torch.Tensor, task: str, n_inputs: int, read: Reader,
                           batch_size: int = 16) -> torch.Tensor:
    """Activation frequency (num_layers, ffn_size) over the first `n_inputs` dev
    inputs of `task`, each layer's binarised activations read by `read`."""
    scorer = make_scorer(backbone, task, prompt.shape[-2])
    total: torch.Tensor | None = None
    count = 0
    with ffn_capture(backbone) as captured:
        for batch in dev_batches(scorer, n_inputs, batch_size):
            captured.clear()
            _, mask, start, n = scorer.states(batch, prompt.to(backbone.device))  # n = 0 for a deep prompt
            acts = torch.stack([read(scorer, c > 0, mask, start, n).float() for c in captured], 1)  # (B, L, F)
            total = acts.sum(0) if total is None else total + acts.sum(0)
            count += acts.shape[0]
    if total is None:
        raise PandaError(f"task '{task}' has no dev inputs to drive the backbone with")
    return (total / max(count, 1)).float().cpu()


def activation_rows(prompts: Sequence[SoftPrompt | torch.Tensor], compute: Callable[[int, torch.Tensor], torch.Tensor],
                    key: Callable[[int], tuple], cache: dict | None = None,
                    progress: Progress | None = None) -> list[torch.Tensor]:
    """`compute(i, tensor)` -> (num_layers, ffn_size) for every prompt, kept in
    `cache` under (prompt_id, *key(i)) for prompts that have an id."""
    rows = []
    for i, p in enumerate(prompts):
        pid = getattr(p, "prompt_id", None)
        k = (pid, *key(i)) if pid else None
        if cache is not None and k is not None and k in cache:
            acts = cache[k]
        else:
            acts = compute(i, tensor_of(p))
            if cache is not None and k is not None:
                cache[k] = acts
        rows.append(acts)
        if progress is not None:
            progress(i + 1, len(prompts))
    return rows


def layer_window(acts: torch.Tensor, layers: tuple[int, int] | None) -> torch.Tensor:
    """Rows [lo, hi) of a (num_layers, ...) tensor; all of it for None."""
    if layers is None:
        return acts
    lo, hi = layers
    if not 0 <= lo < hi <= acts.shape[0]:
        raise PandaError(f"layer window [{lo}, {hi}) is outside the backbone's {acts.shape[0]} layers")
    return acts[lo:hi]


def overlap_matrix(rows: list[torch.Tensor], layers: tuple[int, int] | None) -> torch.Tensor:
    """ON over per-prompt (num_layers, ffn_size) activations, flattened over the layer window."""
    return binary_cosine(torch.stack([layer_window(a, layers).reshape(-1) for a in rows]))


# ----------------------------------------------------------------- ON
@inference_mode
def ffn_activations(backbone, prompt: torch.Tensor) -> torch.Tensor:
    """Su et al.'s probe: binarised FFN activations (num_layers, ffn_size) of
    the frozen backbone driven by the prompt alone, read at the `<mask>`
    position (the last position for a causal LM)."""
    from ..prompts.deep import driver, is_deep
    from ..prompts.scorer import prompt_alone

    prompt = prompt.to(backbone.device)
    with ffn_capture(backbone) as captured:
        embeds, position = prompt_alone(backbone, prompt)  # a deep prompt: the layout with no rows
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        backbone.kind_impl.trunk(backbone.model, embeds, mask, driver(prompt) if is_deep(prompt) else None)
        acts = torch.stack([c[0, position] for c in captured]) > 0
    return acts.float().cpu()


def on_activations(backbone, prompts: Sequence[torch.Tensor | SoftPrompt], cache: dict | None = None,
                   progress: Progress | None = None) -> list[torch.Tensor]:
    """The prompt-alone activations, one (num_layers, ffn_size) per prompt (cached by prompt id)."""
    return activation_rows(prompts, lambda _i, t: ffn_activations(backbone, t), lambda _i: ("alone",),
                           cache, progress)


def on_target_activations(backbone, prompts: Sequence[torch.Tensor | SoftPrompt], tasks: Sequence[str],
                          n_inputs: int, cache: dict | None = None,
                          progress: Progress | None = None) -> list[list[torch.Tensor]]:
    """rows[s][t]: prompt s's activation frequency at the readout over target t's
    first `n_inputs` dev inputs (K x K forwards; cached by prompt id, shared
    with `on_inputs`, whose rows are the diagonal)."""
    from .on_inputs import readout_activations

    k = len(prompts)
    rows: list[list[torch.Tensor]] = []
    for t, target in enumerate(tasks):
        column = activation_rows(prompts, lambda _i, p, target=target: readout_activations(backbone, p, target, n_inputs),
                                 lambda _i, target=target: (("readout", target), n_inputs), cache,
                                 (lambda d, _n, t=t: progress(t * k + d, k * k)) if progress else None)
        rows.append(column)
    return [[rows[t][s] for t in range(k)] for s in range(k)]  # [source][target]


def target_overlap(rows: list[list[torch.Tensor]], layers: tuple[int, int] | None) -> torch.Tensor:
    """M[s, t] = cosine of s's and t's activations on t's inputs (flattened over the window)."""
    k = len(rows)
    out = torch.ones(k, k, dtype=torch.float64)
    for s in range(k):
        for t in range(k):
            if s != t:
                pair = torch.stack([layer_window(rows[s][t], layers).reshape(-1),
                                    layer_window(rows[t][t], layers).reshape(-1)])
                out[s, t] = binary_cosine(pair)[0, 1]
    return out


def prompt_tasks(prompts: Sequence[torch.Tensor | SoftPrompt], tasks: Sequence[str] | None) -> Sequence[str]:
    """The target tasks ON drives the backbone with: `tasks`, else each SoftPrompt's own task."""
    if tasks is None:
        tasks = [getattr(p, "task", None) for p in prompts]
    if len(tasks) != len(prompts) or not all(tasks):
        raise PandaError("ON on target inputs needs the task of every prompt (pass tasks, or SoftPrompts with a task)")
    return tasks


def on_matrix(backbone, prompts: Sequence[torch.Tensor | SoftPrompt], options: OnOptions | None = None,
              cache: dict | None = None, progress: Progress | None = None,
              tasks: Sequence[str] | None = None) -> torch.Tensor:
    """ON over K prompts (the target tasks' names are needed for inputs="target")."""
    options = options or OnOptions()
    stack_prompts(prompts)
    if options.inputs == "prompt_alone":
        return overlap_matrix(on_activations(backbone, prompts, cache, progress), options.layers)
    rows = on_target_activations(backbone, prompts, prompt_tasks(prompts, tasks), options.n_inputs, cache, progress)
    return target_overlap(rows, options.layers)


def on_per_layer(backbone, prompts: Sequence[torch.Tensor | SoftPrompt], options: OnOptions | None = None,
                 cache: dict | None = None, tasks: Sequence[str] | None = None) -> torch.Tensor:
    """ON of each layer on its own: (num_layers, K, K), from the same cached activations."""
    options = options or OnOptions()
    stack_prompts(prompts)
    if options.inputs == "prompt_alone":
        acts = torch.stack(on_activations(backbone, prompts, cache), 1)  # (L, K, F)
        return torch.stack([binary_cosine(layer) for layer in acts])
    rows = on_target_activations(backbone, prompts, prompt_tasks(prompts, tasks), options.n_inputs, cache)
    n_layers = rows[0][0].shape[0]
    return torch.stack([target_overlap(rows, (layer, layer + 1)) for layer in range(n_layers)])


@INDICATORS.add
class OnIndicator(Indicator):
    name = "on"
    label = "ON: overlap of activated neurons"
    family = "model"
    needs_backbone = True
    symmetric = False
    options = (
        Option("layers", None, "layer window (start, end), end exclusive; None = every layer"),
        Option("inputs", "target", "what drives the backbone: target (each pair on the target's inputs, "
                                   "read at the readout) or prompt_alone (Su et al.'s probe)", choices=ON_INPUTS),
        Option("n_inputs", 32, "target inputs averaged over"),
    )

    def on_options(self, ctx: IndicatorContext) -> OnOptions:
        return OnOptions(**{o.name: self.option(ctx, o.name) for o in self.options})

    def _tasks(self, prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext,
               options: OnOptions) -> list[str] | None:
        return ctx.task_names(prompts) if options.inputs == "target" else None

    def compute(self, prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext) -> torch.Tensor:
        options = self.on_options(ctx)
        return on_matrix(ctx.backbone, prompts, options, ctx.cache, ctx.progress, self._tasks(prompts, ctx, options))

    def per_layer(self, prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext) -> np.ndarray:
        """The per-layer view: (num_layers, K, K), layer l's ON matrix."""
        options = self.on_options(ctx)
        return on_per_layer(ctx.backbone, prompts, options, ctx.cache, self._tasks(prompts, ctx, options)).numpy()
