"""Prompt types: what a prompt tensor *is* for a backbone (`PROMPT_TYPES`).

- ``input``: today's input-level soft prompt (Lester et al.), ``(n, d)`` rows
  spliced into the input embeddings (d = the backbone's hidden size).
- ``deep``: per-layer key/value prefixes (P-tuning v2, the setting of PANDA's
  released code), ``(L, 2, n, w)``: for each of the L layers, the n prefix
  keys (index 0) and values (index 1) exactly as they enter self-attention,
  heads folded into the last axis (``w = kv_heads * head_dim``, head-major,
  the layout of the key/value projection's output). On BERT/MPNet w equals the
  hidden size; on SmolLM2 (grouped-query attention, 3 key/value heads of 64)
  w = 192, not 576. On Llama-style models the keys are post-RoPE (what the KV
  cache holds). Running a backbone with one lives in `prompts.deep`.

Why this layout: ``tensor[l, 0]`` is layer l's key rows with no reshaping, and
``tensor.permute(2, 0, 1, 3).reshape(n, -1)`` is PEFT's ``PREFIX_TUNING``
``prompt_embeddings`` (n, L * 2 * w) exactly (see `prompts.peft_prefix`).

Each entry says a tensor's shape for a backbone, initialises a fresh one,
refuses a wrong shape with one line, and gives the ``(n, D)`` rows the
embedding indicators compare (for ``deep``: one row per virtual token, all
layers' keys and values concatenated, i.e. the flattened per-layer prefixes).
Importing this module does not import torch (registries stay light).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PandaError
from ..registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class PromptGeometry:
    """The sizes of a backbone that decide a prompt's shape."""

    hidden_size: int
    num_layers: int
    kv_heads: int
    head_dim: int

    @property
    def kv_width(self) -> int:
        """Width of one layer's key (or value) row: heads folded in."""
        return self.kv_heads * self.head_dim

    @classmethod
    def of(cls, obj: Any) -> PromptGeometry:
        """From a `Backbone`, a transformers model or its config."""
        cfg = getattr(obj, "config", None) or getattr(getattr(obj, "model", None), "config", None) or obj
        get = (lambda k: cfg.get(k)) if isinstance(cfg, dict) else (lambda k: getattr(cfg, k, None))
        hidden, layers, heads = get("hidden_size"), get("num_hidden_layers"), get("num_attention_heads")
        if not all(isinstance(v, int) for v in (hidden, layers, heads)):
            raise PandaError(f"{type(obj).__name__}: no hidden_size / num_hidden_layers / num_attention_heads "
                             "in the model config; prompts need a BERT-, MPNet- or Llama-style backbone")
        kv_heads = get("num_key_value_heads") or heads
        head_dim = get("head_dim") or hidden // heads
        return cls(int(hidden), int(layers), int(kv_heads), int(head_dim))


class PromptType(abc.ABC):
    """One kind of trainable prompt. Instances are stateless singletons."""

    name: str
    label: str
    ndim: int
    #: the learning rate of a run that sets none (None: the backbone's prompt-tuning default)
    default_lr: float | None = None

    @abc.abstractmethod
    def shape(self, geo: PromptGeometry, length: int) -> tuple[int, ...]:
        """The tensor shape of a `length`-token prompt for this backbone."""

    def length(self, tensor: torch.Tensor) -> int:
        """The number of (virtual) tokens: every type keeps them on the second-to-last axis."""
        return int(tensor.shape[-2])

    @abc.abstractmethod
    def init(self, backbone: Any, length: int, how: str = "vocab", seed: int = 0,
             source: torch.Tensor | None = None) -> torch.Tensor:
        """A fresh float32 tensor for a PT run on `backbone` (how: vocab, random, source)."""

    @abc.abstractmethod
    def rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """(n, D) rows the embedding indicators compare (``rows.reshape(-1)`` is vec(P))."""

    def check(self, tensor: Any, geo: PromptGeometry, length: int | None = None, where: str = "prompt") -> None:
        """Refuse (one line naming expected and actual shapes) a tensor that is
        not a finite float tensor of this type's shape for the backbone."""
        import torch

        if not isinstance(tensor, torch.Tensor):
            raise PandaError(f"{where}: a {self.name} prompt must be a tensor, got {type(tensor).__name__}")
        actual = tuple(tensor.shape)
        n = length if length is not None else (actual[-2] if tensor.dim() == self.ndim else 0)
        expected = self.shape(geo, n)
        if actual != expected or n < 1:
            pretty = self._pretty(expected) if length is None else str(expected)
            raise PandaError(f"{where}: a {self.name} prompt for this backbone has shape {pretty}, "
                             f"got {actual}")
        if not tensor.is_floating_point():
            raise PandaError(f"{where}: prompt dtype {tensor.dtype} is not a float type; save it as float32")
        if not torch.isfinite(tensor).all():
            raise PandaError(f"{where}: prompt contains NaN or Inf values; retrain or re-export it")

    @staticmethod
    def _pretty(shape: tuple[int, ...]) -> str:
        """A shape with the token axis (second to last) written as n."""
        parts = [str(s) for s in shape]
        parts[-2] = "n"
        return "(" + ", ".join(parts) + ")"


