"""Model tuning: every backbone weight trained (on a private copy) next to
the prompt, the upper reference (METHODS.md 6). Its state is the whole
backbone, so no prompt is stored. It starts from the source prompt (issue 11
will make it source-free)."""

from __future__ import annotations

from .base import METHODS, Need, TransferContext, TransferMethod, TransferResult


@METHODS.add
class ModelTuning(TransferMethod):
    name = "model-tuning"
    label = "Model tuning"
    help = "all backbone weights trained (the upper reference)"
    needs = (Need.SOURCE_PROMPTS,)
    saves_prompt = False

    def run(self, ctx: TransferContext) -> TransferResult:
        src = ctx.source_prompt
        return self.train_target(ctx, src.tensor if src is not None else None, tune_model=True)
