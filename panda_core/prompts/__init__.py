"""Soft prompts: the artifact (`SoftPrompt`), its type (`PROMPT_TYPES`: input-level
rows or per-layer deep prefixes), how a fresh one is initialised,
how a frozen backbone is driven and scored by one (`PromptScorer`), and the
file formats prompts travel in (our safetensors file, PEFT adapters; what can
be imported, .npy and torch zips and bundles of them included, is the
`importers.IMPORTERS` registry).

Importing this package stays light (no torch): the store and waiting job
workers import it. The scoring side (`PromptScorer`, `Encoded`, `Batch`, ...)
and the PEFT format are loaded on first use of their names.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..atomic import sha256_file
from .formats import (
    ALL_DTYPES,
    FLOAT_DTYPES,
    MAX_HEADER_BYTES,
    MAX_PROMPT_BYTES,
    MAX_TENSORS,
    inspect_safetensors,
    read_prompt_file,
)
from .init import PromptInit, check_init, init_prompt, initial_tensor, recorded_init, task_seed
from .soft_prompt import SoftPrompt, check_tensor
from .types import PROMPT_TYPES, PromptGeometry, prompt_type_of

# name -> submodule, imported on first access (these modules import torch)
_LAZY = {
    "PromptScorer": "scorer",
    "Encoded": "encoding",
    "Batch": "encoding",
    "clear_encoding_cache": "encoding",
    "write_peft_adapter": "peft",
    "read_peft_adapter": "peft",
    "peft_prompt_embeddings": "peft",
    "deep_forward": "deep",
    "write_prefix_adapter": "peft_prefix",
    "read_prefix_adapter": "peft_prefix",
}

__all__ = [
    "ALL_DTYPES", "FLOAT_DTYPES", "MAX_HEADER_BYTES", "MAX_PROMPT_BYTES", "MAX_TENSORS",
    "PROMPT_TYPES", "PromptGeometry", "PromptInit", "SoftPrompt", "check_init", "prompt_type_of", "check_tensor", "init_prompt", "initial_tensor", "inspect_safetensors",
    "recorded_init", "task_seed",
    "read_prompt_file", "sha256_file", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
