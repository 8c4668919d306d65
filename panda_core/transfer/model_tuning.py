"""Model tuning: every backbone weight trained (on a private copy) next to
the prompt, the upper reference (METHODS.md 6). Its state is the whole
backbone, so no prompt is stored.

It is a baseline, so it starts from a fresh prompt with the same seed and
budget as PT and reads no source. A source is refused unless the config asks
to start from it (`TransferConfig.from_source`, CLI ``--from-source``): that is
"PoT plus fine-tuning", a different experiment, and its runs say so.
"""

from __future__ import annotations

from ..prompts import PROMPT_TYPES, task_seed
from .base import METHODS, Need, Sources, TransferContext, TransferMethod, TransferResult


@METHODS.add
class ModelTuning(TransferMethod):
    name = "model-tuning"
    label = "Model tuning"
    help = "all backbone weights trained from a fresh prompt (the upper reference; --from-source starts from a source)"
    sources = Sources.OPTIONAL
    needs = (Need.SOURCE_PROMPTS,)
    saves_prompt = False

    def run(self, ctx: TransferContext) -> TransferResult:
        cfg = ctx.config.train
        if ctx.config.from_source:
            init = ctx.source_prompt.tensor
        else:
            init = PROMPT_TYPES.get(cfg.prompt_type).init(ctx.backbone, cfg.prompt_length, cfg.init,
                                                          seed=task_seed(ctx.target, cfg.seed))
        return self.train_target(ctx, init, tune_model=True)
