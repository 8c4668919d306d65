"""Per-item correctness as a compact string, so a run's result JSON can carry it.

Intervals and paired comparisons need to know WHICH test items a prompt got
right, not only how many: two methods are compared on the same items, and a
ratio of two accuracies is only meaningful on the same items. A run stores
this under ``result["test_correct"]`` as one character per test item, in the
split's order ('1' right, '0' wrong). Because a test limit takes the first N
items of the split in order, two runs on the same split always agree on their
common prefix of items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import PandaError

#: the key under which a run's result stores its encoded per-item correctness
RESULT_KEY = "test_correct"


def as_bool_array(correct: Any) -> np.ndarray:
    """A 1-D bool array from a bool / 0-1 sequence, numpy array or torch tensor
    (read through `.detach().cpu()` without importing torch); anything else is refused."""
    if hasattr(correct, "detach"):  # a torch tensor, possibly on an accelerator
        correct = correct.detach().cpu().numpy()
    arr = np.asarray(correct)
    if arr.ndim != 1:
        raise PandaError(f"per-item correctness must be one value per item (1-D), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise PandaError("per-item correctness must be booleans or 0/1 values")
    return arr.astype(bool)


def encode_items(correct: Sequence[bool] | np.ndarray | Any) -> str:
    """'0'/'1' string, one character per test item in split order."""
    arr = as_bool_array(correct)
    return (arr.astype(np.uint8) + ord("0")).tobytes().decode("ascii")


def decode_items(text: str) -> np.ndarray:
    """The bool array `encode_items` encoded; refuses any character but '0' and '1'."""
    if not isinstance(text, str):
        raise PandaError(f"encoded items must be a string of 0/1, got {type(text).__name__}")
    raw = np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)
    if raw.size and not np.isin(raw, (ord("0"), ord("1"))).all():
        raise PandaError("encoded items may contain only the characters '0' and '1'")
    return raw == ord("1")


def result_items(result: Mapping[str, Any] | None) -> np.ndarray | None:
    """A stored run result's per-item correctness, or None when the run did not store it."""
    text = (result or {}).get(RESULT_KEY)
    return decode_items(text) if isinstance(text, str) else None


def common_prefix(*items: np.ndarray) -> list[np.ndarray]:
    """Each array cut to the shortest one's length: the test items all of them scored
    (a test limit takes the first N items of a split, so shared items form a prefix)."""
    n = min((len(a) for a in items), default=0)
    return [np.asarray(a)[:n] for a in items]
