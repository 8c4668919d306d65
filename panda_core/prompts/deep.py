"""Running a frozen backbone with a deep prompt (per-layer key/value prefixes).

A deep prompt is ``(L, 2, n, w)`` (see `prompts.types`): layer l's n prefix
keys ``[l, 0]`` and values ``[l, 1]``, heads folded into w. Every text token
attends to the n prefix positions in every layer; the prefix itself is not a
token (it has no query, no FFN pass, no output row), so the outputs have the
text's length and the plain forward's type.

How the prefix enters attention is an architecture fact, not a backbone-kind
one (the ``encoder`` kind covers BERT and MPNet), so the mechanism is chosen
by ``config.model_type`` (`PREFIX_MECHANISMS`), from transformers 5.x code:

- ``bert`` (minilm, tiny-mlm), ``llama`` (smollm2): native ``past_key_values``.
  ``BertSelfAttention`` and ``LlamaAttention`` call
  ``past_key_values.update(k, v, layer_idx)`` whenever a cache is passed, even
  in a non-decoder BERT (``use_cache`` only decides whether one is created),
  and ``create_bidirectional_mask`` takes the key length from a 2-D mask that
  is longer than the input ("prefix tuning in PEFT"). A fresh `DynamicCache`
  filled with the prefix is passed, with the mask extended by n ones. Text
  positions start at n (``past_key_values_length`` in ``BertEmbeddings``, the
  cache length in ``LlamaModel``), as in P-tuning v2's code and PEFT.
- ``mpnet``: ``MPNetModel.forward`` swallows ``past_key_values`` in
  ``**kwargs`` and ``MPNetSelfAttention`` has no cache, and its ``view`` by the
  input's length rules out a forward hook that lengthens k/v. So each
  ``MPNetSelfAttention`` gets a prefix-aware forward for the duration of the
  call (refcounted, restored after; a ContextVar keeps other threads' plain
  forwards plain). Prefix columns get no relative-position bias (zero) and
  the text keeps its positions; the additive mask is extended with zeros.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
import types
from collections.abc import Iterator
from typing import Any

import torch

from ..errors import PandaError
from ..registry import Registry
from .types import PROMPT_TYPES, PromptGeometry


class PrefixMechanism:
    """How one architecture (``config.model_type``) takes per-layer prefixes."""

    name: str
    label: str

    def forward(self, model: torch.nn.Module, kwargs: dict[str, Any], mask: torch.Tensor,
                pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
        """Run `model(**kwargs)` with layer i's keys/values ``pairs[i]`` (B, H, n, hd) in front."""
        raise NotImplementedError

    def capture(self, model: torch.nn.Module, embeds: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Layer-wise (keys, values) (1, H, n, hd) the model computes for input embeddings (1, n, d)."""
        raise NotImplementedError


PREFIX_MECHANISMS: Registry[PrefixMechanism] = Registry("deep-prompt architecture")


class CachePrefix(PrefixMechanism):
    """A transformers `DynamicCache` holding the prefix, passed as ``past_key_values``."""

    def __init__(self, name: str, label: str) -> None:
        self.name, self.label = name, label

    def forward(self, model, kwargs, mask, pairs):
        from transformers import DynamicCache

        n = pairs[0][0].shape[-2] if pairs else 0
        ones = torch.ones(mask.shape[0], n, dtype=mask.dtype, device=mask.device)
        cache = DynamicCache(pairs, config=model.config)
        return model(**kwargs, attention_mask=torch.cat([ones, mask], 1), past_key_values=cache)

    def capture(self, model, embeds):
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        trunk = getattr(model, "base_model", model)
        trunk(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long,
                                                               device=embeds.device), past_key_values=cache)
        return [(layer.keys, layer.values) for layer in cache.layers]


PREFIX_MECHANISMS.register(CachePrefix("bert", "BERT (native past_key_values)"))
PREFIX_MECHANISMS.register(CachePrefix("llama", "Llama (native past_key_values)"))


# ------------------------------------------------------------------ MPNet
_MPNET_PREFIX: contextvars.ContextVar[dict[int, tuple[torch.Tensor, torch.Tensor]] | None] = \
    contextvars.ContextVar("panda_mpnet_prefix", default=None)
_PATCH_LOCK = threading.Lock()
_PATCHED: dict[int, int] = {}  # id(attention module) -> active deep_forward calls


def _mpnet_attention(self: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     position_bias: torch.Tensor | None = None, output_attentions: bool = False,
                     **kwargs: Any) -> tuple[torch.Tensor, ...]:
    """``MPNetSelfAttention.forward`` with this context's prefix keys/values in front."""
    pair = (_MPNET_PREFIX.get() or {}).get(id(self))
    if pair is None:  # another thread's plain forward during our call
        return type(self).forward(self, hidden_states, attention_mask, position_bias, output_attentions, **kwargs)
    k_pre, v_pre = pair
    bsz, length = hidden_states.shape[:2]
    shape = (bsz, length, -1, self.attention_head_size)
    q = self.q(hidden_states).view(shape).transpose(1, 2)
    k = torch.cat([k_pre.to(q.dtype), self.k(hidden_states).view(shape).transpose(1, 2)], 2)
    v = torch.cat([v_pre.to(q.dtype), self.v(hidden_states).view(shape).transpose(1, 2)], 2)
    n = k_pre.shape[-2]
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
    if position_bias is not None:
        scores = scores + torch.nn.functional.pad(position_bias, (n, 0))  # no position for the prefix
    if attention_mask is not None:
        pad = attention_mask.new_ones if attention_mask.dtype == torch.bool else attention_mask.new_zeros
        scores = scores + torch.cat([pad((*attention_mask.shape[:-1], n)), attention_mask], -1)
    probs = self.dropout(torch.softmax(scores, dim=-1))
    out = self.o(torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(bsz, length, self.all_head_size))
    return (out, probs) if output_attentions else (out,)


def _mpnet_attentions(model: torch.nn.Module) -> list[torch.nn.Module]:
    from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

    return [m for m in model.modules() if isinstance(m, MPNetSelfAttention)]


@contextlib.contextmanager
def _patched(modules: list[torch.nn.Module], pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    token = _MPNET_PREFIX.set({id(m): p for m, p in zip(modules, pairs, strict=True)})
    with _PATCH_LOCK:
        for m in modules:
            if _PATCHED.get(id(m), 0) == 0:
                m.forward = types.MethodType(_mpnet_attention, m)
            _PATCHED[id(m)] = _PATCHED.get(id(m), 0) + 1
    try:
        yield
    finally:
        _MPNET_PREFIX.reset(token)
        with _PATCH_LOCK:
            for m in modules:
                _PATCHED[id(m)] -= 1
                if _PATCHED[id(m)] == 0:
                    del _PATCHED[id(m)]
                    m.__dict__.pop("forward", None)


class MPNetPrefix(PrefixMechanism):
    """A prefix-aware ``MPNetSelfAttention.forward`` for the call (MPNet has no cache)."""

    name = "mpnet"
    label = "MPNet (prefix-aware self-attention for the call)"

    def forward(self, model, kwargs, mask, pairs):
        with _patched(_mpnet_attentions(model), pairs):
            return model(**kwargs, attention_mask=mask)

    def capture(self, model, embeds):
        got: list[torch.Tensor] = []
        hook = lambda mod, args, out: got.append(out)  # noqa: E731
        handles = [lin.register_forward_hook(hook) for m in _mpnet_attentions(model) for lin in (m.k, m.v)]
        try:
            model(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], device=embeds.device))
        finally:
            for h in handles:
                h.remove()
        heads = model.config.num_attention_heads
        split = [t.view(*t.shape[:2], heads, -1).transpose(1, 2) for t in got]
        return list(zip(split[0::2], split[1::2], strict=True))


