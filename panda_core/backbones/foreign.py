"""Backbones that are not installed ("foreign"): published prompts of, say,
RoBERTa-base (100 x 768, Su et al.'s Prompt-Transferability release) are
stored under their declared backbone id and hidden size without loading any
model. What needs only the prompt tensors (the embedding indicators, the
cluster view, export) works on them; what runs the model (transfers, ON, the
PANDA metric, training) needs the backbone and says so in one line
(`require_installed`).

"Installed" means loadable without the hub: a registry name (`spec.REGISTRY`,
shipped as offline packages), the `tiny-mlm` test fixture, or a local model
folder. Nothing here imports torch or loads a model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import PandaError
from .spec import REGISTRY, TINY_MLM

#: hidden size and layer count of well-known backbones that are not shipped,
#: so an imported prompt of one is checked against its width
KNOWN_SIZES: dict[str, tuple[int, int]] = {
    "roberta-base": (768, 12), "roberta-large": (1024, 24),
    "bert-base-uncased": (768, 12), "bert-base-cased": (768, 12),
    "bert-large-uncased": (1024, 24), "bert-large-cased": (1024, 24),
    "t5-small": (512, 6), "t5-base": (768, 12), "t5-large": (1024, 24),
    "gpt2": (768, 12), "gpt2-medium": (1024, 24), "gpt2-large": (1280, 36), "gpt2-xl": (1600, 48),
}
#: the most tokens a prompt of a backbone we cannot load may have (no model to ask)
MAX_FOREIGN_TOKENS = 1024
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]{0,95}(/[\w.\-]{1,96})?")  # what the hub accepts as a model id


def installed(name: str) -> bool:
    """Whether `name` loads without the hub: a registry name, tiny-mlm or an existing local path."""
    if not isinstance(name, str) or not name.strip():
        return False
    text = name.strip()
    if text.lower() in REGISTRY or text.lower() == TINY_MLM:
        return True
    try:
        return Path(text).expanduser().exists()
    except (OSError, ValueError, RuntimeError):
        return False


def not_installed_message(name: str) -> str:
    return (f"prompts of '{name}' need that backbone, which is not installed (installed: "
            f"{', '.join(REGISTRY.names())} or a local model folder); set PANDA_ALLOW_HUB=1 to load it from the hub")


def require_installed(name: str) -> None:
    """Refuse (one line naming the backbone) work that must run a backbone that
    is neither installed nor allowed from the hub (PANDA_ALLOW_HUB=1)."""
    if not installed(name) and not os.environ.get("PANDA_ALLOW_HUB"):
        raise PandaError(not_installed_message(name))


def foreign_id(name: str, where: str) -> str:
    """A declared backbone id that is not installed, checked as a hub-style id
    (``roberta-base``, ``FacebookAI/roberta-base``); refused in one line otherwise."""
    text = name.strip() if isinstance(name, str) else ""
    if not _HUB_ID.fullmatch(text) or ".." in text:
        raise PandaError(f"{where}: backbone {text[:60]!r} is not a registry name "
                         f"({', '.join(REGISTRY.names())}), a model folder nor a hub-style id such as 'roberta-base'")
    return text


def width_problem(name: str, shape: tuple[int, ...]) -> str | None:
    """Why a prompt tensor of `shape` cannot belong to foreign backbone `name`
    (its rows' width, and a deep prompt's layers, from `KNOWN_SIZES`), or None."""
    sizes = KNOWN_SIZES.get(name.lower())
    if sizes is None:
        return None
    hidden, layers = sizes
    width = shape[-1]
    if width != hidden:
        same = [k for k, (h, _) in KNOWN_SIZES.items() if h == width]
        hint = f" ({', '.join(same[:4])} {'has' if len(same) == 1 else 'have'} {width})" if same else ""
        return f"a prompt of '{name}' has rows of width {hidden}, this one has {width}{hint}; check the backbone"
    if len(shape) == 4 and shape[0] != layers:
        return f"a deep prompt of '{name}' has {layers} layers, this one has {shape[0]}; check the backbone"
    return None
