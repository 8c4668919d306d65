"""Prompt transfer from a source task to a target task (METHODS.md 2-3).

One module per method, each a `TransferMethod` registered in `METHODS`
(base.py): zero_shot, pt, pot, panda, model_tuning and multi_source. The
knobs live in config.py. Running a transfer (resolving the stored prompts and
PANDA's teacher, recording the run, saving the prompt) is the facade's job:
`panda_core.ops.transfer.run_transfer`, re-exported here on first use.
"""

from __future__ import annotations

import enum
import importlib
import pkgutil
from typing import Any

from .base import (
    METHODS,
    Need,
    Sources,
    TransferContext,
    TransferMethod,
    TransferResult,
    execution_order,
)
from .config import KdForm, StudentInit, Teacher, TransferConfig

# Every module of this package other than base and config holds one method and
# registers it on import: a new method is a new module, found here. The
# built-in ones come first, in the order the CLI and the pages list them.
_BUILT_IN = ("zero_shot", "pt", "pot", "panda", "model_tuning")
_FOUND = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base", "config"))
for _module in (*_BUILT_IN, *(m for m in _FOUND if m not in _BUILT_IN)):
    importlib.import_module(f".{_module}", __name__)

from .panda import kd_weight  # noqa: E402

# The method names as a str enum, built from the registry (Method("pot"), Method.PANDA.value, ...).
Method = enum.Enum("Method", [(n.upper().replace("-", "_"), n) for n in METHODS.names()], type=str,
                   module=__name__)

_LAZY = {"run_transfer": "..ops.transfer", "source_prompt": "..ops.transfer", "plan_transfer": "..ops.transfer"}

__all__ = [
    "METHODS", "KdForm", "Method", "Need", "Sources", "StudentInit", "Teacher", "TransferConfig", "TransferContext",
    "TransferMethod", "TransferResult", "execution_order", "kd_weight", *_LAZY,
]


def __getattr__(name: str) -> Any:  # ops imports this package: the facade's names are fetched on first use
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
