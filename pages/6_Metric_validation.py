"""Metric validation: does an indicator predict measured transfer? Scatter of
each indicator against the transfer measured by stored runs, with Spearman
and Kendall rank correlations per target and pooled (PANDA's protocol).
Indicators come from `INDICATORS`, measures from `validation.MEASURES`; the
measured pairs and correlations from `panda_core.indicators.validation`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from panda_app import figures, jobs_view, ui
from panda_core import ops, store
from panda_core.indicators import INDICATORS
from panda_core.indicators import validation as science

MAX_SUBMIT = 12  # each background job is its own process: launch a bounded number per click


def runs_fingerprint(bb: str) -> tuple:
    runs = store.list_runs(kind="transfer", status="done", limit=5000)
    return (len(runs), max((r["updated"] for r in runs), default=0.0), ui.fingerprint(bb))


@st.cache_data(max_entries=16, show_spinner=False)
def validate(bb: str, tasks: tuple[str, ...], measure: str, metrics: tuple[str, ...], length: int, fp: tuple):
    return science.validate_indicators(bb, list(tasks), measure, list(metrics), prompt_length=length)


def fill_form(bb: str, pairs: list[tuple[str, str]], method: str, length: int) -> None:
    label = jobs_view.method_label(method)
    if not pairs:
        st.caption(f"Every ordered pair of the selected tasks has a {label} run.")
        return
    with st.expander(f"Measure more pairs: {len(pairs)} {label} runs missing", expanded=False):
        c1, c2, c3 = st.columns(3)
        n = int(c1.number_input("Pairs to launch now", 1, MAX_SUBMIT, min(MAX_SUBMIT, len(pairs)), key="mv_n"))
        steps = int(c2.number_input("Training steps", 1, 5000, 100, step=10, key="mv_steps",
                                    help="Methods that only evaluate (zero-shot) ignore it."))
        test_limit = int(c3.number_input("Test examples (0 = all)", 0, 100000, 300, step=50, key="mv_test"))
        st.caption(f"Each run is a background job; at most {MAX_SUBMIT} are launched per click.")
        if st.button(f"Run {n} missing {label} transfer(s)", key="mv_fill", icon="▶️"):
            cfg = {"train": {"steps": steps, "eval_every": max(1, steps // 5), "test_limit": test_limit or None,
                             "dev_limit": 200, "prompt_length": length}}
            st.session_state["mv_runs"] = [
                ui.call(ops.submit, "transfer", {"source": s, "target": t, "method": method, "backbone": bb,
                                                 "config": cfg}) for s, t in pairs[:n]]
    if st.session_state.get("mv_runs"):
        def render(runs: list[dict]) -> None:
            done = sum(r["status"] not in jobs_view.ACTIVE for r in runs)
            st.progress(done / len(runs), text=f"{done}/{len(runs)} transfer runs finished")
            for r in runs:
                if r["status"] == "failed":
                    jobs_view.show_progress(r)
            jobs_view.cancel_buttons(runs, "mv")

        jobs_view.live_runs(st.session_state["mv_runs"], render, "mv")


def summary(out: dict) -> pd.DataFrame:
    labels = INDICATORS.labels()
    rows = [{"indicator": m, "name": labels.get(m, m), "Spearman (mean over targets)": v["spearman_mean"],
             "Kendall (mean over targets)": v["kendall_mean"], "Spearman (pooled)": v["spearman_pooled"],
             "Kendall (pooled)": v["kendall_pooled"], "pairs": v["n_pairs"]}
            for m, v in out["indicators"].items()]
    return pd.DataFrame(rows).sort_values("Spearman (mean over targets)", ascending=False, na_position="last")


def scatter_points(out: dict) -> pd.DataFrame:
    """One row per (indicator, measured pair): the figure's data."""
    tasks, measured = out["tasks"], out["measured"]
    return pd.DataFrame([{"indicator": m, "predicted": v["matrix"][i][j], "measured": measured[i][j],
                          "source": s, "target": t, "target family": ui.task_family(t)}
                         for m, v in out["indicators"].items() for i, s in enumerate(tasks)
                         for j, t in enumerate(tasks) if i != j and measured[i][j] is not None])


