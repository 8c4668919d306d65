"""Multi-source prompt transfer: vanilla PoT initialised from the mean of the
PT prompts of several source tasks (--source mr,tweets), then trained on the
target with cross-entropy only. Averaging related sources is a cheap hedge
against one source transferring negatively; with one source it is PoT.

This module is the whole method: everything downstream finds it in `METHODS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import METHODS, Need, Sources, TransferContext, TransferMethod, TransferResult

if TYPE_CHECKING:
    import torch


@METHODS.add
class MultiSource(TransferMethod):
    name = "multi-source"
    label = "Multi-source PoT"
    help = "PoT from the mean of several sources' PT prompts (--source a,b,...)"
    sources = Sources.MANY
    needs = (Need.SOURCE_PROMPTS,)

    @staticmethod
    def initial_prompt(ctx: TransferContext) -> torch.Tensor:
        """The element-wise mean of the sources' prompts, (n, d)."""
        import torch

        return torch.stack([p.tensor.float() for p in ctx.source_prompts]).mean(dim=0)

    def run(self, ctx: TransferContext) -> TransferResult:
        return self.train_target(ctx, self.initial_prompt(ctx))
