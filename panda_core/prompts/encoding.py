"""Tokenised splits and batches.

A split is tokenised once (by its backbone kind's `encode_texts`, which also
gives each token of a sentence pair its segment id) and kept as one
right-padded tensor, so a batch is gathered by indexing and padded to its own
longest sequence instead of rebuilt row by row. Tokenised splits are shared
by every scorer of the process (`_ENCODED`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..backbones.kinds import BackboneKind
    from ..data.examples import Example


@dataclass
class Encoded:
    """A tokenised split: one id list per example (special tokens included),
    and the same ids as one right-padded (N, longest) tensor with their lengths,
    so that a batch is gathered by indexing instead of rebuilt row by row."""

    ids: list[list[int]]
    labels: torch.Tensor
    padded: torch.Tensor | None = None  # (N, longest) long, filled with the pad id
    lengths: torch.Tensor | None = None  # (N,) long
    #: each token's segment id (0: text_a, 1: text_b) for sentence pairs; None: all 0
    segments: list[list[int]] | None = None
    padded_segments: torch.Tensor | None = None  # (N, longest) long, 0 on padding

    def __len__(self) -> int:
        return len(self.ids)

    def pad(self, pad_id: int) -> None:
        """Build `padded`, `lengths` (and `padded_segments`) once (encode does it)."""
        with torch.inference_mode(False):
            lengths = torch.tensor([len(r) for r in self.ids], dtype=torch.long)
            width = int(lengths.max()) if len(self.ids) else 0
            self.padded = _pad_rows(self.ids, width, pad_id)
            self.padded_segments = None if self.segments is None else _pad_rows(self.segments, width, 0)
        self.lengths = lengths


def _pad_rows(rows: list[list[int]], width: int, fill: int) -> torch.Tensor:
    out = torch.full((len(rows), width), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


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
    token_type_ids: torch.Tensor | None = None  # (B, L) segment ids of sentence pairs; None: all 0


def encode_examples(tokenizer: Any, kind: BackboneKind, budget: int, pad_id: int,
                    examples: Sequence[Example]) -> Encoded:
    """The examples tokenised in `kind`'s layout, at most `budget` tokens each;
    the same texts are tokenised once per process (bounded cache)."""
    content = (id(tokenizer), kind.name, budget, tuple((ex.text_a, ex.text_b, ex.label) for ex in examples))
    enc = _ENCODED.get(content)
    if enc is not None:
        return enc
    ids, segments = kind.encode_texts(tokenizer, examples, budget)
    with torch.inference_mode(False):
        labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)
    enc = Encoded(ids=[list(x) for x in ids], labels=labels,
                  segments=None if segments is None else [list(x) for x in segments])
    enc.pad(pad_id)
    if len(_ENCODED) >= _ENCODED_MAX:
        _ENCODED.pop(next(iter(_ENCODED)))
    _ENCODED[content] = enc
    return enc


def collate(enc: Encoded, index: torch.Tensor, pad_id: int, device: torch.device) -> Batch:
    """The examples at `index`, padded to their own longest sequence."""
    if enc.padded is None:
        enc.pad(pad_id)
    lengths = enc.lengths[index]
    width = int(lengths.max())
    ids = enc.padded[index, :width]
    mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()
    types = None if enc.padded_segments is None else enc.padded_segments[index, :width].to(device)
    return Batch(ids.to(device), mask.to(device), enc.labels[index].to(device), index, types)


def batches(enc: Encoded, batch_size: int, gather: Callable[[Encoded, torch.Tensor], Batch],
            shuffle: bool = False, generator: torch.Generator | None = None,
            limit: int | None = None) -> Iterator[Batch]:
    """Batches of (the first `limit` examples of) a split, in order or shuffled."""
    n = len(enc) if limit is None else min(limit, len(enc))
    order = torch.randperm(len(enc), generator=generator)[:n] if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield gather(enc, order[start : start + batch_size])