PREFIX_MECHANISMS.register(MPNetPrefix())


# ------------------------------------------------------------------ public
def mechanism(model: torch.nn.Module) -> PrefixMechanism:
    """The prefix mechanism of `model`'s architecture; one line when there is none."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in PREFIX_MECHANISMS:
        raise PandaError(f"deep prompts run on {', '.join(PREFIX_MECHANISMS.names())} models; "
                         f"{type(model).__name__} ({model_type}) has no prefix mechanism here: use an input prompt")
    return PREFIX_MECHANISMS.get(model_type)


def layer_pairs(deep_prompt: torch.Tensor, geo: PromptGeometry, batch: int,
                dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(L, 2, n, w) or (B, L, 2, n, w) -> per layer (keys, values), each (B, heads, n, head_dim)."""
    p = deep_prompt if deep_prompt.dim() == 5 else deep_prompt.unsqueeze(0).expand(batch, -1, -1, -1, -1)
    n = p.shape[3]
    p = p.to(dtype).reshape(batch, geo.num_layers, 2, n, geo.kv_heads, geo.head_dim).transpose(3, 4)
    return [(p[:, i, 0], p[:, i, 1]) for i in range(geo.num_layers)]


def check_deep(deep_prompt: Any, model: torch.nn.Module, batch: int | None = None,
               where: str = "deep prompt") -> PromptGeometry:
    """Refuse a tensor that is not a deep prompt for `model` (one line); returns the geometry."""
    geo = PromptGeometry.of(model)
    deep = PROMPT_TYPES.get("deep")
    if isinstance(deep_prompt, torch.Tensor) and deep_prompt.dim() == 5:
        if batch is not None and deep_prompt.shape[0] != batch:
            raise PandaError(f"{where}: {deep_prompt.shape[0]} deep prompts for a batch of {batch} rows")
        deep.check(deep_prompt[0], geo, where=where)
        return geo
    deep.check(deep_prompt, geo, where=where)
    return geo


