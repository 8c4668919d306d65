"""PANDA: prompt transfer plus knowledge distillation from a frozen teacher,
weighted by the predicted transferability of the pair (METHODS.md 3):

    L = CE(z_S, y) + lambda(s, t) * MSE(z_S, z_T)

The teacher (released code) is the vanilla-PoT prompt trained on the target
(best dev): a declared need that `ops` resolves as a PoT run of its own,
reused by its key. lambda(s, t) = lambda_max * clip(T(s, t), 0, 1) with T the
PANDA metric between the source prompt and the target's own PT prompt.
"""

from __future__ import annotations

from ..errors import PandaError
from ..prompts import PROMPT_TYPES, PromptInit, task_seed
from .base import METHODS, Need, TransferContext, TransferMethod, TransferResult
from .config import KdForm, StudentInit, Teacher, TransferConfig


def kd_weight(config: TransferConfig, transferability: float) -> float:
    """The distillation weight lambda for a predicted transferability T.

    T is clipped to [0, 1] in both forms: a negative T (the source's task
    embedding points away from the target's) must not give a negative weight,
    which would push the student away from its teacher; the released code's
    form used the raw metric."""
    if config.fixed_lambda is not None:
        return config.fixed_lambda
    t = min(max(float(transferability), 0.0), 1.0)
    if KdForm(config.kd_form) is KdForm.CODE:
        return 0.1 * t / config.train.batch_size
    return config.lambda_max * t


@METHODS.add
class Panda(TransferMethod):
    name = "panda"
    label = "PANDA"
    help = "PoT plus distillation from a frozen PoT teacher, weighted by the predicted transferability"
    needs = (Need.SOURCE_PROMPTS, Need.TARGET_PROMPT, Need.POT_TEACHER)
    transfer_knobs = True

    def requires(self, config: TransferConfig) -> tuple[Need, ...]:
        if Teacher(config.teacher) is Teacher.SOURCE:
            return tuple(n for n in self.needs if n is not Need.POT_TEACHER)
        return self.needs

    def run(self, ctx: TransferContext) -> TransferResult:
        config, cfg, src, bb = ctx.config, ctx.config.train, ctx.source_prompt, ctx.backbone
        from ..indicators import panda_pair

        transferability = panda_pair(bb, src.tensor, ctx.target_prompt.tensor, ctx.target, config.metric_inputs)
        lam = kd_weight(config, transferability)
        if Teacher(config.teacher) is Teacher.SOURCE:
            teacher = src.tensor
        elif ctx.teacher_prompt is not None:
            teacher = ctx.teacher_prompt.tensor
        else:
            raise PandaError("PANDA's PoT teacher was not resolved (run it through panda_core.ops.transfer)")
        if StudentInit(config.student_init) is StudentInit.SOURCE:
            init = src.tensor
        else:
            init = PROMPT_TYPES.get(cfg.prompt_type).init(bb, cfg.prompt_length, PromptInit.VOCAB,
                                                          seed=task_seed(ctx.target, cfg.seed))
        return self.train_target(ctx, init, teacher=teacher, kd_weight=lam, transferability=transferability)