PROMPT_TYPES: Registry[PromptType] = Registry("prompt type")


@PROMPT_TYPES.add
class InputPrompt(PromptType):
    """(n, d) rows in the input embedding space, spliced by the backbone kind."""

    name = "input"
    label = "input-level prompt (n x d rows in the input embeddings)"
    ndim = 2

    def shape(self, geo, length):
        return (length, geo.hidden_size)

    def init(self, backbone, length, how="vocab", seed=0, source=None):
        from .init import init_prompt

        return init_prompt(backbone.embeddings(), length, how, seed, source)

    def rows(self, tensor):
        return tensor


@PROMPT_TYPES.add
class DeepPrompt(PromptType):
    """(L, 2, n, w) per-layer key/value prefixes (P-tuning v2)."""

    name = "deep"
    label = "deep prompt (per-layer key/value prefixes, P-tuning v2)"
    ndim = 4
    default_lr = 0.01  # trains on minilm (devtools/deep_prompt_check.py); the input prompts' 0.3 is far too big

    def shape(self, geo, length):
        return (geo.num_layers, 2, length, geo.kv_width)

    def init(self, backbone, length, how="vocab", seed=0, source=None):
        """`vocab` (default): the keys/values the frozen backbone computes for
        sampled vocabulary tokens (`deep.deep_from_input`), so every layer
        starts at its own scale; `random`: N(0, 1), as P-tuning v2's code
        initialises its prefix embedding (``nn.Embedding``, no projection);
        `source`: a copy of a source deep prompt (prompt transfer)."""
        import torch

        from .deep import deep_from_input
        from .init import PromptInit, init_prompt

        how = PromptInit(how)
        geo = PromptGeometry.of(backbone)
        if how is PromptInit.SOURCE:
            if source is None:
                raise PandaError("prompt init 'source' needs a source prompt")
            self.check(source, geo, where="source prompt")
            return source.detach().clone().float()
        if how is PromptInit.RANDOM:
            gen = torch.Generator().manual_seed(seed)
            return torch.randn(self.shape(geo, length), generator=gen).to(backbone.device)
        rows = init_prompt(backbone.embeddings(), length, how, seed)
        return deep_from_input(backbone.model, rows).float()

    def rows(self, tensor):
        return tensor.permute(2, 0, 1, 3).reshape(tensor.shape[2], -1)


def prompt_type_of(tensor: Any) -> PromptType:
    """The type a tensor's rank says (2 -> input, 4 -> deep); one line otherwise."""
    ndim = getattr(tensor, "ndim", None)
    for entry in PROMPT_TYPES:
        if entry.ndim == ndim:
            return entry
    shape = tuple(getattr(tensor, "shape", ())) or type(tensor).__name__
    raise PandaError(f"a prompt tensor is (n, d) for an input prompt or (L, 2, n, w) for a deep prompt, "
                     f"got shape {shape}")
