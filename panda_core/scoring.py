"""How a frozen backbone is driven by a soft prompt and how classes are scored.

One `PromptScorer` per (backbone, task). Texts are tokenised once per split and
kept; a batch is padded to its own longest sequence. The prompt rows are
spliced into the input embeddings:

- encoder (no LM head): ``[CLS] <soft x n> text_a [SEP] text_b [SEP]``; the
  class score is ``temperature * cos(mean-pooled text states, frozen embedding
  of the label's description)``, so the prompt is the only trained parameter
  and zero-shot scoring works before any training;
- masked LM: ``[CLS] <soft x n> <mask> text_a [SEP] text_b [SEP]``; the class
  score is the MLM logit of each label's verbalizer at ``<mask>`` (Su et al.);
- causal LM: ``<soft x n> Text: ... Answer:``; the class score is the next-token
  logit of each label word at the last position.

An optional linear head (per task, counted and reported) replaces the
label-description scoring with ``head(features)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import PandaError
from .tasks import Example, TaskSpec


@dataclass
class Encoded:
    """A tokenised split: one id list per example (special tokens included),
    and the same ids as one right-padded (N, longest) tensor with their lengths,
    so that a batch is gathered by indexing instead of rebuilt row by row."""

    ids: list[list[int]]
    labels: torch.Tensor
    padded: torch.Tensor | None = None  # (N, longest) long, filled with the pad id
    lengths: torch.Tensor | None = None  # (N,) long

    def __len__(self) -> int:
        return len(self.ids)

    def pad(self, pad_id: int) -> None:
        """Build `padded` and `lengths` once (encode does it)."""
        with torch.inference_mode(False):
            lengths = torch.tensor([len(r) for r in self.ids], dtype=torch.long)
            width = int(lengths.max()) if len(self.ids) else 0
            padded = torch.full((len(self.ids), width), pad_id, dtype=torch.long)
            for i, r in enumerate(self.ids):
                padded[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        self.padded, self.lengths = padded, lengths


# Tokenised splits shared by every scorer of the process, keyed by the tokenizer,
# the text budget and the examples' content: a sweep worker, the PANDA metric and
# repeated evaluations of one split tokenise it once. Bounded (oldest dropped).
_ENCODED: dict[tuple, Encoded] = {}
_ENCODED_MAX = 64


def clear_encoding_cache() -> None:
    _ENCODED.clear()


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) token ids, right-padded
    attention_mask: torch.Tensor  # (B, L)
    labels: torch.Tensor  # (B,)
    index: torch.Tensor  # (B,) positions of the examples in their split


class PromptScorer:
    """Scores a task's classes with a frozen backbone driven by a soft prompt.

    Args:
        backbone: a `backbones.Backbone` (frozen).
        task: the target task; its labels decide the scoring, whatever the
            prompt's origin (so prompts transfer across label sets).
        max_length: total tokens including the prompt.
        temperature: scale of the cosine scores on encoders.
        model: override the backbone's module (model tuning trains a copy).

    Shapes: ``prompt`` is (n, d) or (B, n, d); ``logits`` returns (B, C).
    """

    def __init__(
        self,
        backbone,
        task: TaskSpec,
        prompt_length: int,
        max_length: int = 128,
        temperature: float = 20.0,
        model: torch.nn.Module | None = None,
    ) -> None:
        self.backbone = backbone
        self.task = task
        self.kind = backbone.kind
        self.model = model if model is not None else backbone.model
        self.tok = backbone.tokenizer
        self.device = backbone.device
        self.prompt_length = prompt_length
        self.max_length = max_length
        self.temperature = temperature
        self.text_budget = max(8, max_length - prompt_length - (1 if self.kind == "mlm" else 0))
        self._label_keys: torch.Tensor | None = None
        self._verbalizer_ids: torch.Tensor | None = None
        self._cache: dict[int, tuple[Sequence[Example], Encoded]] = {}

    # ---------------------------------------------------------------- tokenise
    def encode(self, examples: Sequence[Example]) -> Encoded:
        """Tokenise once; cached by the identity of the example list."""
        key = id(examples)
        if key in self._cache and self._cache[key][0] is examples:
            return self._cache[key][1]
        if not examples:
            raise PandaError(f"task '{self.task.name}': no examples to score")
        # the same texts (a fresh list from load_split, another scorer) are not tokenised again
        content = (id(self.tok), self.kind, self.text_budget,
                   tuple((ex.text_a, ex.text_b, ex.label) for ex in examples))
        enc = _ENCODED.get(content)
        if enc is not None:
            self._cache[key] = (examples, enc)
            return enc
        if self.kind == "causal":
            texts = [self._causal_text(ex) for ex in examples]
            out = self.tok(texts, truncation=True, max_length=self.text_budget, add_special_tokens=False)
            ids = out["input_ids"]
            cue = self.tok("\nAnswer:", add_special_tokens=False)["input_ids"]
            ids = [(seq[: self.text_budget - len(cue)] + cue) for seq in ids]
        else:
            a = [ex.text_a for ex in examples]
            b = [ex.text_b for ex in examples] if any(ex.text_b for ex in examples) else None
            if b is not None:
                b = [x or "" for x in b]
                out = self.tok(a, b, truncation="longest_first", max_length=self.text_budget)
            else:
                out = self.tok(a, truncation=True, max_length=self.text_budget)
            ids = out["input_ids"]
        with torch.inference_mode(False):
            labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)
        enc = Encoded(ids=[list(x) for x in ids], labels=labels)
        enc.pad(self.pad_id)
        self._cache[key] = (examples, enc)  # keep the list alive so its id stays unique
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.pop(next(iter(_ENCODED)))
        _ENCODED[content] = enc
        return enc

    @property
    def pad_id(self) -> int:
        return self.tok.pad_token_id if self.tok.pad_token_id is not None else 0

    def _causal_text(self, ex: Example) -> str:
        if ex.text_b:
            return f"Premise: {ex.text_a}\nHypothesis: {ex.text_b}"
        return f"Text: {ex.text_a}"

    def batches(
        self,
        enc: Encoded,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        limit: int | None = None,
    ) -> Iterator[Batch]:
        """Batches padded to their own longest sequence."""
        n = len(enc) if limit is None else min(limit, len(enc))
        order = torch.randperm(len(enc), generator=generator)[:n] if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            yield self.collate(enc, order[start : start + batch_size])

    def collate(self, enc: Encoded, index: torch.Tensor) -> Batch:
        """The examples at `index`, padded to their own longest sequence."""
        if enc.padded is None:
            enc.pad(self.pad_id)
        lengths = enc.lengths[index]
        width = int(lengths.max())
        ids = enc.padded[index, :width]
        mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()
        return Batch(ids.to(self.device), mask.to(self.device), enc.labels[index].to(self.device), index)

    # ----------------------------------------------------------------- forward
    def _splice(self, batch: Batch, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Input embeddings with the prompt inserted; returns (embeds, mask, prompt_start)."""
        emb = self.model.get_input_embeddings()(batch.input_ids)
        bsz = emb.shape[0]
        p = prompt.to(emb.dtype)
        p = p.unsqueeze(0).expand(bsz, -1, -1) if p.dim() == 2 else p
        if p.shape[-1] != emb.shape[-1]:
            raise PandaError(
                f"prompt hidden size {p.shape[-1]} does not match backbone '{self.backbone.name}' "
                f"({emb.shape[-1]}); project the prompt first"
            )
        n = p.shape[1]
        ones = torch.ones((bsz, n), dtype=batch.attention_mask.dtype, device=emb.device)
        if self.kind == "causal":
            return torch.cat([p, emb], 1), torch.cat([ones, batch.attention_mask], 1), 0
        parts = [emb[:, :1], p]
        masks = [batch.attention_mask[:, :1], ones]
        if self.kind == "mlm":
            mask_id = torch.full((bsz, 1), self.tok.mask_token_id, device=emb.device)
            parts.append(self.model.get_input_embeddings()(mask_id))
            masks.append(ones[:, :1])
        parts.append(emb[:, 1:])
        masks.append(batch.attention_mask[:, 1:])
        return torch.cat(parts, 1), torch.cat(masks, 1), 1

    def _trunk(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, L, d) of the frozen trunk."""
        base = getattr(self.model, "base_model", self.model) if self.kind != "encoder" else self.model
        out = base(inputs_embeds=embeds, attention_mask=mask)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def autocast(self):
        """bf16 autocast on CUDA; nothing on CPU (where bf16 matmuls are slower)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def features(self, batch: Batch, prompt: torch.Tensor) -> torch.Tensor:
        """The prompt-driven representation used for scoring, (B, d): mean of the
        text states (encoder), the `<mask>` state (MLM) or the last state (causal).
        PANDA's task embedding averages these over a task's inputs."""
        with self.autocast():
            embeds, mask, start = self._splice(batch, prompt)
            hidden = self._trunk(embeds, mask)
            return self._pool(hidden, mask, start, prompt.shape[-2])

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
        if self.kind == "mlm":
            return hidden[:, start + n]
        if self.kind == "causal":
            last = mask.sum(1) - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        text_mask = mask.clone()
        text_mask[:, start : start + n] = 0
        text_mask = text_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * text_mask).sum(1) / text_mask.sum(1).clamp(min=1.0)

    def logits(
        self, batch: Batch, prompt: torch.Tensor, head: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """Class scores (B, C) for the task's labels."""
        if head is not None:
            return head(self.features(batch, prompt).float())
        return self.class_scores(self.scoring_outputs(batch, prompt))

    def scoring_outputs(self, batch: Batch, prompt: torch.Tensor) -> torch.Tensor:
        """What the label scoring reads, in float32: the pooled features (B, d) on
        encoders, the vocabulary logits at the scoring position (B, V) otherwise.
        Independent of the task's labels, so one forward of a batch that mixes
        tasks serves every task's `class_scores` (multitask training)."""
        if self.kind == "encoder":
            return self.features(batch, prompt).float()
        n = prompt.shape[-2]
        with self.autocast():
            embeds, mask, start = self._splice(batch, prompt)
            rows = torch.arange(embeds.shape[0], device=embeds.device)
            if self.kind == "mlm":
                vocab_logits = self.model(inputs_embeds=embeds, attention_mask=mask).logits
                at = vocab_logits[:, start + n]
            else:
                last = mask.sum(1) - 1
                if self._keeps_logits():
                    # the LM head only at the rows' last positions, not at every position
                    keep, where = torch.unique(last, return_inverse=True)
                    vocab_logits = self.model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=keep).logits
                    at = vocab_logits[rows, where]
                else:
                    at = self.model(inputs_embeds=embeds, attention_mask=mask).logits[rows, last]
        return at.float()

    def _keeps_logits(self) -> bool:
        """Whether the causal LM's forward takes `logits_to_keep` (most do in transformers >= 4.50)."""
        if not hasattr(self, "_logits_to_keep"):
            import inspect

            try:
                self._logits_to_keep = "logits_to_keep" in inspect.signature(self.model.forward).parameters
            except (TypeError, ValueError):
                self._logits_to_keep = False
        return self._logits_to_keep

    def class_scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """(B, C) class scores of this task from `scoring_outputs` rows."""
        if self.kind == "encoder":
            return self.temperature * F.normalize(outputs, dim=-1) @ self.label_keys().T
        return outputs[:, self.verbalizer_ids()]

    # --------------------------------------------------------- label scoring
    def label_keys(self) -> torch.Tensor:
        """Normalised frozen embeddings of the label descriptions, (C, d).
        Built as ordinary tensors (not inference tensors) so that training
        may use them even if evaluation asked for them first."""
        if self._label_keys is None:
            with torch.inference_mode(False), torch.no_grad():
                self._label_keys = self._describe_labels()
        return self._label_keys

    def _describe_labels(self) -> torch.Tensor:
        out = self.tok(list(self.task.descriptions), padding=True, return_tensors="pt").to(self.device)
        hidden = self.backbone.model(**out).last_hidden_state
        m = out["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1)
        return F.normalize(pooled.float(), dim=-1)

    def verbalizer_ids(self) -> torch.Tensor:
        """First sub-token id of each label word (with a leading space for BPE vocabularies)."""
        if self._verbalizer_ids is None:
            ids = []
            for word in self.task.verbalizers:
                text = word if self.kind == "mlm" else " " + word
                toks = self.tok(text, add_special_tokens=False)["input_ids"]
                if not toks:
                    raise PandaError(f"label word '{word}' has no token in backbone '{self.backbone.name}'")
                ids.append(toks[0])
            if len(set(ids)) < len(ids):
                raise PandaError(
                    f"task '{self.task.name}': label words {self.task.verbalizers} share a first token; "
                    "choose distinct verbalizers"
                )
            with torch.inference_mode(False):
                self._verbalizer_ids = torch.tensor(ids, device=self.device)
        return self._verbalizer_ids

    # -------------------------------------------------------------- evaluate
    @torch.inference_mode()
    def accuracy(
        self,
        enc: Encoded,
        prompt: torch.Tensor,
        head: torch.nn.Module | None = None,
        batch_size: int = 64,
        limit: int | None = None,
    ) -> float:
        """Accuracy of the prompt on (the first `limit` examples of) a split."""
        was_training = self.model.training
        self.model.eval()
        correct = total = 0
        for batch in self.batches(enc, batch_size, limit=limit):
            pred = self.logits(batch, prompt, head).argmax(-1)
            correct += int((pred == batch.labels).sum())
            total += len(batch.labels)
        self.model.train(was_training)
        return correct / max(total, 1)
