"""Backbone kinds: one strategy class per way a frozen model is driven by a
soft prompt and read out. Everything that differs between an encoder, a
masked LM and a causal LM lives here, so adding a kind is one new class
(registered in `KINDS`) plus its test; `PromptScorer`, the indicators, the
loaders and the PEFT export only call the interface below.

The layouts:

- encoder (no LM head): ``[CLS] <soft x n> text_a [SEP] text_b [SEP]``; the
  features are the mean of the text states and a class scores
  ``temperature * cos(features, frozen embedding of the label's description)``,
  so the prompt is the only trained parameter and zero-shot scoring works
  before any training;
- masked LM: ``[CLS] <soft x n> <mask> text_a [SEP] text_b [SEP]``; a class
  scores the MLM logit of its verbalizer at ``<mask>`` (Su et al.);
- causal LM: ``<soft x n> Text: ... Answer:``; a class scores the next-token
  logit of its label word at the last position.

Sentence pairs keep their segment ids (``encode_texts``: ``text_a`` is
segment 0, ``text_b`` segment 1; the prompt rows and any slot token are
segment 0), and a model whose embeddings use segments gets them
(``segment_embeddings``; BERT-style encoders do, MPNet does not).

Shapes: ``emb``/``embeds`` (B, L, d), ``mask`` (B, L), ``hidden`` (B, L, d);
``start`` is where the prompt's n rows begin. ``run(module, embeds, mask,
**kwargs)`` performs a forward (`plain_run` by default; a deep prompt's
driver puts its per-layer prefixes in front, `prompts.deep.driver`, and is
spliced as zero rows, n = 0).
"""

from __future__ import annotations

import abc
import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F

from ..registry import Registry

if TYPE_CHECKING:
    from .runtime import Backbone

#: The kind of a model without an LM head, and of architectures no kind claims.
FALLBACK_KIND = "encoder"


class LabelScoring(Protocol):
    """What a kind needs from a scorer to turn outputs into class scores."""

    temperature: float

    def label_keys(self) -> torch.Tensor: ...

    def verbalizer_ids(self) -> torch.Tensor: ...


