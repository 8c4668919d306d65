"""Prompt tuning (PT) on the target from a fresh prompt: the baseline every
transfer is compared with (METHODS.md 1). Its prompt is stored as
"pt_baseline", apart from `train`'s prompts, so it never becomes the task's
source prompt."""

from __future__ import annotations

from ..prompts import PROMPT_TYPES, task_seed
from .base import METHODS, Sources, TransferContext, TransferMethod, TransferResult


@METHODS.add
class PromptTuning(TransferMethod):
    name = "pt"
    label = "PT (from scratch)"
    help = "prompt tuning on the target from a fresh prompt (baseline; no source)"
    sources = Sources.NONE
    needs = ()

    @property
    def prompt_method(self) -> str:
        return "pt_baseline"

    def run(self, ctx: TransferContext) -> TransferResult:
        cfg = ctx.config.train
        init = PROMPT_TYPES.get(cfg.prompt_type).init(ctx.backbone, cfg.prompt_length, cfg.init,
                                                      seed=task_seed(ctx.target, cfg.seed))
        return self.train_target(ctx, init)
