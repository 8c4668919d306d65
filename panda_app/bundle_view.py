"""The zoo and the study bundle in the views: which prompts a page shows
(shipped with the tool, or the user's own) and where its values come from
(bundled with the tool, or computed here).

On a fresh clone the cache holds only the zoo's prompts, and the study
bundle (`panda_core.ops.bundle`) holds every indicator matrix and layout
over exactly those prompts, so the pages show them at once. A bundled
value is used only for exactly the prompts it was computed from; the user
can switch the bundle off for the session ("Recompute here"), and then
every value is computed here and the pages say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from panda_core import store
from panda_core.ops import bundle

OFF = "bundle_off"  # session flag: the user asked to recompute everything here


def use_bundle() -> bool:
    """False once the user asked to recompute the bundled values (for this session)."""
    return not st.session_state.get(OFF, False)


def _family(task: str) -> str:
    from panda_core.data import get_task
    from panda_core.errors import PandaError

    try:
        return get_task(task).family
    except PandaError:
        return "unknown"


def bundled_table(metric: str, bb: str, tasks: Sequence[str] | None, length: int, options: dict[str, Any],
                  prompt_type: str) -> dict | None:
    """The bundled indicator table for the prompts the store would use (its one
    rule, `store.latest_prompts`), in `similarity_table`'s order; None when they
    are not exactly bundled zoo prompts (then it is computed)."""
    if not use_bundle() or bundle.load() is None:
        return None
    rows = store.latest_prompts(bb, "pt", length, list(tasks) if tasks else None, prompt_type)
    if (tasks and any(t not in rows for t in tasks)) or len(rows) < 2:
        return None
    if any(r["origin"] != store.ZOO for r in rows.values()):
        return None
    order = sorted(rows, key=lambda t: (_family(t), t))
    return bundle.matrix(metric, bb, [rows[t]["id"] for t in order], options, prompt_type)


def bundled_points(bb: str, tasks: Sequence[str], length: int, mode: str, layout: str, seed: int,
                   kinds: Sequence[str], prompt_type: str):
    """The bundled layout (a DataFrame with the Clusters page's columns) for exactly
    the prompts the page would lay out, or None."""
    if not use_bundle() or bundle.load() is None:
        return None
    import pandas as pd

    from panda_core.indicators.clusters import COLUMNS, layout_rows

    try:
        rows = layout_rows(bb, list(tasks), length, tuple(kinds), prompt_type)
    except Exception:  # noqa: BLE001 -- no prompts: the page's own path says so
        return None
    pts = bundle.points(bb, [r["id"] for r in rows], layout, mode, seed, tuple(kinds), prompt_type)
    return pd.DataFrame(pts)[COLUMNS] if pts else None


def origin_caption(origins: Sequence[str], what: str = "prompts") -> str:
    """ "Showing 14 zoo prompts (shipped with the tool) and 2 of your own." """
    zoo = sum(o == store.ZOO for o in origins)
    mine = len(origins) - zoo
    if not zoo:
        return f"Showing {mine} of your own {what}."
    text = f"Showing {zoo} zoo {what} (shipped with the tool)"
    return text + (f" and {mine} of your own." if mine else ". Prompts you train replace them task by task.")


def values_note(origins: Sequence[str], key: str, what: str = "Values") -> None:
    """Say whether the values shown are bundled with the tool or computed here, with
    the switch between the two."""
    bundled = sum(o == bundle.BUNDLED for o in origins)
    if bundled:
        part = "" if bundled == len(origins) else f" ({bundled} of {len(origins)}; the others computed here)"
        st.caption(f"{what} bundled with the tool{part}: {bundle.describe()}.")
        if st.button("Recompute here", key=f"{key}_recompute", icon="🔁",
                     help="Compute every value from the prompts in your cache (this session)"):
            st.session_state[OFF] = True
            st.rerun()
    elif not use_bundle():
        st.caption(f"{what} computed here (the bundled values are switched off for this session).")
        if st.button("Use the bundled values", key=f"{key}_bundled", icon="📦"):
            st.session_state[OFF] = False
            st.rerun()
    else:
        st.caption(f"{what} computed here from the prompts in your cache.")


def table_origins(tables: Sequence[dict]) -> tuple[list[str], list[str]]:
    """(each prompt's origin over the tables' prompts, each table's origin)."""
    prompts: dict[str, str] = {}
    for t in tables:
        prompts |= dict(zip(t.get("prompt_ids", []), t.get("prompt_origins") or [store.USER] * len(t["prompt_ids"]),
                            strict=False))
    return list(prompts.values()), [t.get("origin", bundle.COMPUTED) for t in tables]


def fill_zero_shot(rk: Any, tables: Sequence[dict], bb: str, prompt_type: str) -> int:
    """Fill the source ranking's zero-shot column from the study bundle where no run
    of the user's measured it and every prompt ranked is a bundled zoo prompt; the
    number of values filled (the page says they are bundled)."""
    if not use_bundle() or not tables or "zero-shot" not in rk.measured:
        return 0
    ids = dict(zip(tables[0]["tasks"], tables[0].get("prompt_ids", []), strict=False))
    if rk.target not in ids or any(s not in ids for s in rk.sources):
        return 0
    column = bundle.zero_shot_column(bb, [ids[s] for s in rk.sources], ids[rk.target], prompt_type)
    filled = 0
    for s in rk.sources:
        got = (column or {}).get(ids[s])
        if got is not None and rk.measured["zero-shot"].get(s) is None:
            rk.measured["zero-shot"][s], rk.measured_ci["zero-shot"][s] = got
            filled += 1
    return filled
