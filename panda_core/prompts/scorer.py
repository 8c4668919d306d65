"""How a frozen backbone is driven by a soft prompt and how classes are scored.

One `PromptScorer` per (backbone, task). Texts are tokenised once per split and
kept; a batch is padded to its own longest sequence. The prompt rows are
spliced into the input embeddings, the trunk runs, and the result is read out
and scored; where the prompt goes is the backbone kind's business
(`backbones.kinds`: encoder, masked LM, causal LM), what is read and how it
is scored the readout's (`prompts.readouts`: mean of the text states, a
designated position, class vectors, pair features, label words), so this
class holds no per-kind or per-readout branch.

A deep prompt ((L, 2, n, w), `prompts.types`) is not spliced: it enters
every layer's attention through `prompts.deep.driver`, and the text is laid
out as for an input prompt of zero rows (a masked LM keeps its ``<mask>``),
so every read position is computed with n = 0 (`prepare`). The text budget is
the same for both types (the same items are seen, so paired comparisons of
deep and input prompts hold; positions still shift by n on BERT/Llama).

A readout's trainable parameters (class vectors, the pair head), or the
optional linear head over its features, are passed as ``head``; both are
per task, counted and reported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..backbones.kinds import KINDS, Runner
from ..errors import PandaError
from . import deep, readouts
from .encoding import EVAL_BATCH_SIZE, Batch, Encoded, batches, collate, encode_examples

if TYPE_CHECKING:
    from ..data.examples import Example, TaskSpec


class PromptScorer:
    """Scores a task's classes with a frozen backbone driven by a soft prompt.

    Args:
        backbone: a `backbones.Backbone` (frozen).
        task: the target task; its labels decide the scoring, whatever the
            prompt's origin (so prompts transfer across label sets).
        max_length: total tokens including the prompt.
        temperature: scale of the cosine scores.
        model: override the backbone's module (model tuning trains a copy).
        readout: a `READOUTS` name; "auto"/None: the backbone kind's default.

    Shapes: ``prompt`` is (n, d) or (B, n, d) (input-level), (L, 2, n, w) or
    (B, L, 2, n, w) (deep); ``logits`` returns (B, C).
    """

    def __init__(
        self,
        backbone,
        task: TaskSpec,
        prompt_length: int,
        max_length: int = 128,
        temperature: float = 20.0,
        model: torch.nn.Module | None = None,
        readout: str | None = None,
    ) -> None:
        self.backbone = backbone
        self.task = task
        self.kind = backbone.kind
        self.kind_impl = KINDS.get(backbone.kind)
        self.model = model if model is not None else backbone.model
        self.tok = backbone.tokenizer
        self.device = backbone.device
        self.prompt_length = prompt_length
        self.max_length = max_length
        self.temperature = temperature
        self.readout = readouts.resolve(readout, backbone.kind)
        #: slot tokens after the prompt: the kind's own, or the [MASK] a slot readout inserts
        self.slot_tokens = self.kind_impl.slot_tokens or int(self.readout.slot)
        self.text_budget = max(8, max_length - prompt_length - self.slot_tokens)
        self._label_keys: torch.Tensor | None = None
        self._verbalizer_ids: torch.Tensor | None = None
        self._cache: dict[int, tuple[Sequence[Example], Encoded]] = {}

    # ---------------------------------------------------------------- tokenise
    def encode(self, examples: Sequence[Example]) -> Encoded:
        """Tokenise once; cached by the identity of the example list (and, across
        scorers, by the texts themselves)."""
        key = id(examples)
        if key in self._cache and self._cache[key][0] is examples:
            return self._cache[key][1]
        if not examples:
            raise PandaError(f"task '{self.task.name}': no examples to score")
        enc = encode_examples(self.tok, self.kind_impl, self.text_budget, self.pad_id, examples)
        self._cache[key] = (examples, enc)  # keep the list alive so its id stays unique
        return enc

    @property
    def pad_id(self) -> int:
        return self.tok.pad_token_id if self.tok.pad_token_id is not None else 0

    def batches(
        self,
        enc: Encoded,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        limit: int | None = None,
        sort_by_length: bool = False,
    ) -> Iterator[Batch]:
        """Batches padded to their own longest sequence (`sort_by_length`: grouped
        by length, for inference; `Batch.index` places the rows)."""
        return batches(enc, batch_size, self.collate, shuffle, generator, limit, sort_by_length)

    def collate(self, enc: Encoded, index: torch.Tensor) -> Batch:
        """The examples at `index`, padded to their own longest sequence."""
        return collate(enc, index, self.pad_id, self.device)

    # ----------------------------------------------------------------- forward
    def splice(self, batch: Batch, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Input embeddings with the prompt inserted; returns (embeds, mask, prompt_start).

        A sentence pair's segment ids reach a model whose embeddings use them
        through its own token-type table: ``table[segment] - table[0]`` is added
        to each text token here, and the model adds ``table[0]`` to every
        position (it gets no ``token_type_ids``), which is exactly what it does
        with ``token_type_ids`` given. The prompt rows and any slot token are
        inserted after this, so they are segment 0, and every caller of
        splice -> trunk (scoring, ON, the PANDA metric) sees the segments."""
        embedding = self.model.get_input_embeddings()
        emb = embedding(batch.input_ids)
        table = self.kind_impl.segment_embeddings(self.model)
        if batch.token_type_ids is not None and table is not None:
            emb = emb + (table(batch.token_type_ids) - table.weight[0])
        p = prompt.to(emb.dtype)
        p = p.unsqueeze(0).expand(emb.shape[0], -1, -1) if p.dim() == 2 else p
        if p.shape[-1] != emb.shape[-1]:
            raise PandaError(
                f"prompt hidden size {p.shape[-1]} does not match backbone '{self.backbone.name}' "
                f"({emb.shape[-1]}); project the prompt first"
            )
        embeds, mask, start = self.kind_impl.splice(emb, p, batch.attention_mask, embedding, self.tok)
        if self.slot_tokens > self.kind_impl.slot_tokens:  # the readout's [MASK] right after the prompt
            at = start + p.shape[1]
            if self.tok.mask_token_id is None:
                raise PandaError(f"readout '{self.readout.name}' needs a mask token; backbone "
                                 f"'{self.backbone.name}' has none")
            slot = embedding(torch.full((emb.shape[0], 1), self.tok.mask_token_id, device=emb.device)).to(emb.dtype)
            embeds = torch.cat([embeds[:, :at], slot, embeds[:, at:]], 1)
            mask = torch.cat([mask[:, :at], torch.ones_like(mask[:, :1]), mask[:, at:]], 1)
        return embeds, mask, start

    def prepare(self, batch: Batch, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int, Runner | None]:
        """(embeds, mask, start, n, run) for a prompt of either type: an input
        prompt is spliced (n rows, `run` None: the plain forward); a deep prompt
        splices zero rows (n = 0) and `run` drives the model with its prefixes."""
        if not deep.is_deep(prompt):
            embeds, mask, start = self.splice(batch, prompt)
            return embeds, mask, start, prompt.shape[-2], None
        width = self.model.get_input_embeddings().embedding_dim
        embeds, mask, start = self.splice(batch, prompt.new_zeros(0, width))
        return embeds, mask, start, 0, deep.driver(prompt)

    def states(self, batch: Batch, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """(hidden, mask, start, n): the trunk's last states driven by a prompt
        of either type, with what reads them needs (ON hooks this forward)."""
        embeds, mask, start, n, run = self.prepare(batch, prompt)
        return self.trunk(embeds, mask, run), mask, start, n

    def spliced_segments(self, batch: Batch, width: int, start: int) -> torch.Tensor | None:
        """(B, width) segment ids of the spliced sequence (prompt rows and slot: 0)."""
        if batch.token_type_ids is None:
            return None
        seg = batch.token_type_ids
        inserted = torch.zeros((seg.shape[0], width - seg.shape[1]), dtype=seg.dtype, device=seg.device)
        return torch.cat([seg[:, :start], inserted, seg[:, start:]], 1)

    def trunk(self, embeds: torch.Tensor, mask: torch.Tensor, run: Runner | None = None) -> torch.Tensor:
        """Last hidden states (B, L, d) of the frozen trunk (`run`: see `prepare`)."""
        return self.kind_impl.trunk(self.model, embeds, mask, run)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """(B, F) any per-position states (hidden states, activations) read where
        the readout reads: at its position, or averaged over its positions."""
        return readouts.read_at(hidden, self.readout_positions(mask, start, n))

    def readout_positions(self, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """The positions the readout reads (and the ON indicator with it): (B,)
        one per row, or (B, k) several, -1 where a row reads fewer."""
        return self.readout.positions(self, mask, start, n)

    def prompt_alone(self, prompt: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Embeddings (1, L, d) of the prompt with no task text, and the position ON reads
        (a deep prompt: the layout with no prompt rows; drive it with `deep.driver`)."""
        return prompt_alone(self.backbone, prompt)

    def autocast(self):
        """bf16 autocast on CUDA; nothing on CPU (where bf16 matmuls are slower)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def features(self, batch: Batch, prompt: torch.Tensor) -> torch.Tensor:
        """The prompt-driven representation the readout reads, (B, f): the mean
        of the text states, the `[CLS]`/`<mask>`/last state, or pair features.
        PANDA's task embedding averages these over a task's inputs."""
        with self.autocast():
            hidden, mask, start, n = self.states(batch, prompt)
            return self._read(batch, hidden, mask, start, n)

    def _read(self, batch: Batch | None, hidden: torch.Tensor, mask: torch.Tensor, start: int,
              n: int) -> torch.Tensor:
        segments = self.spliced_segments(batch, mask.shape[1], start) \
            if batch is not None and self.readout.segments else None
        return self.readout.features(self, hidden, mask, start, n, segments)

    def logits(
        self, batch: Batch, prompt: torch.Tensor, head: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """Class scores (B, C) for the task's labels, through `head` (the readout's
        parameters or a linear head) when given."""
        return self.class_scores(self.head_inputs(batch, prompt, head), head)

    def head_inputs(self, batch: Batch, prompt: torch.Tensor, head: torch.nn.Module | None = None) -> torch.Tensor:
        """What `class_scores` reads, in float32: the features under a linear
        head, else the readout's `scoring_outputs`."""
        if isinstance(head, torch.nn.Linear):
            return self.features(batch, prompt).float()
        return self.scoring_outputs(batch, prompt)

    def scoring_outputs(self, batch: Batch, prompt: torch.Tensor) -> torch.Tensor:
        """What the label scoring reads, in float32: the readout's features, or
        the vocabulary logits at the scoring position (label-word readouts).
        Independent of the task's labels, so one forward of a batch that mixes
        tasks serves every task's `class_scores` (multitask training)."""
        with self.autocast():
            embeds, mask, start, n, run = self.prepare(batch, prompt)
            if self.readout.lm_head:
                out = self.kind_impl.forward_outputs(self.model, embeds, mask, start, n, run)
            else:
                out = self._read(batch, self.trunk(embeds, mask, run), mask, start, n)
        return out.float()

    def outputs_from_embeds(self, embeds: torch.Tensor, mask: torch.Tensor, start: int, n: int,
                            run: Runner | None = None) -> torch.Tensor:
        """`scoring_outputs` (in the model's dtype) from ready input embeddings
        (without segment ids: a pair readout then reads one segment)."""
        if self.readout.lm_head:
            return self.kind_impl.forward_outputs(self.model, embeds, mask, start, n, run)
        return self._read(None, self.trunk(embeds, mask, run), mask, start, n)

    def class_scores(self, outputs: torch.Tensor, head: torch.nn.Module | None = None) -> torch.Tensor:
        """(B, C) class scores of this task from `head_inputs` rows: a linear
        head's output, else the readout's scores (with its parameters `head`)."""
        if isinstance(head, torch.nn.Linear):
            return head(outputs)
        return self.readout.scores(self, outputs, head)

    def new_head(self) -> torch.nn.Module | None:
        """Fresh trainable parameters of the readout for this task (None: it has none)."""
        return self.readout.make_params(self)

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
        hidden = self.kind_impl.trunk_module(self.backbone.model)(**out).last_hidden_state  # the model itself on encoders
        m = out["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1)
        return F.normalize(pooled.float(), dim=-1)

    def verbalizer_ids(self) -> torch.Tensor:
        """First sub-token id of each label word (written as the kind says)."""
        if self._verbalizer_ids is None:
            ids = []
            for word in self.task.verbalizers:
                toks = self.tok(self.kind_impl.verbalizer_text(word), add_special_tokens=False)["input_ids"]
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
    def correct_items(
        self,
        enc: Encoded,
        prompt: torch.Tensor,
        head: torch.nn.Module | None = None,
        batch_size: int = EVAL_BATCH_SIZE,
        limit: int | None = None,
    ) -> torch.Tensor:
        """(N,) bool: whether each of (the first `limit` examples of) a split is
        predicted right, in the split's order. Intervals and paired comparisons
        of two prompts on the same items are computed from these. The batches
        are grouped by length (little padding is computed); each row is put
        back in its place."""
        was_training = self.model.training
        self.model.eval()
        n = len(enc) if limit is None else min(limit, len(enc))
        correct = torch.zeros(n, dtype=torch.bool)
        for batch in self.batches(enc, batch_size, limit=limit, sort_by_length=True):
            pred = self.logits(batch, prompt, head).argmax(-1)
            correct[batch.index] = (pred == batch.labels).cpu()
        self.model.train(was_training)
        return correct

    def accuracy(
        self,
        enc: Encoded,
        prompt: torch.Tensor,
        head: torch.nn.Module | None = None,
        batch_size: int = EVAL_BATCH_SIZE,
        limit: int | None = None,
    ) -> float:
        """Accuracy of the prompt on (the first `limit` examples of) a split."""
        correct = self.correct_items(enc, prompt, head, batch_size, limit)
        return float(correct.sum()) / max(len(correct), 1)


def prompt_alone(backbone, prompt: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Su et al.'s probe input for a prompt of either type: embeddings (1, L, d)
    and the position read. A deep prompt has no rows to place: the kind's
    layout with zero rows (its prefixes enter through `deep.driver`)."""
    if deep.is_deep(prompt):
        prompt = prompt.new_zeros(0, backbone.embeddings().embedding_dim)
    return backbone.kind_impl.prompt_alone(backbone, prompt)
