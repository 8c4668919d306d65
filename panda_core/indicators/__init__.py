"""Transferability indicators (METHODS.md section 4): one `Indicator` per
registry entry in `INDICATORS`, one module per family.

- embedding.py     e_concat, e_avg, c_concat, c_avg, spot (the prompt tensors alone)
- stimulation.py   on (overlap of activated FFN neurons; layer window, per-layer view)
- panda_metric.py  panda (PANDA's prompt-driven task-embedding cosine; `panda_pair`)
- on_inputs.py     on_inputs (ON over each prompt's own task inputs, at the readout)

and around them: correlation.py (rank correlation), similarity.py (matrices
by indicator name over stored prompts), validation.py (measured transfer, PT
reference, gains, source ranking, steps-to-reach), clusters.py (2-D layouts).

Importing this package registers every indicator: the built-in families in
their order, then every other module of the package that is not part of the
machinery (so a new indicator is one new module, picked up with no other edit).
The model itself is only loaded when a model indicator computes a matrix.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import INDICATORS, Indicator, IndicatorContext, Option, stack_prompts

#: modules of this package that hold no indicator (not imported eagerly: some are heavy)
_MACHINERY = {"base", "correlation", "similarity", "validation", "clusters"}
_BUILT_IN = ("embedding", "stimulation", "panda_metric")  # registration order of the original indicators


def _register_all() -> None:
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _MACHINERY)
    for name in (*_BUILT_IN, *(m for m in found if m not in _BUILT_IN)):
        importlib.import_module(f"{__name__}.{name}")


_register_all()

# the public names of the families (imported after registration, so the order above holds)
from .correlation import rank_correlation  # noqa: E402
from .embedding import EMBEDDING_FUNCS, c_avg, c_concat, e_avg, e_concat, spot  # noqa: E402
from .panda_metric import panda_matrix, panda_pair, task_embedding  # noqa: E402
from .stimulation import OnOptions, binary_cosine, ffn_activations, on_matrix, on_per_layer  # noqa: E402

__all__ = [
    "EMBEDDING_FUNCS", "INDICATORS", "Indicator", "IndicatorContext", "OnOptions", "Option", "binary_cosine",
    "c_avg", "c_concat", "e_avg", "e_concat", "ffn_activations", "on_matrix", "on_per_layer", "panda_matrix",
    "panda_pair", "rank_correlation", "spot", "stack_prompts", "task_embedding",
]
