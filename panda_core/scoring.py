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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import PandaError
from .tasks import Example, TaskSpec


@dataclass
class Encoded:
    """A tokenised split: one id list per example (special tokens included)."""

    ids: list[list[int]]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)


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
        self._cache[key] = (examples, enc)  # keep the list alive so its id stays unique
        return enc

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
        rows = [enc.ids[i] for i in index.tolist()]
        width = max(len(r) for r in rows)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
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

    def features(self, batch: Batch, prompt: torch.Tensor) -> torch.Tensor:
        """The prompt-driven representation used for scoring, (B, d): mean of the
        text states (encoder), the `<mask>` state (MLM) or the last state (causal).
        PANDA's task embedding averages these over a task's inputs."""
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
        embeds, mask, start = self._splice(batch, prompt)
        n = prompt.shape[-2]
        if head is not None or self.kind == "encoder":
            hidden = self._trunk(embeds, mask)
            feats = self._pool(hidden, mask, start, n)
            if head is not None:
                return head(feats.float())
            return self.temperature * F.normalize(feats.float(), dim=-1) @ self.label_keys().T
        out = self.model(inputs_embeds=embeds, attention_mask=mask)
        vocab_logits = out.logits
        if self.kind == "mlm":
            at = vocab_logits[:, start + n]
        else:
            last = mask.sum(1) - 1
            at = vocab_logits[torch.arange(vocab_logits.shape[0], device=vocab_logits.device), last]
        return at.float()[:, self.verbalizer_ids()]

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
