"""ON over task inputs, read where the readout reads (METHODS.md section 6).

Su et al. probe `<mask>` because that is where their MLM readout reads. On a
backbone whose readout is elsewhere, the prompt-alone probe measures a
position the prompt was never trained to shape. This indicator drives the
frozen backbone with each prompt on its OWN task's first `n_inputs` dev
inputs, binarises every layer's FFN pre-activation at 0, and reads the binary
activations at exactly the positions the readout reads
(`PromptScorer.readout_positions`: one position per input, or several, then
averaged): e.g. every text token for the mean readout on encoders, the
inserted `[MASK]` for a slot readout, `<mask>` on masked LMs, the last
position on causal LMs. The result is an activation frequency
per neuron; the indicator is the cosine of those vectors (flattened over the
layers, or a window of them) between prompts. Symmetric, unit diagonal.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..lazy import lazy_module
from ..prompts import SoftPrompt
from ..prompts.readouts import read_at
from .base import INDICATORS, Indicator, IndicatorContext, Option
from .stimulation import activation_rows, overlap_matrix, task_input_activations

torch = lazy_module("torch")


def at_readout(scorer, acts: torch.Tensor, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """(B, F) binarised activations at the positions the scorer's readout reads
    ((B,) one each, or (B, k) averaged, -1 entries skipped)."""
    return read_at(acts.float(), scorer.readout_positions(mask, start, n))


def readout_activations(backbone, prompt: torch.Tensor, task: str, n_inputs: int = 32) -> torch.Tensor:
    """(num_layers, ffn_size) activation frequency of `prompt` at the readout over `task`'s dev inputs."""
    return task_input_activations(backbone, prompt, task, n_inputs, at_readout)


@INDICATORS.add
class OnInputsIndicator(Indicator):
    name = "on_inputs"
    label = "ON over task inputs (at the readout)"
    family = "model"
    needs_backbone = True
    options = (
        Option("n_inputs", 32, "dev inputs of each prompt's own task averaged over"),
        Option("layers", None, "layer window (start, end), end exclusive; None = every layer"),
    )

    def compute(self, prompts: Sequence[SoftPrompt | torch.Tensor], ctx: IndicatorContext) -> torch.Tensor:
        backbone, tasks = ctx.backbone, ctx.task_names(prompts)
        n_inputs = int(self.option(ctx, "n_inputs"))
        rows = activation_rows(
            prompts, lambda i, t: readout_activations(backbone, t, tasks[i], n_inputs),
            lambda i: (("readout", tasks[i]), n_inputs), ctx.cache, ctx.progress,
        )
        return overlap_matrix(rows, self.option(ctx, "layers"))
