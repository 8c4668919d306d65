"""How a fresh prompt tensor is initialised (vocabulary rows, noise, or a
copy of a source prompt for prompt transfer)."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from ..errors import PandaError

if TYPE_CHECKING:
    import torch


class PromptInit(str, enum.Enum):
    """How a fresh prompt is initialised."""

    VOCAB = "vocab"  # rows copied from embeddings of sampled vocabulary tokens (Lester et al.)
    RANDOM = "random"  # normal noise at the scale of the embedding table
    SOURCE = "source"  # a copy of a source prompt (prompt transfer)


def init_prompt(
    embeddings: torch.nn.Embedding,
    length: int,
    how: PromptInit | str = PromptInit.VOCAB,
    seed: int = 0,
    source: torch.Tensor | None = None,
) -> torch.Tensor:
    """A fresh (length, d) prompt tensor on the embeddings' device.

    `vocab` copies rows of sampled ordinary vocabulary tokens, which trains
    faster and more stably than noise on small backbones.
    """
    import torch

    how = PromptInit(how)
    weight = embeddings.weight.detach()
    gen = torch.Generator().manual_seed(seed)
    if how is PromptInit.SOURCE:
        if source is None:
            raise PandaError("prompt init 'source' needs a source prompt")
        return source.detach().clone().to(weight.device, torch.float32)
    if how is PromptInit.RANDOM:
        std = float(weight.float().std())
        return (torch.randn(length, weight.shape[1], generator=gen) * std).to(weight.device)
    vocab = weight.shape[0]
    lo, hi = min(1000, vocab // 10), min(6000, vocab)  # skip special/rare ids at the ends
    ids = torch.randint(lo, hi, (length,), generator=gen)
    return weight[ids.to(weight.device)].float().clone()
