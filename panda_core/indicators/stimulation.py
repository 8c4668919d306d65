"""Model stimulation similarity, ON (Su et al.; METHODS.md section 4): the
overlap of the FFN neurons two prompts activate in the frozen backbone.

Each prompt drives the backbone once; every layer's first FFN linear output is
read at one position and binarised at 0; ON(P1, P2) is the cosine of the
binary vectors, |A1 n A2| / sqrt(|A1| |A2|), over all layers or a window of
layers (the per-layer view). Su et al. feed the prompt alone with a `<mask>`
(the default); `with_inputs` instead averages the activation frequency over a
task's inputs, read at `[CLS]` / `<mask>` / the last position.

The capture machinery here (`ffn_capture`, `task_input_activations`,
`activation_rows`) is shared with other activation indicators (`on_inputs`).
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


@dataclass
class OnOptions:
    """Where ON reads the FFN: the `<mask>` (or last, causal) position of the
    prompt alone (Su et al.), or averaged over task inputs; which layers."""

    layers: tuple[int, int] | None = None  # [start, end) window; None = all layers
    with_inputs: str | None = None  # task whose inputs are averaged over (choice)
    n_inputs: int = 32


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
    scorer = make_scorer(backbone, task, prompt.shape[0])
    n = prompt.shape[0]
    total: torch.Tensor | None = None
    count = 0
    with ffn_capture(backbone) as captured:
        for batch in dev_batches(scorer, n_inputs, batch_size):
            captured.clear()
            embeds, mask, start = scorer.splice(batch, prompt.to(backbone.device))
            scorer.trunk(embeds, mask)
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
def ffn_activations(backbone, prompt: torch.Tensor, options: OnOptions | None = None) -> torch.Tensor:
    """Binarised FFN activations (num_layers, ffn_size) of the frozen backbone
    driven by `prompt`, read at the `<mask>` position (the last position for a
    causal LM). With `options.with_inputs`, the activation *frequency* over
    that task's inputs is returned instead."""
    options = options or OnOptions()
    if options.with_inputs:
        return task_input_activations(backbone, prompt, options.with_inputs, options.n_inputs, _probe_position)
    with ffn_capture(backbone) as captured:
        kind = backbone.kind_impl
        embeds, position = kind.prompt_alone(backbone, prompt.to(backbone.device))
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        kind.trunk(backbone.model, embeds, mask)
        acts = torch.stack([c[0, position] for c in captured]) > 0
    return acts.float().cpu()


def _probe_position(scorer, acts: torch.Tensor, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """ON-with-inputs reads one position per input, the kind's ON position:
    `[CLS]` on encoders, `<mask>` on masked LMs, the last token on causal LMs."""
    return acts[torch.arange(mask.shape[0], device=mask.device), scorer.readout_positions(mask, start, n)]


def on_activations(backbone, prompts: Sequence[torch.Tensor | SoftPrompt], options: OnOptions | None = None,
                   cache: dict | None = None, progress: Progress | None = None) -> list[torch.Tensor]:
    """One (num_layers, ffn_size) activation tensor per prompt (cached by prompt id)."""
    options = options or OnOptions()
    key = (options.with_inputs, options.n_inputs if options.with_inputs else None)
    return activation_rows(prompts, lambda _i, t: ffn_activations(backbone, t, options), lambda _i: key,
                           cache, progress)


def on_matrix(backbone, prompts: Sequence[torch.Tensor | SoftPrompt], options: OnOptions | None = None,
              cache: dict | None = None, progress: Progress | None = None) -> torch.Tensor:
    """ON over K prompts: one forward per prompt (activations cached by prompt
    id when `cache` is given), then one matrix product."""
    options = options or OnOptions()
    stack_prompts(prompts)
    return overlap_matrix(on_activations(backbone, prompts, options, cache, progress), options.layers)


def on_per_layer(backbone, prompts: Sequence[torch.Tensor | SoftPrompt], options: OnOptions | None = None,
                 cache: dict | None = None) -> torch.Tensor:
    """ON of each layer on its own: (num_layers, K, K), from the same cached activations."""
    stack_prompts(prompts)
    acts = torch.stack(on_activations(backbone, prompts, options, cache), 1)  # (L, K, F)
    return torch.stack([binary_cosine(layer) for layer in acts])


@INDICATORS.add
class OnIndicator(Indicator):
    name = "on"
    label = "ON: overlap of activated neurons"
    family = "model"
    needs_backbone = True
    options = (
        Option("layers", None, "layer window (start, end), end exclusive; None = every layer"),
        Option("with_inputs", None, "average over this task's inputs instead of the prompt alone"),
        Option("n_inputs", 32, "task inputs averaged over with `with_inputs`"),
    )

    def on_options(self, ctx: IndicatorContext) -> OnOptions:
        return OnOptions(**{o.name: self.option(ctx, o.name) for o in self.options})

    def compute(self, prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext) -> torch.Tensor:
        return on_matrix(ctx.backbone, prompts, self.on_options(ctx), ctx.cache, ctx.progress)

    def per_layer(self, prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext) -> np.ndarray:
        """The per-layer view: (num_layers, K, K), layer l's ON matrix."""
        return on_per_layer(ctx.backbone, prompts, self.on_options(ctx), ctx.cache).numpy()