def scatter(out: dict, bb: str, measure: str) -> None:
    pts = scatter_points(out)
    if pts.empty:
        return
    fig = px.scatter(pts, x="predicted", y="measured", color="target", facet_col="indicator",
                     facet_col_wrap=4, facet_row_spacing=0.12, facet_col_spacing=0.05,
                     hover_data=["source", "target", "target family"],
                     title=f"Indicator vs measured transfer ({measure})")
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_xaxes(matches=None, showticklabels=True)
    fig.update_layout(height=320 * ((len(out["indicators"]) + 3) // 4) + 80, margin=dict(l=10, r=10, t=70, b=10))
    figures.plot(fig, key="mv_scatter")
    figures.figure_downloads(fig, f"{bb}-validation-{measure}", csv=pts.to_csv(index=False), key="mv",
                             csv_label="Points (CSV)")


def results(out: dict, bb: str, measure: str) -> None:
    table = summary(out)
    best = out.get("best")
    if best and not np.isnan(out["indicators"][best]["spearman_mean"]):
        v = out["indicators"][best]
        st.success(f"Best predictor here: **{ui.indicator_label(best)}**, mean Spearman "
                   f"{v['spearman_mean']:.3f} over targets, pooled {v['spearman_pooled']:.3f}.")
    else:
        st.warning("Not enough measured pairs per target for a rank correlation (needs 3 sources per target). "
                   "Measure more pairs above.")
    st.dataframe(table, hide_index=True, key="mv_summary",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
                                if c.startswith(("Spearman", "Kendall"))})
    scatter(out, bb, measure)
    per_target = pd.DataFrame({m: v["spearman_per_target"] for m, v in out["indicators"].items()},
                              index=out["tasks"])
    per_target.index.name = "target"
    with st.expander("Spearman per target"):
        st.dataframe(per_target.style.format("{:.3f}", na_rep="—"), key="mv_per_target")
    measured = pd.DataFrame(out["measured"], index=out["tasks"], columns=out["tasks"])
    measured.index.name = "source \\ target"
    with st.expander("Measured transfer matrix"):
        st.dataframe(measured, key="mv_measured")


def main() -> None:
    ui.setup("Metric validation")
    st.title("Metric validation")
    st.caption("Every indicator predicts how well a source prompt transfers to a target. Here each prediction "
               "is set against transfer measured by runs in the store; an indicator is good when it ranks the "
               "sources of each target in the measured order (Spearman / Kendall per target, then averaged), "
               "as PANDA evaluates its metric.")
    with ui.guard():
        bb, length = ui.backbone(), ui.prompt_length()
        have = ui.tasks_ready(3)
        if have is None:
            return
        c1, c2 = st.columns([2, 1])
        tasks = c1.multiselect("Tasks (sources and targets)", have, default=have, key="mv_tasks")
        measure = c2.radio("Measured transfer", science.MEASURES.names(), key="mv_measure",
                           format_func=lambda m: f"{m}: {science.MEASURES.get(m).label}")
        names = INDICATORS.names()
        metrics = st.multiselect("Indicators", names, default=names, key="mv_metrics",
                                 format_func=ui.indicator_label)
        if len(tasks) < 3 or not metrics:
            st.warning("Select at least 3 tasks and one indicator.")
            return
        method = science.MEASURES.get(measure).method
        pairs = ui.call(science.missing_pairs, bb, tasks, measure)
        fill_form(bb, pairs, method, length)
        if len(pairs) == len(tasks) * (len(tasks) - 1):
            st.info(f"No {jobs_view.method_label(method)} transfer runs among these tasks on {bb} yet, so there "
                    "is nothing to validate against. Launch some with **Measure more pairs** above, or from the "
                    "Transfer page.")
            return
        with st.spinner("Computing indicators and correlations…"):
            out = ui.call(validate, bb, tuple(tasks), measure, tuple(metrics), length, runs_fingerprint(bb))
        results(out, bb, measure)


main()
