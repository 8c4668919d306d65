"""Splitting: deduplication, stratified sampling, caps, and the smallest task
a split may leave.

Texts are deduplicated (normalised) before splitting, so dev/test never repeat
a training text; dev is capped at 500, test at 1000, train at 20000 examples
(stratified, seed 0), and the notes returned for meta.json say what was capped
or dropped. `SIZE_RULES` holds every size threshold of `check_sizes`.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from ..errors import PandaError
from .examples import CAPS, MAX_CHARS, SEED, SPLITS, Example


def norm(text: str | None) -> str:
    """The dedup key of a text: case, accents, punctuation and spacing ignored."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKD", text).lower()
    return " ".join(re.findall(r"[^\W_]+", t))


def dedup_key(ex: Example) -> str:
    return norm(ex.text_a) + "\x1f" + norm(ex.text_b)


def cut(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS].rstrip()


def _clip(e: Example) -> Example:
    return Example(cut(e.text_a), e.label, cut(e.text_b) if e.text_b is not None else None)


def dedup(items: list[Example]) -> tuple[list[Example], int, int]:
    """First occurrence of each normalised text; texts seen with different labels are dropped.
    Returns (kept, duplicates dropped, conflicting texts dropped)."""
    labels: dict[str, set[int]] = defaultdict(set)
    for ex in items:
        labels[dedup_key(ex)].add(ex.label)
    seen: set[str] = set()
    kept: list[Example] = []
    dups = conflicts = 0
    for ex in items:
        k = dedup_key(ex)
        if len(labels[k]) > 1:
            conflicts += 1
            continue
        if k in seen:
            dups += 1
            continue
        seen.add(k)
        kept.append(ex)
    return kept, dups, conflicts


def stratified_take(items: list[Example], k: int, rng: random.Random) -> tuple[list[Example], list[Example]]:
    """Take k items keeping class proportions (largest remainder); a class never loses its last item
    to the taken part, so every label stays in the rest (the training side)."""
    if k <= 0:
        return [], list(items)
    if k >= len(items):
        return list(items), []
    by: dict[int, list[Example]] = defaultdict(list)
    for ex in items:
        by[ex.label].append(ex)
    n = len(items)
    quota = {c: k * len(v) / n for c, v in by.items()}
    take = {c: min(int(q), len(by[c]) - 1) for c, q in quota.items()}
    rest_k = k - sum(take.values())
    for c in sorted(by, key=lambda c: (-(quota[c] - int(quota[c])), c)):
        if rest_k <= 0:
            break
        if take[c] < len(by[c]) - 1:
            take[c] += 1
            rest_k -= 1
    taken_ids: set[int] = set()
    for c in sorted(by):
        idx = [i for i, ex in enumerate(items) if ex.label == c]
        taken_ids.update(rng.sample(idx, take[c]))
    taken = [ex for i, ex in enumerate(items) if i in taken_ids]
    rest = [ex for i, ex in enumerate(items) if i not in taken_ids]
    rng.shuffle(taken)
    return taken, rest


def make_splits(items: list[Example], native_test: list[Example] | None = None,
                fractions: tuple[float, float] = (0.1, 0.2)) -> tuple[dict[str, list[Example]], dict]:
    """Deduplicate, split (seed 0) and cap. Returns ({split: examples}, notes for meta.json).

    With a source test split it is kept (minus texts also in train) and dev is
    carved from train; otherwise dev and test take `fractions` of the data."""
    rng = random.Random(SEED)
    items = [_clip(e) for e in items]
    items = [e for e in items if e.text_a.strip()]
    n_raw = len(items) + (len(native_test) if native_test else 0)
    items, dups, conflicts = dedup(items)
    notes: dict[str, Any] = {"raw_examples": n_raw, "duplicates_dropped": dups, "conflicting_labels_dropped": conflicts}
    pool = list(items)
    rng.shuffle(pool)
    if native_test is not None:
        test_items, tdups, tconf = dedup([_clip(e) for e in native_test])
        train_keys = {dedup_key(e) for e in pool}
        overlap = [e for e in test_items if dedup_key(e) in train_keys]
        test = [e for e in test_items if dedup_key(e) not in train_keys]
        notes.update(duplicates_dropped=dups + tdups, conflicting_labels_dropped=conflicts + tconf,
                     test_in_train_dropped=len(overlap), split="source train/test; dev carved from train")
        rng.shuffle(test)
        dev, train = stratified_take(pool, min(CAPS["dev"], round(fractions[0] * len(pool))), rng)
    else:
        test, rest = stratified_take(pool, min(CAPS["test"], round(fractions[1] * len(pool))), rng)
        dev, train = stratified_take(rest, min(CAPS["dev"], round(fractions[0] * len(pool))), rng)
        notes["split"] = (f"seeded shuffle (seed {SEED}), stratified: dev {fractions[0]:.0%} and test "
                          f"{fractions[1]:.0%} of the deduplicated data, before caps")
    splits = {"train": train, "dev": dev, "test": test}
    capped = {}
    for name in SPLITS:
        if len(splits[name]) > CAPS[name]:
            capped[name] = len(splits[name])
            splits[name], _ = stratified_take(splits[name], CAPS[name], rng)
    notes["caps"] = dict(CAPS)
    notes["capped_from"] = capped
    notes["max_chars"] = MAX_CHARS
    return splits, notes


