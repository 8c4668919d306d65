"""Cross-model prompt transfer: a projector maps one backbone's prompts into
another's space (`projector`), trained through the one training loop
(`training`), and the projection run that trains, saves and scores it.

Importing the package loads only the settings (`config`, no torch); the
rest is loaded on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import (
    DEFAULT_LR,
    DEV_LIMIT,
    HIDDEN,
    ProjectorMethod,
    projector_config,
    projector_method,
    pt_prompt,
)

_LAZY = {
    "PromptProjector": "projector", "load_projector": "projector", "projector_path": "projector",
    "save_projector": "projector", "run_projection": "training", "train_projector": "training",
}

__all__ = ["DEFAULT_LR", "DEV_LIMIT", "HIDDEN", "ProjectorMethod", "projector_config", "projector_method",
           "pt_prompt", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
