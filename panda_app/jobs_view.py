"""Background jobs as the pages show them: a run's one-line label, its
progress bar, dev-accuracy curves of several runs, a live panel that
refreshes while runs are active, and cancel buttons.

Jobs are submitted and cancelled through `panda_core.ops`; runs are read
from the store (so they survive a reload); method names are shown with the
labels of the `METHODS` registry.
"""

from __future__ import annotations

from collections.abc import Callable

import plotly.graph_objects as go
import streamlit as st

from panda_core import ops, store
from panda_core.indicators.source_ranking import run_curve
from panda_core.transfer import METHODS

from .ui import guard

ACTIVE = store.ACTIVE
STATUS_ICON = {"queued": "⏳", "running": "▶️", "done": "✅", "failed": "❌", "cancelled": "⏹️"}
STATUSES = list(STATUS_ICON)  # every status a run goes through (store.runs: queued -> running -> ...)


def method_label(name: str) -> str:
    """The registry's human name of a transfer method (the name itself if unknown)."""
    return METHODS.labels().get(name, name)


def run_label(run: dict) -> str:
    """One line naming a run: what it trains or transfers, from where to where."""
    kind = run["kind"]
    if kind == "train":
        return f"train {run['target']}"
    if kind == "project":
        src = (run.get("source") or ((run.get("config") or {}).get("job") or {}).get("source_backbone")
               or (run.get("result") or {}).get("source_backbone") or "?")
        return f"projector {src} → {run['backbone']} ({run['method']}, trained on {run['target']})"
    return f"{method_label(run['method'])}: {run.get('source') or '—'} → {run['target']}"


def show_progress(run: dict) -> None:
    """One status line and a progress bar for a run."""
    prog = run.get("progress") or {}
    step, steps = prog.get("step"), prog.get("steps")
    status = run["status"]
    label = f"{STATUS_ICON.get(status, '')} {run_label(run)} · {status}"
    if prog.get("waiting") and status == "queued":
        label += " (waiting for a free worker)"
    if step and steps:
        label += f" · step {step}/{steps}"
        if prog.get("loss") is not None:
            label += f" · loss {prog['loss']:.3f}"
        if prog.get("dev_acc") is not None:
            label += f" · dev {prog['dev_acc']:.3f}"
    frac = 1.0 if status == "done" else (min(1.0, step / steps) if step and steps else 0.0)
    st.progress(frac, text=label)
    if status == "failed" and run.get("error"):
        st.error(f"{run_label(run)} failed: {run['error']}")
    elif status == "cancelled":
        st.caption(f"{run_label(run)}: {run.get('error') or 'cancelled'}")


def curves_figure(runs: list[dict], title: str = "Dev accuracy during training",
                  name: Callable[[dict], str] | None = None) -> go.Figure:
    """Dev-accuracy curves of several runs on one plot. A finished run with no
    curve (an evaluation-only method such as zero-shot: nothing is trained) is
    drawn as a dashed level at its test accuracy."""
    name = name or run_label
    fig = go.Figure()
    flat = []
    last_step = 1
    for run in runs:
        pts = run_curve(run)
        if not pts:
            if (run.get("result") or {}).get("test_acc") is not None:
                flat.append(run)
            continue
        xs, ys = zip(*pts, strict=True)
        last_step = max(last_step, max(xs))
        fig.add_trace(go.Scatter(x=list(xs), y=list(ys), mode="markers" if len(pts) == 1 else "lines+markers",
                                 name=name(run),
                                 hovertemplate="step %{x}<br>dev acc %{y:.4f}<extra>%{fullData.name}</extra>"))
    for run in flat:
        acc = run["result"]["test_acc"]
        fig.add_trace(go.Scatter(x=[0, last_step], y=[acc, acc], mode="lines", line=dict(dash="dash"),
                                 name=f"{name(run)} (test acc, no training)",
                                 hovertemplate="test acc %{y:.4f}, no training<extra>%{fullData.name}</extra>"))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title="accuracy",
                      height=380, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def live_runs(run_ids: list[str], render: Callable[[list[dict]], None], key: str) -> None:
    """Render `render(runs)` now, and every second while any run is active
    (a fragment: the rest of the page stays usable). When the last run ends
    the whole page reruns once so results outside the fragment appear."""
    if not run_ids:
        return
    runs = [r for r in (store.get_run(i) for i in run_ids) if r]
    active = any(r["status"] in ACTIVE for r in runs)
    flag = f"_live_{key}_active"
    st.session_state[flag] = active

    @st.fragment(run_every=1.0 if active else None)
    def _panel() -> None:
        ops.reap()
        current = [r for r in (store.get_run(i) for i in run_ids) if r]
        render(current)
        still = any(r["status"] in ACTIVE for r in current)
        if st.session_state.get(flag) and not still:
            st.session_state[flag] = False
            st.rerun()

    _panel()


def active_runs(kind: str, bb: str | None = None) -> list[dict]:
    """Queued or running jobs of a kind (from the store: they survive a reload)."""
    return [r for r in store.list_runs(kind=kind, limit=300)
            if r["status"] in ACTIVE and (bb is None or r["backbone"] == bb)]


def cancel_buttons(runs: list[dict], key: str) -> None:
    active = [r for r in runs if r["status"] in ACTIVE]
    if not active:
        return
    if st.button(f"Cancel {len(active)} active run(s)", key=f"cancel_{key}", icon="⏹️"):
        for r in active:
            with guard():
                ops.cancel(r["id"])
        st.toast("Cancellation requested; workers stop at their next step.")


def batch_panel(run_ids: list[str], key: str, extra: Callable[[list[dict]], None] | None = None) -> None:
    """The usual live panel of a page's own jobs: each run's progress line,
    the cancel button, then `extra(runs)` (a figure, a table, ...)."""
    def render(runs: list[dict]) -> None:
        for r in runs:
            show_progress(r)
        cancel_buttons(runs, key)
        if extra is not None:
            extra(runs)

    live_runs(run_ids, render, key)
