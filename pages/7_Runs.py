"""Runs: every background job (train, transfer, projector) with its status,
progress and result; active ones can be cancelled. Jobs live in the run
registry, so this list survives page reloads and app restarts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from panda_app import figures, jobs_view, stats_view, ui
from panda_core import ops, store
from panda_core.indicators.source_ranking import run_curve


def rows_table(runs: list[dict]) -> pd.DataFrame:
    out = []
    for r in runs:
        prog = r.get("progress") or {}
        res = r.get("result") or {}
        step = f"{prog.get('step')}/{prog.get('steps')}" if prog.get("steps") else ""
        out.append({"status": f"{jobs_view.STATUS_ICON.get(r['status'], '')} {r['status']}", "kind": r["kind"],
                    "what": jobs_view.run_label(r), "backbone": r["backbone"], "progress": step,
                    "test acc [95% CI]": stats_view.fmt_acc(ops.accuracy_of(res)) if res.get("test_acc") is not None
                    else "", "updated": ui.ago(r["updated"]),
                    "error": (r.get("error") or "")[:160], "id": r["id"]})
    return pd.DataFrame(out)


@st.fragment(run_every=2.0)
def run_list(kinds: list[str], statuses: list[str], limit: int) -> None:
    runs = [r for r in ops.list_jobs(limit=limit) if r["kind"] in kinds and r["status"] in statuses]
    active = [r for r in runs if r["status"] in jobs_view.ACTIVE]
    c1, c2, c3 = st.columns(3)
    c1.metric("Shown", len(runs))
    c2.metric("Active", len(active))
    c3.metric("Failed", sum(r["status"] == "failed" for r in runs))
    for r in active:
        jobs_view.show_progress(r)
    if runs:
        st.dataframe(rows_table(runs), hide_index=True, key="runs_table")
    else:
        st.info("No runs match. Start one from the Home, Prompts, Transfer or Cross model page.")


def details() -> None:
    st.subheader("One run")
    recent = store.list_runs(limit=300)
    if not recent:
        return
    labels = {r["id"]: f"{r['id']} · {jobs_view.run_label(r)} · {r['status']}" for r in recent}
    run_id = st.selectbox("Run (newest first)", list(labels), format_func=labels.get, key="runs_detail_id")
    run = store.get_run(run_id)
    if run is None:
        st.error(f"unknown run '{run_id}'")
        return
    jobs_view.show_progress(run)
    if run["status"] in jobs_view.ACTIVE and st.button("Cancel this run", key="runs_cancel_one", icon="⏹️"):
        ui.call(ops.cancel, run_id)
        st.toast(f"Cancellation requested for {run_id}")
    if run_curve(run):
        figures.plot(jobs_view.curves_figure([run], f"Dev accuracy · {run_id}"), key="runs_curve")
    c1, c2 = st.columns(2)
    with c1:
        st.caption("Parameters")
        st.json(run["config"], expanded=False)
    with c2:
        st.caption("Result")
        st.json(run.get("result") or {}, expanded=False)


def main() -> None:
    ui.setup("Runs")
    st.title("Runs")
    st.caption("Background jobs run in their own processes (at most PANDA_MAX_JOBS at once, default 1; the "
               "others wait in the queue). Closing the browser does not stop them.")
    with ui.guard():
        c1, c2, c3 = st.columns([2, 3, 1])
        kinds = c1.multiselect("Kinds", ops.JOB_KINDS.names(), default=ops.JOB_KINDS.names(), key="runs_kinds",
                               format_func=lambda k: f"{k}: {ops.JOB_KINDS.get(k).label}")
        statuses = c2.multiselect("Status", jobs_view.STATUSES, default=jobs_view.STATUSES, key="runs_statuses")
        limit = int(c3.number_input("Show at most", 10, 2000, 200, step=10, key="runs_limit"))
        run_list(kinds, statuses, limit)
    with ui.guard():
        active = [r for r in ops.list_jobs(limit=500) if r["status"] in jobs_view.ACTIVE]
        if active:
            pick = st.multiselect("Cancel runs", [r["id"] for r in active], key="runs_cancel_pick",
                                  format_func=lambda i: f"{i} · " + next(jobs_view.run_label(r) for r in active if r["id"] == i))
            if st.button("Cancel selected", key="runs_cancel", disabled=not pick, icon="⏹️"):
                for rid in pick:
                    ui.call(ops.cancel, rid)
                st.toast(f"Cancellation requested for {len(pick)} run(s)")
    with ui.guard():
        details()


main()