class BackboneKind(abc.ABC):
    """The strategy interface. Instances are stateless singletons in `KINDS`.

    Attributes:
        name: the kind's name (`Backbone.kind`, `BackboneSpec.kind`, info rows).
        label: one line for humans.
        auto_class_name: the transformers Auto class that loads this kind.
        architecture_suffixes: config `architectures` endings that mean this kind.
        has_lm_head: whether scoring reads the LM head (a checkpoint without
            one is used as an encoder instead).
        slot_tokens: tokens the layout adds after the prompt (MLM's ``<mask>``),
            taken from the text budget.
        peft_task_type: PEFT's task type for a prompt-tuning adapter.
        peft_trainable: whether PEFT prompt tuning reads out where we do
            (PEFT has no ``<mask>`` slot after its virtual tokens).
    """

    name: str
    label: str
    auto_class_name: str
    architecture_suffixes: tuple[str, ...] = ()
    has_lm_head: bool = True
    slot_tokens: int = 0
    peft_task_type: str = "FEATURE_EXTRACTION"
    peft_trainable: bool = True

    # ------------------------------------------------------------- loading
    def claims(self, architectures: Sequence[str]) -> bool:
        """Whether a config's `architectures` list names a model of this kind."""
        return bool(self.architecture_suffixes) and any(a.endswith(self.architecture_suffixes)
                                                        for a in architectures)

    def auto_class(self) -> Any:
        """The transformers Auto class (imported on use: listing never imports transformers)."""
        return getattr(importlib.import_module("transformers"), self.auto_class_name)

    def prepare_tokenizer(self, tokenizer: Any) -> None:
        """Adjust a freshly loaded tokenizer in place (padding side, pad token);
        most kinds keep it as it is."""
        return None

    # ------------------------------------------------------------ encoding
    @abc.abstractmethod
    def text_ids(self, tokenizer: Any, examples: Sequence[Any], budget: int) -> list[list[int]]:
        """Token ids of each example's text (special tokens included), at most `budget` each."""

    def encode_texts(self, tokenizer: Any, examples: Sequence[Any],
                     budget: int) -> tuple[list[list[int]], list[list[int]] | None]:
        """`text_ids` and each token's segment (0: text_a, 1: text_b), or None
        when every token is segment 0 (single texts, or a layout without segments)."""
        return self.text_ids(tokenizer, examples, budget), None

    def segment_embeddings(self, model: torch.nn.Module) -> torch.nn.Embedding | None:
        """The model's token-type (segment) embedding table, if its embeddings
        use segments (BERT-style: yes; MPNet, RoBERTa-style with one type: no)."""
        table = getattr(getattr(self.trunk_module(model), "embeddings", None), "token_type_embeddings", None)
        return table if isinstance(table, torch.nn.Embedding) and table.num_embeddings > 1 else None

    def verbalizer_text(self, word: str) -> str:
        """How a label word is written before taking its first sub-token."""
        return " " + word  # a leading space for BPE vocabularies

    # ------------------------------------------------------------- forward
    @abc.abstractmethod
    def splice(self, emb: torch.Tensor, prompt: torch.Tensor, attention_mask: torch.Tensor,
               embedding: torch.nn.Module, tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Insert the (B, n, d) prompt into the text embeddings; returns
        (embeds, mask, start). `embedding` embeds any extra slot token."""

    def trunk_module(self, model: torch.nn.Module) -> torch.nn.Module:
        """The part of `model` that returns hidden states (without an LM head)."""
        return getattr(model, "base_model", model)

    def trunk(self, model: torch.nn.Module, embeds: torch.Tensor, mask: torch.Tensor,
              run: Runner | None = None) -> torch.Tensor:
        """Last hidden states (B, L, d) of the trunk."""
        return _hidden((run or plain_run)(self.trunk_module(model), embeds, mask))

    @abc.abstractmethod
    def pool(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """The prompt-driven representation (B, d) read from the hidden states."""

    @abc.abstractmethod
    def readout_positions(self, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """(B,) the position of each row the ON indicator reads on task inputs."""

    @abc.abstractmethod
    def read_outputs(self, out: Any, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """Scoring outputs from a forward output: pooled features (B, d) or the
        vocabulary logits at the scoring position (B, V)."""

    def forward_outputs(self, model: torch.nn.Module, embeds: torch.Tensor, mask: torch.Tensor,
                        start: int, n: int, run: Runner | None = None) -> torch.Tensor:
        """One forward of `model` on ready embeddings, read by `read_outputs`."""
        return self.read_outputs((run or plain_run)(model, embeds, mask), mask, start, n)

    @abc.abstractmethod
    def class_scores(self, scoring: LabelScoring, outputs: torch.Tensor) -> torch.Tensor:
        """(B, C) class scores from `read_outputs` rows."""

    @abc.abstractmethod
    def prompt_alone(self, backbone: Backbone, prompt: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Embeddings (1, L, d) of the (n, d) prompt with no task text, and the
        position the ON indicator reads."""


KINDS: Registry[BackboneKind] = Registry("backbone kind")

Runner = Callable[..., Any]


def plain_run(module: torch.nn.Module, embeds: torch.Tensor, mask: torch.Tensor, **kwargs: Any) -> Any:
    """One forward of `module` on ready input embeddings (the default ``run``)."""
    return module(inputs_embeds=embeds, attention_mask=mask, **kwargs)


def _hidden(out: Any) -> torch.Tensor:
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _segments_after_sep(ids: Sequence[int], sep_id: int | None) -> list[int]:
    """0 up to and including the first run of separators, 1 after it."""
    if sep_id is None or sep_id not in ids:
        return [0] * len(ids)
    first = list(ids).index(sep_id)
    while first + 1 < len(ids) and ids[first + 1] == sep_id:
        first += 1
    return [0] * (first + 1) + [1] * (len(ids) - first - 1)


def kind_from_architectures(architectures: Sequence[str] | None) -> str:
    """The kind a model config's `architectures` list names (first claim in
    registration order; `FALLBACK_KIND` when none does)."""
    archs = list(architectures or [])
    return next((k.name for k in KINDS if k.claims(archs)), FALLBACK_KIND)


class _ClsFirst(BackboneKind):
    """Bidirectional models: ``[CLS] <soft x n> [slot] rest``, texts tokenised
    as (text_a, text_b) pairs with the tokenizer's special tokens."""

    def text_ids(self, tokenizer: Any, examples: Sequence[Any], budget: int) -> list[list[int]]:
        return self.encode_texts(tokenizer, examples, budget)[0]

    def encode_texts(self, tokenizer, examples, budget):
        """Pairs keep the tokenizer's `token_type_ids` (BERT: ``[CLS] a [SEP]``
        is 0, ``b [SEP]`` is 1); a tokenizer without them (MPNet) gets the same
        split from its separators: segment 1 starts at the first token after
        the first run of separators."""
        a = [ex.text_a for ex in examples]
        b = [ex.text_b for ex in examples] if any(ex.text_b for ex in examples) else None
        if b is None:
            return tokenizer(a, truncation=True, max_length=budget)["input_ids"], None
        out = tokenizer(a, [x or "" for x in b], truncation="longest_first", max_length=budget)
        ids = out["input_ids"]
        types = out.get("token_type_ids")
        if types is None or not any(any(row) for row in types):
            types = [_segments_after_sep(row, tokenizer.sep_token_id) for row in ids]
        return ids, [list(t) for t in types]

    def slot(self, embedding: torch.nn.Module, tokenizer: Any, bsz: int, device: torch.device) -> torch.Tensor | None:
        """Embeddings (B, k, d) of the tokens placed right after the prompt, if any."""
        return None

    def splice(self, emb, prompt, attention_mask, embedding, tokenizer):
        bsz = emb.shape[0]
        ones = torch.ones((bsz, prompt.shape[1]), dtype=attention_mask.dtype, device=emb.device)
        parts = [emb[:, :1], prompt]
        masks = [attention_mask[:, :1], ones]
        extra = self.slot(embedding, tokenizer, bsz, emb.device)
        if extra is not None:
            parts.append(extra)
            masks.append(torch.ones(extra.shape[:2], dtype=attention_mask.dtype, device=emb.device))
        parts.append(emb[:, 1:])
        masks.append(attention_mask[:, 1:])
        return torch.cat(parts, 1), torch.cat(masks, 1), 1

    def prompt_alone(self, backbone, prompt):
        """``[CLS] <soft> [MASK] [SEP]`` (``[CLS] <soft> [SEP]`` without a mask
        token); ON reads the mask (else the first prompt row)."""
        emb = backbone.embeddings()
        tok = backbone.tokenizer
        p = prompt.to(emb.weight.dtype).unsqueeze(0)
        ids = lambda i: emb(torch.tensor([[i]], device=p.device))  # noqa: E731
        cls_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        if tok.mask_token_id is None:
            return torch.cat([ids(cls_id), p, ids(sep_id)], 1), 1
        return torch.cat([ids(cls_id), p, ids(tok.mask_token_id), ids(sep_id)], 1), 1 + p.shape[1]


@KINDS.add
class EncoderKind(_ClsFirst):
    """A sentence encoder without an LM head, scored against label descriptions."""

    name = "encoder"
    label = "encoder (no LM head; cosine to label descriptions)"
    auto_class_name = "AutoModel"
    has_lm_head = False

    def trunk_module(self, model):
        return model

    def pool(self, hidden, mask, start, n):
        """Mean of the text states (the prompt rows left out)."""
        text_mask = mask.clone()
        text_mask[:, start : start + n] = 0
        text_mask = text_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * text_mask).sum(1) / text_mask.sum(1).clamp(min=1.0)

    def readout_positions(self, mask, start, n):
        return torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)  # [CLS]

    def read_outputs(self, out, mask, start, n):
        return self.pool(_hidden(out), mask, start, n)

    def class_scores(self, scoring, outputs):
        return scoring.temperature * F.normalize(outputs, dim=-1) @ scoring.label_keys().T


