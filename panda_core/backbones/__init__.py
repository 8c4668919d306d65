"""Frozen pretrained language models ("backbones") that soft prompts drive.

Three backbones ship offline as PyPI packages (`spec.REGISTRY`; see docs
OFFLINE.md); any other name is a local folder with a ``config.json`` or, last,
a hub id. The modules, bottom up:

- `spec`: `BackboneSpec` and the named-backbone `REGISTRY`;
- `kinds`: one strategy class per backbone kind (encoder, mlm, causal) in
  `KINDS`: text encoding, prompt splice, trunk, pooling, readout, class
  scores, the prompt-alone input of ON, the PEFT task type;
- `runtime`: the frozen `Backbone`, devices, FFN discovery;
- `splitzip`, `gguf`, `packages`: offline package unpacking (`prepare_backbones`);
- `fixture`: the tiny random masked LM for tests (`tiny_mlm`);
- `foreign`: backbones that are not installed (imported prompts of them are stored, never loaded);
- `loading`: `get_backbone` (cached per process and device), `list_backbones`.

Example::

    bb = get_backbone("minilm")
    ids = bb.tokenizer(["a fine film"], return_tensors="pt")
    out = bb.model(inputs_embeds=bb.embeddings()(ids.input_ids), attention_mask=ids.attention_mask)
"""

from __future__ import annotations

import importlib
from typing import Any

from .spec import REGISTRY, TINY_MLM, BackboneSpec

#: the rest imports torch and transformers: loaded on first use of a name, so
#: the CLI can check a backbone name against `REGISTRY` without them
_LAZY = {
    "tiny_mlm": "fixture",
    "FALLBACK_KIND": "kinds", "KINDS": "kinds", "BackboneKind": "kinds", "kind_from_architectures": "kinds",
    "get_backbone": "loading", "list_backbones": "loading",
    "PACKAGES": "packages", "OfflinePackage": "packages", "prepare_backbones": "packages",
    "Backbone": "runtime", "default_device": "runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "FALLBACK_KIND",
    "KINDS",
    "PACKAGES",
    "REGISTRY",
    "TINY_MLM",
    "Backbone",
    "BackboneKind",
    "BackboneSpec",
    "OfflinePackage",
    "default_device",
    "get_backbone",
    "kind_from_architectures",
    "list_backbones",
    "prepare_backbones",
    "tiny_mlm",
]
