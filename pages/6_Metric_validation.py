"""Metric validation: does an indicator predict measured transfer? Scatter of
each indicator against the transfer measured by stored runs, with Spearman
and Kendall rank correlations per target and pooled (PANDA's protocol)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.express as px  # noqa: E402
import streamlit as st  # noqa: E402

from pages.common import ui  # noqa: E402

METRICS = ["e_concat", "e_avg", "c_concat", "c_avg", "spot", "on", "panda"]
MEASURES = {"zero-shot": "zero-shot transfer, relative to the target's PT accuracy",
            "pot-gain": "vanilla PoT test accuracy minus PT", "panda-gain": "PANDA test accuracy minus PT"}
MAX_SUBMIT = 12  # each background job is its own process: launch a bounded number per click


def runs_fingerprint(bb: str) -> tuple:
    from panda_core import store

    runs = store.list_runs(kind="transfer", status="done", limit=5000)
    return (len(runs), max((r["updated"] for r in runs), default=0.0), ui.fingerprint(bb))


@st.cache_data(max_entries=16, show_spinner=False)
def validate(bb: str, tasks: tuple[str, ...], measure: str, metrics: tuple[str, ...], length: int, fp: tuple):
    from panda_core.validation import validate_indicators

    return validate_indicators(bb, list(tasks), measure, list(metrics), prompt_length=length)


def missing_pairs(bb: str, tasks: list[str], measure: str) -> list[tuple[str, str]]:
    from panda_core.validation import measured_matrix

    M = measured_matrix(bb, tasks, measure)
    return [(s, t) for i, s in enumerate(tasks) for j, t in enumerate(tasks) if i != j and np.isnan(M[i, j])]


def fill_form(bb: str, tasks: list[str], measure: str, length: int) -> None:
    from panda_core import jobs

    method = {"zero-shot": "zero-shot", "pot-gain": "pot", "panda-gain": "panda"}[measure]
    pairs = missing_pairs(bb, tasks, measure)
    if not pairs:
        st.caption(f"Every ordered pair of the selected tasks has a {method} run.")
        return
    with st.expander(f"Measure more pairs: {len(pairs)} {method} runs missing", expanded=False):
        c1, c2, c3 = st.columns(3)
        n = int(c1.number_input("Pairs to launch now", 1, MAX_SUBMIT, min(MAX_SUBMIT, len(pairs)), key="mv_n"))
        steps = int(c2.number_input("Steps (PoT / PANDA)", 1, 5000, 100, step=10, key="mv_steps",
                                    disabled=method == "zero-shot"))
        test_limit = int(c3.number_input("Test examples (0 = all)", 0, 100000, 300, step=50, key="mv_test"))
        st.caption(f"Each run is a background job; at most {MAX_SUBMIT} are launched per click.")
        if st.button(f"Run {n} missing {method} transfer(s)", key="mv_fill", icon="▶️"):
            ids = []
            for s, t in pairs[:n]:
                cfg = {"train": {"steps": steps, "eval_every": max(1, steps // 5), "test_limit": test_limit or None,
                                 "dev_limit": 200, "prompt_length": length}}
                ids.append(ui.call(jobs.submit, "transfer", {"source": s, "target": t, "method": method,
                                                             "backbone": bb, "config": cfg}))
            st.session_state["mv_runs"] = ids
    if st.session_state.get("mv_runs"):
        def render(runs: list[dict]) -> None:
            done = sum(r["status"] not in ui.ACTIVE for r in runs)
            st.progress(done / len(runs), text=f"{done}/{len(runs)} transfer runs finished")
            for r in runs:
                if r["status"] == "failed":
                    ui.show_progress(r)
            ui.cancel_buttons(runs, "mv")

        ui.live_runs(st.session_state["mv_runs"], render, "mv")


def summary(out: dict) -> pd.DataFrame:
    labels = ui.metric_labels()
    rows = []
    for m, v in out["indicators"].items():
        rows.append({"indicator": m, "name": labels.get(m, m), "Spearman (mean over targets)": v["spearman_mean"],
                     "Kendall (mean over targets)": v["kendall_mean"], "Spearman (pooled)": v["spearman_pooled"],
                     "Kendall (pooled)": v["kendall_pooled"], "pairs": v["n_pairs"]})
    return pd.DataFrame(rows).sort_values("Spearman (mean over targets)", ascending=False, na_position="last")


def scatter(out: dict) -> pd.DataFrame:
    tasks = out["tasks"]
    measured = out["measured"]
    pts = []
    for m, v in out["indicators"].items():
        for i, s in enumerate(tasks):
            for j, t in enumerate(tasks):
                if i != j and measured[i][j] is not None:
                    pts.append({"indicator": m, "predicted": v["matrix"][i][j], "measured": measured[i][j],
                                "source": s, "target": t, "target family": ui.task_family(t)})
    return pd.DataFrame(pts)


def main() -> None:
    ui.setup("Metric validation")
    st.title("Metric validation")
    st.caption("Every indicator predicts how well a source prompt transfers to a target. Here each prediction "
               "is set against transfer measured by runs in the store; an indicator is good when it ranks the "
               "sources of each target in the measured order (Spearman / Kendall per target, then averaged), "
               "as PANDA evaluates its metric.")
    with ui.guard():
        bb, length = ui.backbone(), ui.prompt_length()
        have = ui.tasks_with_prompts(bb, length)
        if len(have) < 3:
            st.info(f"Need trained prompts for at least 3 tasks on {bb} (found {len(have)}). Train them from Home.")
            st.page_link("app.py", label="Go to Home", icon="🏠")
            return
        c1, c2 = st.columns([2, 1])
        tasks = c1.multiselect("Tasks (sources and targets)", have, default=have, key="mv_tasks")
        measure = c2.radio("Measured transfer", list(MEASURES), format_func=lambda m: f"{m}: {MEASURES[m]}",
                           key="mv_measure")
        metrics = st.multiselect("Indicators", METRICS, default=METRICS, key="mv_metrics",
                                 format_func=lambda m: f"{m}: {ui.metric_labels().get(m, m)}")
        if len(tasks) < 3 or not metrics:
            st.warning("Select at least 3 tasks and one indicator.")
            return
        fill_form(bb, tasks, measure, length)
        if len(missing_pairs(bb, tasks, measure)) == len(tasks) * (len(tasks) - 1):
            method = {"zero-shot": "zero-shot", "pot-gain": "PoT", "panda-gain": "PANDA"}[measure]
            st.info(f"No {method} transfer runs among these tasks on {bb} yet, so there is nothing to validate "
                    "against. Launch some with **Measure more pairs** above, or from the Transfer page.")
            return
        with st.spinner("Computing indicators and correlations…"):
            out = ui.call(validate, bb, tuple(tasks), measure, tuple(metrics), length, runs_fingerprint(bb))
        table = summary(out)
        best = out.get("best")
        if best and not np.isnan(out["indicators"][best]["spearman_mean"]):
            v = out["indicators"][best]
            st.success(f"Best predictor here: **{best}** ({ui.metric_labels().get(best, best)}), mean Spearman "
                       f"{v['spearman_mean']:.3f} over targets, pooled {v['spearman_pooled']:.3f}.")
        else:
            st.warning("Not enough measured pairs per target for a rank correlation (needs 3 sources per target). "
                       "Measure more pairs above.")
        st.dataframe(table, hide_index=True, key="mv_summary",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
                                    if c.startswith(("Spearman", "Kendall"))})
        pts = scatter(out)
        if not pts.empty:
            fig = px.scatter(pts, x="predicted", y="measured", color="target", facet_col="indicator",
                             facet_col_wrap=4, facet_row_spacing=0.12, facet_col_spacing=0.05,
                             hover_data=["source", "target", "target family"],
                             title=f"Indicator vs measured transfer ({measure})")
            fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
            fig.update_xaxes(matches=None, showticklabels=True)
            fig.update_layout(height=320 * ((len(metrics) + 3) // 4) + 80, margin=dict(l=10, r=10, t=70, b=10))
            ui.plot(fig, key="mv_scatter")
            ui.figure_downloads(fig, f"{bb}-validation-{measure}", csv=pts.to_csv(index=False), key="mv",
                                csv_label="Points (CSV)")
        per_target = pd.DataFrame({m: v["spearman_per_target"] for m, v in out["indicators"].items()},
                                  index=out["tasks"])
        per_target.index.name = "target"
        with st.expander("Spearman per target"):
            st.dataframe(per_target.style.format("{:.3f}", na_rep="—"), key="mv_per_target")
        measured = pd.DataFrame(out["measured"], index=out["tasks"], columns=out["tasks"])
        measured.index.name = "source \\ target"
        with st.expander("Measured transfer matrix"):
            st.dataframe(measured, key="mv_measured")


main()
