"""How the page writes numbers: every accuracy with its 95% interval, every
difference with its paired interval and p-value, and a difference whose
interval excludes 0 in bold (the others are within noise). Labels come from
the method registry (`panda_core.transfer.METHODS`)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from panda_core.transfer import METHODS

from .config import AA, DEEP_PREFIX, MAJORITY, MT, PANDA, PANDA_RANDOM, POT, PT, RANDOM, UNTRAINED

NOISE_NOTE = ("Accuracies carry 95% intervals in brackets; differences are paired on the same test items, "
              "with their 95% interval and p-value. A **bold** difference has an interval that excludes 0; "
              "the others are within noise.")


def plain_label(name: str) -> str:
    """A method's registry label as prose: without its parenthesis, and
    lower-cased unless its first word is an acronym or a name ("PT (from
    scratch)" -> "PT", "Vanilla PoT" -> "vanilla PoT", "Model tuning" -> "model tuning")."""
    label = re.sub(r"\s*\([^)]*\)", "", METHODS.labels().get(name, name)).strip()
    first = label.split(" ", 1)[0]
    if first[:1].isupper() and first[1:] == first[1:].lower():
        label = label[0].lower() + label[1:]
    return label


def short_label(name: str) -> str:
    """A method's column head: its plain label without "vanilla" ("PoT", "PANDA", "model tuning")."""
    return re.sub(r"^vanilla\s+", "", plain_label(name))


def arm_label(arm: str) -> str:
    """An arm's name on the page (methods under their registry labels)."""
    if arm.startswith(DEEP_PREFIX):
        return "deep " + arm_label(arm[len(DEEP_PREFIX):])
    fixed = {PANDA_RANDOM: f"{short_label(PANDA)} (random-init student)", AA: f"{short_label(POT)} (A/A replicate)",
             UNTRAINED: "untrained prompt", RANDOM: "random prompt", MAJORITY: "majority class"}
    return fixed.get(arm) or short_label(arm)


#: the order of the arms in the accuracy tables: baselines first, then trained
ARM_ORDER = (MAJORITY, UNTRAINED, RANDOM, PT, MT, POT, PANDA, PANDA_RANDOM, AA,
             DEEP_PREFIX + PT, DEEP_PREFIX + POT, DEEP_PREFIX + PANDA)


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def acc(a: dict | None) -> str:
    """ "0.712 [0.690, 0.733]" from {"acc", "low", "high"} or {"acc", "ci": [low, high]}."""
    if not a or a.get("acc") is None:
        return "–"
    low, high = a["ci"] if "ci" in a else (a.get("low"), a.get("high"))
    return f"{a['acc']:.3f}" if low is None else f"{a['acc']:.3f} [{low:.3f}, {high:.3f}]"


def diff(d: dict | None, p: bool = True) -> str:
    """ "+0.012 [-0.004, +0.028] p 0.21", bold when the interval excludes 0."""
    if not d or d.get("diff") is None:
        return "–"
    text = f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
    if p and d.get("p_value") is not None:
        text += f" p {pval(d['p_value'])}"
    return text if d["low"] <= 0 <= d["high"] else f"**{text}**"


def pval(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def reading(d: dict, a: str, b: str) -> str:
    """The comparison in words, from its interval."""
    if d["low"] > 0:
        return f"{a} above {b}"
    if d["high"] < 0:
        return f"{a} below {b}"
    return "within noise"


def test_items(limit: int | None) -> str:
    return "the full test split" if limit is None else f"the first {limit} test examples"
