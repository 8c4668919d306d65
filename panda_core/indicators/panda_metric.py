"""PANDA's transferability metric (METHODS.md section 3): the cosine of two
prompt-driven task embeddings of the target task.

e_k = mean over N target dev inputs of the frozen backbone's representation
(the scorer's readout: mean-pooled text, `<mask>` or last state) when driven
by prompt P_k; T(s, t) = cos(e_s, e_t), both embeddings computed on target
t's inputs, so the matrix is not symmetric. `panda_pair` is the one-pair form
the PANDA transfer method uses to weight its distillation.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..lazy import inference_mode, lazy_module
from ..prompts import SoftPrompt
from . import base
from .base import INDICATORS, Indicator, IndicatorContext, Option, Progress, stack_prompts, tensor_of

torch = lazy_module("torch")
F = lazy_module("torch.nn.functional")


@inference_mode
def task_embedding(backbone, prompt: torch.Tensor, task_name: str, n_inputs: int = 32) -> torch.Tensor:
    """Mean prompt-driven representation of `n_inputs` dev inputs of a task (d,)."""
    scorer = base.make_scorer(backbone, task_name, prompt.shape[-2])
    feats = [scorer.features(b, prompt.to(backbone.device)) for b in base.dev_batches(scorer, n_inputs, 32)]
    return torch.cat(feats).float().mean(0).cpu()


def panda_matrix(backbone, prompts: Sequence[SoftPrompt | torch.Tensor], tasks: Sequence[str], n_inputs: int = 32,
                 progress: Progress | None = None) -> torch.Tensor:
    """M[s, t] = cos(e_s, e_t) with both task embeddings computed on target t's
    inputs: how similarly the two prompts make the frozen model see t."""
    stack_prompts(prompts)
    k = len(prompts)
    M = torch.zeros(k, k, dtype=torch.float64)
    for t, target in enumerate(tasks):
        embs = torch.stack([task_embedding(backbone, tensor_of(p), target, n_inputs) for p in prompts])
        embs = F.normalize(embs.double(), dim=-1)
        M[:, t] = embs @ embs[t]
        if progress is not None:
            progress(t + 1, k)
    return M


def panda_pair(backbone, source: torch.Tensor, target: torch.Tensor, target_task: str, n_inputs: int = 32) -> float:
    """The PANDA metric of one (source prompt, target prompt) pair on the target task."""
    e_s = task_embedding(backbone, source, target_task, n_inputs)
    e_t = task_embedding(backbone, target, target_task, n_inputs)
    return float(F.cosine_similarity(e_s.double(), e_t.double(), dim=0))


@INDICATORS.add
class PandaIndicator(Indicator):
    name = "panda"
    label = "PANDA task-embedding cosine"
    family = "model"
    needs_backbone = True
    symmetric = False
    options = (Option("n_inputs", 32, "target dev inputs averaged over for each task embedding"),)

    def compute(self, prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext) -> torch.Tensor:
        return panda_matrix(ctx.backbone, prompts, ctx.task_names(prompts), self.option(ctx, "n_inputs"),
                            ctx.progress)
