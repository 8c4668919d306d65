"""Vanilla prompt transfer (PoT): initialise the target prompt with the
source prompt, then train on the target with cross-entropy only
(METHODS.md 2). Its run is also PANDA's teacher: same pair, same `train`
config, same key."""

from __future__ import annotations

from .base import METHODS, Need, TransferContext, TransferMethod, TransferResult


@METHODS.add
class PromptTransfer(TransferMethod):
    name = "pot"
    label = "Vanilla PoT"
    help = "vanilla prompt transfer: start from the source prompt, CE only"
    needs = (Need.SOURCE_PROMPTS,)

    def run(self, ctx: TransferContext) -> TransferResult:
        return self.train_target(ctx, ctx.source_prompt.tensor)
