"""Zero-shot transfer: evaluate the target task with the source prompt as it
is, no training (Su et al.'s cross-task transfer; METHODS.md 2). Its ratio to
the target's own PT accuracy is the relative performance."""

from __future__ import annotations

import time

from .base import METHODS, Need, TransferContext, TransferMethod, TransferResult


@METHODS.add
class ZeroShot(TransferMethod):
    name = "zero-shot"
    label = "Zero-shot"
    help = "evaluate the target with the source prompt, no training"
    needs = (Need.SOURCE_PROMPTS,)
    allows_self = True  # a task's own prompt on itself: the in-task diagonal of the zero-shot matrix
    saves_prompt = False

    def run(self, ctx: TransferContext) -> TransferResult:
        cfg, src = ctx.config.train, ctx.source_prompt
        t0 = time.perf_counter()
        from ..training import evaluate_items

        correct = evaluate_items(ctx.backbone, ctx.target, src.tensor, "test", head=None, limit=cfg.test_limit,
                                 max_length=cfg.max_length, temperature=cfg.temperature)
        acc = float(correct.float().mean()) if len(correct) else 0.0
        return TransferResult(test_acc=acc, seconds=time.perf_counter() - t0, source_prompt=ctx.source_prompt_id,
                              test_correct=correct)