@KINDS.add
class MaskedLMKind(_ClsFirst):
    """A masked LM: the verbalizers' logits at a ``<mask>`` right after the prompt."""

    name = "mlm"
    label = "masked LM (verbalizer logits at <mask>)"
    auto_class_name = "AutoModelForMaskedLM"
    architecture_suffixes = ("ForMaskedLM",)
    slot_tokens = 1
    peft_trainable = False  # PEFT has no <mask> slot after its virtual tokens

    def verbalizer_text(self, word):
        return word

    def slot(self, embedding, tokenizer, bsz, device):
        mask_id = torch.full((bsz, 1), tokenizer.mask_token_id, device=device)
        return embedding(mask_id)

    def pool(self, hidden, mask, start, n):
        return hidden[:, start + n]

    def readout_positions(self, mask, start, n):
        return torch.full((mask.shape[0],), start + n, device=mask.device)

    def read_outputs(self, out, mask, start, n):
        return out.logits[:, start + n]

    def class_scores(self, scoring, outputs):
        return outputs[:, scoring.verbalizer_ids()]


@KINDS.add
class CausalLMKind(BackboneKind):
    """A causal LM: the label words' next-token logits after ``Answer:``."""

    name = "causal"
    label = "causal LM (label-word logits at the last position)"
    auto_class_name = "AutoModelForCausalLM"
    architecture_suffixes = ("ForCausalLM", "LMHeadModel")
    peft_task_type = "CAUSAL_LM"

    def prepare_tokenizer(self, tokenizer):
        """Pad with eos, on the right (the readout is the last real position)."""
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"

    @staticmethod
    def template(ex: Any) -> str:
        if ex.text_b:
            return f"Premise: {ex.text_a}\nHypothesis: {ex.text_b}"
        return f"Text: {ex.text_a}"

    def text_ids(self, tokenizer, examples, budget):
        texts = [self.template(ex) for ex in examples]
        ids = tokenizer(texts, truncation=True, max_length=budget, add_special_tokens=False)["input_ids"]
        cue = tokenizer("\nAnswer:", add_special_tokens=False)["input_ids"]
        return [(seq[: budget - len(cue)] + cue) for seq in ids]

    def splice(self, emb, prompt, attention_mask, embedding, tokenizer):
        ones = torch.ones(prompt.shape[:2], dtype=attention_mask.dtype, device=emb.device)
        return torch.cat([prompt, emb], 1), torch.cat([ones, attention_mask], 1), 0

    def pool(self, hidden, mask, start, n):
        last = mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def readout_positions(self, mask, start, n):
        return mask.sum(1) - 1

    def read_outputs(self, out, mask, start, n):
        logits = out.logits
        return logits[torch.arange(logits.shape[0], device=logits.device), mask.sum(1) - 1]

    def forward_outputs(self, model, embeds, mask, start, n, run=None):
        run = run or plain_run
        if not _keeps_logits(model):
            return self.read_outputs(run(model, embeds, mask), mask, start, n)
        # the LM head only at the rows' last positions, not at every position
        rows = torch.arange(embeds.shape[0], device=embeds.device)
        keep, where = torch.unique(mask.sum(1) - 1, return_inverse=True)
        return run(model, embeds, mask, logits_to_keep=keep).logits[rows, where]

    def class_scores(self, scoring, outputs):
        return outputs[:, scoring.verbalizer_ids()]

    def prompt_alone(self, backbone, prompt):
        """``<soft>`` alone; ON reads its last row. With no rows (a deep prompt
        acts in the layers): the BOS (else EOS) token alone, read there."""
        emb = backbone.embeddings()
        p = prompt.to(emb.weight.dtype).unsqueeze(0)
        if p.shape[1] == 0:
            tok = backbone.tokenizer
            first = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            p = emb(torch.tensor([[first]], device=p.device))
        return p, p.shape[1] - 1


_LOGITS_TO_KEEP: dict[type, bool] = {}


def _keeps_logits(model: torch.nn.Module) -> bool:
    """Whether a causal LM's forward takes `logits_to_keep` (most do in transformers >= 4.50)."""
    cls = type(model)
    if cls not in _LOGITS_TO_KEEP:
        try:
            _LOGITS_TO_KEEP[cls] = "logits_to_keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            _LOGITS_TO_KEEP[cls] = False
    return _LOGITS_TO_KEEP[cls]