def deep_forward(model: torch.nn.Module, inputs: torch.Tensor, attention_mask: torch.Tensor | None,
                 deep_prompt: torch.Tensor, **model_kwargs: Any) -> Any:
    """`model`'s own forward on token ids (B, T) or input embeddings (B, T, d),
    with every layer's self-attention seeing the deep prompt's n keys/values
    in front of the text. `attention_mask` is the text's (B, T) mask (the
    prefix is always attended); `model_kwargs` (token_type_ids, logits_to_keep,
    ...) go to the model. Returns the plain forward's output type, of the
    text's length; the gradient flows into `deep_prompt` ((L, 2, n, w) shared
    by the batch, or (B, L, 2, n, w) one per row)."""
    mech = mechanism(model)
    batch = inputs.shape[0]
    geo = check_deep(deep_prompt, model, batch)
    dtype = next(model.parameters()).dtype
    pairs = layer_pairs(deep_prompt, geo, batch, dtype)
    key = "inputs_embeds" if inputs.is_floating_point() else "input_ids"
    if attention_mask is None:
        attention_mask = torch.ones(inputs.shape[:2], dtype=torch.long, device=inputs.device)
    return mech.forward(model, {key: inputs, **model_kwargs}, attention_mask, pairs)


def deep_from_input(model: torch.nn.Module, prompt: torch.Tensor) -> torch.Tensor:
    """The deep prompt (L, 2, n, w) holding the keys/values `model` computes
    for an input-level prompt (n, d) run alone (positions 0..n-1, no special
    tokens). On a causal LM, ``deep_forward`` with it equals running the
    prompt as input tokens before the text (the KV-cache identity); on a
    bidirectional encoder it is an approximation (there the input prompt's
    keys also depend on the text), used as an initialisation."""
    mech = mechanism(model)
    geo = PromptGeometry.of(model)
    PROMPT_TYPES.get("input").check(prompt, geo, where="input prompt")
    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        pairs = mech.capture(model, prompt.to(weight.device, weight.dtype).unsqueeze(0))
    keys = torch.stack([k[0] for k, _ in pairs])  # (L, H, n, hd)
    values = torch.stack([v[0] for _, v in pairs])
    out = torch.stack([keys, values], 1)  # (L, 2, H, n, hd)
    return out.transpose(2, 3).reshape(geo.num_layers, 2, prompt.shape[0], geo.kv_width).detach().clone()


# ------------------------------------------------------- the scorer's driver
def is_deep(prompt: Any) -> bool:
    """Whether a prompt tensor is a deep prompt: (L, 2, n, w), or (B, L, 2, n, w) one per row."""
    return isinstance(prompt, torch.Tensor) and prompt.dim() >= 4


def driver(deep_prompt: torch.Tensor) -> Any:
    """A ``run(module, embeds, mask, **kwargs)`` for the backbone kinds' `trunk` /
    `forward_outputs` that drives `module` with the deep prompt in every layer
    (the kinds stay prompt-type-agnostic: they only call ``run``)."""

    def run(module: torch.nn.Module, embeds: torch.Tensor, mask: torch.Tensor, **kwargs: Any) -> Any:
        return deep_forward(module, embeds, mask, deep_prompt, **kwargs)

    return run
