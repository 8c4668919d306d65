"""How the pages show uncertainty: an accuracy with its 95% interval as one
piece of text, a paired difference with its interval and p-value, and the
verdict of an interval (better, worse, within noise) in words AND in colour,
so a reader cannot take noise for a result. Formatting only: the numbers and
the verdicts come from `panda_core.ops.compare`.

Tables that carry verdicts are drawn with `st.table` (a styled HTML table):
its text and colours are part of the page itself, which a browser test can
read, unlike the canvas grid of `st.dataframe`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from panda_core.ops.compare import BETTER, WITHIN_NOISE, WORSE

#: words of a difference's verdict (the symbol repeats the colour for colour-blind readers)
DIFF_WORDS = {BETTER: "▲ better", WORSE: "▼ worse", WITHIN_NOISE: "≈ within noise"}
#: words of a correlation's verdict: above 0 the indicator ranks sources in the measured order
CORR_WORDS = {BETTER: "▲ predicts", WORSE: "▼ reversed", WITHIN_NOISE: "≈ within noise"}
STYLE = {
    BETTER: "background-color: #e2f3df; color: #1d5a19",
    WORSE: "background-color: #fbe1de; color: #86201a",
    WITHIN_NOISE: "background-color: #efefef; color: #8c8c8c; font-style: italic",
}
BADGE = {BETTER: "green", WORSE: "red", WITHIN_NOISE: "gray"}
NO_VALUE = "—"


def _ok(x: Any) -> bool:
    return x is not None and x == x  # NaN != NaN


def fmt_acc(a: Mapping[str, Any] | None) -> str:
    """ "0.742 [0.712, 0.770]"; "0.742 [—]" when the interval is unknown (an old run); "—" without a value."""
    if not a or not _ok(a.get("acc")):
        return NO_VALUE
    if not (_ok(a.get("low")) and _ok(a.get("high"))):
        return f"{a['acc']:.3f} [{NO_VALUE}]"
    return f"{a['acc']:.3f} [{a['low']:.3f}, {a['high']:.3f}]"


def fmt_value(value: Any, low: Any = None, high: Any = None, signed: bool = False) -> str:
    """A difference or a correlation with its interval: "+0.032 [+0.010, +0.055]"."""
    if not _ok(value):
        return NO_VALUE
    f = "{:+.3f}" if signed else "{:.3f}"
    if not (_ok(low) and _ok(high)):
        return f.format(value)
    return f"{f.format(value)} [{f.format(low)}, {f.format(high)}]"


def fmt_p(p: Any) -> str:
    if not _ok(p):
        return NO_VALUE
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def words(verdict: str | None, vocabulary: Mapping[str, str] = DIFF_WORDS, missing: str = NO_VALUE) -> str:
    return vocabulary.get(verdict, missing) if verdict else missing


def badge(verdict: str | None, vocabulary: Mapping[str, str] = DIFF_WORDS) -> str:
    """A coloured markdown badge of a verdict ("" without one)."""
    return f":{BADGE[verdict]}-badge[{vocabulary[verdict]}]" if verdict in BADGE else ""


def style_rows(df: pd.DataFrame, verdicts: Sequence[str | None]) -> Any:
    """`df` as a Styler whose every row takes its verdict's colours (a grey, muted row within noise)."""
    css = [STYLE.get(v, "") for v in verdicts]
    return df.style.apply(lambda row: [css[row.name]] * len(row), axis=1)


def style_cells(df: pd.DataFrame, verdicts: Mapping[str, Sequence[str | None]]) -> Any:
    """`df` as a Styler with the cells of the columns in `verdicts` coloured by their own verdict."""
    css = pd.DataFrame("", index=df.index, columns=df.columns)
    for col, vs in verdicts.items():
        css[col] = [STYLE.get(v, "") for v in vs]
    return df.style.apply(lambda _: css, axis=None)


def legend(vocabulary: Mapping[str, str] = DIFF_WORDS, what: str = "difference") -> None:
    """One line saying what the colours mean."""
    st.markdown(f"{badge(BETTER, vocabulary)} {badge(WORSE, vocabulary)} {badge(WITHIN_NOISE, vocabulary)} "
                f"— a {what} whose 95% interval covers 0 is **within noise**: these data cannot tell its sign.")
