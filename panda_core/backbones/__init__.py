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
- `loading`: `get_backbone` (cached per process and device), `list_backbones`.

Example::

    bb = get_backbone("minilm")
    ids = bb.tokenizer(["a fine film"], return_tensors="pt")
    out = bb.model(inputs_embeds=bb.embeddings()(ids.input_ids), attention_mask=ids.attention_mask)
"""

from __future__ import annotations

from .fixture import tiny_mlm
from .kinds import FALLBACK_KIND, KINDS, BackboneKind, kind_from_architectures
from .loading import get_backbone, list_backbones
from .packages import PACKAGES, OfflinePackage, prepare_backbones
from .runtime import Backbone, default_device
from .spec import REGISTRY, TINY_MLM, BackboneSpec

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
