"""Embedding indicators (Su et al.; SPoT): similarity of the prompt tensors
themselves, no model run. Each takes a (K, n, d) stack of prompts and returns
a symmetric (K, K) float64 matrix. A deep prompt's rows are its flattened
per-layer prefixes (one row per virtual token: every layer's key and value,
`PromptType.rows`), so d = L * 2 * w there.

- e_concat  1 / (1 + ||vec(P1) - vec(P2)||)
- e_avg     1 / (1 + mean_ij ||p1_i - p2_j||)
- c_concat  cos(vec(P1), vec(P2))
- c_avg     mean_ij cos(p1_i, p2_j)  (= dot of the mean unit rows)
- spot      cos(mean_i p1_i, mean_j p2_j)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import PandaError
from ..lazy import lazy_module
from ..prompts import SoftPrompt, initial_tensor
from .base import INDICATORS, Indicator, IndicatorContext, Option, stack_prompts

torch = lazy_module("torch")
F = lazy_module("torch.nn.functional")


def e_concat(P: torch.Tensor) -> torch.Tensor:
    flat = P.reshape(P.shape[0], -1).double()
    return 1.0 / (1.0 + torch.cdist(flat, flat))


def e_avg(P: torch.Tensor) -> torch.Tensor:
    k, n, d = P.shape
    rows = P.reshape(k * n, d).double()
    dist = torch.cdist(rows, rows).reshape(k, n, k, n).mean(dim=(1, 3))
    return 1.0 / (1.0 + dist)


def c_concat(P: torch.Tensor) -> torch.Tensor:
    flat = F.normalize(P.reshape(P.shape[0], -1).double(), dim=-1)
    return flat @ flat.T


def c_avg(P: torch.Tensor) -> torch.Tensor:
    mean_unit = F.normalize(P.double(), dim=-1).mean(1)  # (K, d)
    return mean_unit @ mean_unit.T


def spot(P: torch.Tensor) -> torch.Tensor:
    mean = F.normalize(P.double().mean(1), dim=-1)
    return mean @ mean.T


class EmbeddingIndicator(Indicator):
    """An indicator computed from the stacked prompt tensors by `fn`.

    With ``delta`` it compares what training moved, P - P_init (each PT
    prompt's exact initialisation, rebuilt from its recorded init method and
    seed; this reads the backbone's embedding table), instead of the prompts
    themselves, whose shared vocabulary-sampled start would otherwise weigh in."""

    family = "embedding"
    needs_backbone = False
    options = (Option("delta", False, "compare each prompt minus its initialisation (delta P)"),)

    def __init__(self, name: str, label: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.name, self.label, self.fn = name, label, fn  # type: ignore[misc]

    def compute(self, prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext) -> torch.Tensor:
        stacked = stack_prompts(prompts)
        if self.option(ctx, "delta"):
            stacked = stacked - initial_tensors(prompts, ctx)
        return self.fn(stacked)


def initial_tensors(prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext) -> torch.Tensor:
    """(K, n, D): the initialisation of each stored PT prompt, as `stack_prompts` rows."""
    if not all(isinstance(p, SoftPrompt) for p in prompts):
        raise PandaError("delta P needs stored prompts (their recorded initialisation), not bare tensors")
    return stack_prompts([initial_tensor(p, ctx.backbone) for p in prompts])


for _name, _label, _fn in (
    ("e_concat", "Euclidean (flattened)", e_concat),
    ("e_avg", "Euclidean (token-averaged)", e_avg),
    ("c_concat", "Cosine (flattened)", c_concat),
    ("c_avg", "Cosine (token-averaged)", c_avg),
    ("spot", "SPoT (cosine of mean token)", spot),
):
    INDICATORS.register(EmbeddingIndicator(_name, _label, _fn))

#: name -> tensor function of the embedding indicators (the benchmark and tests use them directly)
EMBEDDING_FUNCS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    ind.name: ind.fn for ind in INDICATORS if isinstance(ind, EmbeddingIndicator)
}
