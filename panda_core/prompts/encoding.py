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


#: rows per inference batch at most, and padded text tokens per batch at most: batches of a
#: length-sorted split take as many rows as fit, so long texts go in small batches and short
#: ones in large (docs/performance.md measures both choices)
EVAL_BATCH_SIZE = 128
EVAL_TOKEN_BUDGET = 4096


def by_length(enc: Encoded, n: int) -> torch.Tensor:
    """Positions 0..n-1 of a split, longest first (ties in split order): batches cut
    from this order are padded to almost nothing."""
    if enc.lengths is None:
        raise ValueError("an Encoded split needs its lengths (Encoded.pad) to be sorted by length")
    return torch.argsort(enc.lengths[:n], descending=True, stable=True)


#: a length-sorted batch closes before a row shorter than this fraction of its longest
EVAL_MIN_FILL = 0.9


def length_sorted_chunks(enc: Encoded, n: int, batch_size: int,
                         token_budget: int | None = EVAL_TOKEN_BUDGET,
                         min_fill: float = EVAL_MIN_FILL) -> list[torch.Tensor]:
    """The first `n` positions of a split, longest first, cut into batches of at
    most `batch_size` rows and `token_budget` padded tokens (None: rows only),
    each closed before a row shorter than `min_fill` of its longest, so no row
    is padded by more than 1 - `min_fill` of its width."""
    order = by_length(enc, n)
    lengths = enc.lengths[order].tolist()
    chunks, start = [], 0
    while start < n:
        longest = max(lengths[start], 1)
        rows = batch_size if token_budget is None else max(1, min(batch_size, token_budget // longest))
        end = start + 1
        while end < min(n, start + rows) and lengths[end] >= min_fill * longest:
            end += 1
        chunks.append(order[start:end])
        start = end
    return chunks


def batches(enc: Encoded, batch_size: int, gather: Callable[[Encoded, torch.Tensor], Batch],
            shuffle: bool = False, generator: torch.Generator | None = None,
            limit: int | None = None, sort_by_length: bool = False) -> Iterator[Batch]:
    """Batches of (the first `limit` examples of) a split: in order, shuffled, or
    (`sort_by_length`, for inference) longest first within `EVAL_TOKEN_BUDGET`
    padded tokens, so little padding is computed; each batch's `index` says
    where its rows belong in the split."""
    n = len(enc) if limit is None else min(limit, len(enc))
    if sort_by_length and not shuffle:
        for chunk in length_sorted_chunks(enc, n, batch_size):
            yield gather(enc, chunk)
        return
    order = torch.randperm(len(enc), generator=generator)[:n] if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield gather(enc, order[start : start + batch_size])


def padding_stats(enc: Encoded, batch_size: int, sort_by_length: bool, limit: int | None = None,
                  extra: int = 0, token_budget: int | None = EVAL_TOKEN_BUDGET,
                  min_fill: float = EVAL_MIN_FILL) -> tuple[int, int]:
    """(real tokens, computed tokens) of evaluating a split the way `batches` cuts it,
    each row `extra` tokens longer (a prompt's rows): what length-sorting saves,
    without running a model."""
    n = len(enc) if limit is None else min(limit, len(enc))
    if sort_by_length:
        chunks = length_sorted_chunks(enc, n, batch_size, token_budget, min_fill)
    else:
        chunks = list(torch.arange(n).split(batch_size))
    real = computed = 0
    for chunk in chunks:
        lengths = enc.lengths[chunk] + extra
        real += int(lengths.sum())
        computed += int(lengths.max()) * len(chunk)
    return real, computed
