"""What every transferability indicator is, and the one registry of them.

An indicator maps K soft prompts of one backbone to a (K, K) matrix whose
entry [s, t] predicts how well source s transfers to target t (higher = more
transferable). Each indicator is one `Indicator` subclass registered in
`INDICATORS` from its own module; the CLI, the app, sweeps, validation and the
report read the registry, so adding an indicator touches one file.

`IndicatorContext` carries everything an indicator may need besides the
prompts: the backbone (loaded lazily, so embedding indicators never load a
model), the task of each prompt, options, an activation cache and a progress
callback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import PandaError
from ..lazy import lazy_module
from ..prompts import SoftPrompt
from ..registry import Registry

torch = lazy_module("torch")

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class Option:
    """An option an indicator accepts (the CLI and the app build their inputs from these)."""

    name: str
    default: Any
    help: str
    choices: tuple[Any, ...] = ()  # the allowed values, when the option is a choice


@dataclass
class IndicatorContext:
    """Everything besides the prompts.

    Args:
        backbone_name: the backbone the prompts were trained on.
        load_backbone: called at most once, on first access of `backbone`.
        tasks: the task of each prompt (default: each prompt's own `task`).
        options: indicator options by name (see each indicator's `options`);
            options an indicator does not accept are ignored.
        cache: activations kept across calls (keyed by prompt id).
        progress: called with (done, total) by indicators that run the backbone.
    """

    backbone_name: str | None = None
    load_backbone: Callable[[], Any] | None = None
    tasks: Sequence[str] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    cache: dict | None = None
    progress: Progress | None = None
    _backbone: Any = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, backbone: Any = None, **kwargs: Any) -> IndicatorContext:
        """A context around an already loaded backbone (or none)."""
        name = getattr(backbone, "name", None)
        return cls(backbone_name=name, load_backbone=(lambda: backbone) if backbone is not None else None, **kwargs)

    @classmethod
    def for_backbone(cls, name: str, **kwargs: Any) -> IndicatorContext:
        """A context that loads backbone `name` only if an indicator needs it (so
        the embedding indicators work on prompts of a backbone that is not
        installed; a model indicator on them is refused in one line naming it)."""

        def load() -> Any:
            from ..backbones import get_backbone
            from ..backbones.foreign import require_installed

            require_installed(name)
            return get_backbone(name)

        return cls(backbone_name=name, load_backbone=load, **kwargs)

    @property
    def backbone(self) -> Any:
        if self._backbone is None:
            if self.load_backbone is None:
                raise PandaError("this indicator needs the backbone the prompts were trained on")
            self._backbone = self.load_backbone()
        return self._backbone

    def task_names(self, prompts: Sequence[SoftPrompt]) -> list[str]:
        tasks = list(self.tasks) if self.tasks else [getattr(p, "task", None) for p in prompts]
        if None in tasks:
            raise PandaError("this indicator needs the task of every prompt; pass the task names")
        if len(tasks) != len(prompts):
            raise PandaError(f"{len(prompts)} prompts but {len(tasks)} task names")
        return tasks

    def report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)


class Indicator:
    """One transferability indicator.

    Subclasses set `name` (the CLI value), `label` (the human name), `family`
    ("embedding": the prompt tensors alone; "model": runs the frozen backbone),
    `needs_backbone`, `symmetric`, `pairwise` and `options`, and implement `compute`.

    `pairwise`: entry [s, t] depends only on prompts s and t (and t's task),
    not on which other prompts are in the set, so the matrix of a subset of
    prompts is the sub-matrix (the study bundle relies on it; an indicator
    that normalises over the set sets it False)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    family: ClassVar[str] = "embedding"
    needs_backbone: ClassVar[bool] = False
    symmetric: ClassVar[bool] = True
    pairwise: ClassVar[bool] = True
    options: ClassVar[tuple[Option, ...]] = ()

    def option(self, ctx: IndicatorContext, name: str) -> Any:
        """The value of one of this indicator's options in `ctx` (else its default)."""
        for opt in self.options:
            if opt.name == name:
                value = ctx.options.get(name)
                return opt.default if value is None else value
        raise KeyError(f"indicator '{self.name}' has no option '{name}'")

    def matrix(self, prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext | None = None) -> np.ndarray:
        """The (K, K) matrix, entry [s, t] = predicted transfer from prompt s to prompt t."""
        ctx = ctx or IndicatorContext()
        stack_prompts(prompts)  # refuse mixed shapes / backbones before any work
        if self.needs_backbone and ctx.load_backbone is None and ctx._backbone is None:
            raise PandaError(f"indicator '{self.name}' needs the backbone the prompts were trained on")
        out = self.compute(prompts, ctx)
        return (out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)).astype(np.float64)

    def compute(self, prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext) -> torch.Tensor:
        raise NotImplementedError


INDICATORS: Registry[Indicator] = Registry("indicator")


# ----------------------------------------------------------------- helpers
def stack_prompts(prompts: Sequence[torch.Tensor | SoftPrompt]) -> torch.Tensor:
    """(K, n, D) float32 CPU tensor of K prompts of one type, shape and backbone:
    each prompt's `PromptType.rows` (an input prompt's (n, d) rows; a deep
    prompt's flattened per-layer prefixes, D = L * 2 * w)."""
    from ..prompts.types import prompt_type_of

    tensors = [p.tensor if isinstance(p, SoftPrompt) else p for p in prompts]
    if not tensors:
        raise PandaError("no prompts to compare; train prompts first")
    types = [prompt_type_of(t) for t in tensors]
    if len({t.name for t in types}) > 1:
        raise PandaError(f"prompts mix types ({', '.join(sorted({t.name for t in types}))}); compare prompts of "
                         "one type (--prompt-type)")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise PandaError(f"prompts have different shapes {sorted(shapes)}; compare prompts of one backbone and length")
    backbones = {p.backbone for p in prompts if isinstance(p, SoftPrompt)}
    if len(backbones) > 1:
        raise PandaError(f"prompts come from different backbones {sorted(backbones)}; compare one backbone at a time")
    return torch.stack([kind.rows(t.detach().float().cpu()) for kind, t in zip(types, tensors, strict=True)])


def tensor_of(prompt: SoftPrompt | torch.Tensor) -> torch.Tensor:
    return prompt.tensor if isinstance(prompt, SoftPrompt) else prompt


def make_scorer(backbone: Any, task_name: str, prompt_length: int) -> Any:
    """A `PromptScorer` of `task_name` (model indicators drive the backbone through it)."""
    from ..data import get_task
    from ..prompts import PromptScorer

    return PromptScorer(backbone, get_task(task_name), prompt_length)


def dev_batches(scorer: Any, n_inputs: int, batch_size: int) -> Any:
    """Batches of the first `n_inputs` dev examples of the scorer's task, grouped by
    length (the indicators average over the inputs, so the order does not matter)."""
    from ..data import load_split

    enc = scorer.encode(load_split(scorer.task.name, "dev"))
    return scorer.batches(enc, batch_size, limit=n_inputs, sort_by_length=True)