# ------------------------------------------------------------------ the smallest task
@dataclass(frozen=True)
class SizeRules:
    """Every size threshold of `check_sizes`, in one place.

    Refused: fewer than `min_examples` distinct examples, a dev or test split
    under `min_eval`, or a label with fewer than `min_train_per_class` training
    examples (a prompt cannot learn it, nor be compared across tasks).
    Warned: a test split under `warn_test_below` (accuracy then moves in steps
    of more than one point), or a label missing from dev or test."""

    min_examples: int = 20
    min_eval: int = 2
    min_train_per_class: int = 2
    warn_test_below: int = 100


SIZE_RULES = SizeRules()


def _sizes(splits: dict[str, list[Example]]) -> str:
    return " / ".join(f"{len(splits[s])} {s}" for s in SPLITS)


def check_sizes(what: str, splits: dict[str, list[Example]], labels: list[str], notes: dict,
                rules: SizeRules = SIZE_RULES) -> list[str]:
    """Refuse splits too small to train or evaluate on, with the sizes named
    (one-line `PandaError`); return the warnings for ones that are merely small.

    `what` names the data in messages (a file name), `labels` the label names
    by id, `notes` the `make_splits` notes (for the duplicates dropped)."""
    total = sum(len(v) for v in splits.values())
    dropped = notes.get("duplicates_dropped", 0) + notes.get("conflicting_labels_dropped", 0)
    after = (f" after dropping {notes.get('duplicates_dropped', 0)} duplicates and "
             f"{notes.get('conflicting_labels_dropped', 0)} texts with conflicting labels") if dropped else ""
    if total < rules.min_examples or any(len(splits[s]) < rules.min_eval for s in ("dev", "test")):
        raise PandaError(f"{what} is too small to split: {total} distinct examples{after} would give "
                         f"{_sizes(splits)}; a task needs at least {rules.min_examples} distinct examples "
                         f"and {rules.min_eval} in each of dev and test")
    train = Counter(e.label for e in splits["train"])
    present = {e.label for split in SPLITS for e in splits[split]}
    thin = [c for c in sorted(present) if train[c] < rules.min_train_per_class]
    if thin:
        raise PandaError(f"label '{labels[thin[0]]}' of {what} has {train[thin[0]]} training examples "
                         f"({_sizes(splits)} in all); each label needs at least {rules.min_train_per_class}: "
                         "add examples of it or drop its rows")
    warnings = []
    n_test = len(splits["test"])
    if n_test < rules.warn_test_below:
        warnings.append(f"only {n_test} test examples ({_sizes(splits)}): test accuracy moves in steps of "
                        f"{100 / n_test:.1f} points ({rules.warn_test_below} or more make steps of 1 point at most)")
    for split in ("dev", "test"):
        missing = [labels[c] for c in sorted(present - {e.label for e in splits[split]})]
        if missing:
            warnings.append(f"no {split} examples of label{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(repr(m) for m in missing[:5])}: {split} accuracy leaves "
                            f"{'them' if len(missing) > 1 else 'it'} out")
    return warnings
