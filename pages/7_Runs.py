"""Runs: every background job (train, transfer, projector) with its status,
progress and result; active ones can be cancelled. Jobs live in the run
registry, so this list survives page reloads and app restarts."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from pages.common import ui  # noqa: E402

STATUSES = ["queued", "running", "done", "failed", "cancelled"]
KINDS = ["train", "transfer", "project"]


def rows_table(runs: list[dict]) -> pd.DataFrame:
    out = []
    for r in runs:
        prog = r.get("progress") or {}
        res = r.get("result") or {}
        step = f"{prog.get('step')}/{prog.get('steps')}" if prog.get("steps") else ""
        out.append({"status": f"{ui.STATUS_ICON.get(r['status'], '')} {r['status']}", "kind": r["kind"],
                    "what": ui.run_label(r), "backbone": r["backbone"], "progress": step,
                    "test acc": res.get("test_acc"), "updated": ui.ago(r["updated"]),
                    "error": (r.get("error") or "")[:160], "id": r["id"]})
    return pd.DataFrame(out)


@st.fragment(run_every=2.0)
def run_list(kinds: list[str], statuses: list[str], limit: int) -> None:
    from panda_core import jobs

    runs = [r for r in jobs.list_jobs(limit=limit) if r["kind"] in kinds and r["status"] in statuses]
    active = [r for r in runs if r["status"] in ui.ACTIVE]
    c1, c2, c3 = st.columns(3)
    c1.metric("Shown", len(runs))
    c2.metric("Active", len(active))
    c3.metric("Failed", sum(r["status"] == "failed" for r in runs))
    for r in active:
        ui.show_progress(r)
    if runs:
        st.dataframe(rows_table(runs), hide_index=True, key="runs_table",
                     column_config={"test acc": st.column_config.NumberColumn(format="%.3f")})
    else:
        st.info("No runs match. Start one from the Home, Prompts, Transfer or Cross model page.")


def details() -> None:
    from panda_core import jobs, store

    st.subheader("One run")
    recent = store.list_runs(limit=300)
    if not recent:
        return
    labels = {r["id"]: f"{r['id']} · {ui.run_label(r)} · {r['status']}" for r in recent}
    run_id = st.selectbox("Run (newest first)", list(labels), format_func=labels.get, key="runs_detail_id")
    run = store.get_run(run_id)
    if run is None:
        st.error(f"unknown run '{run_id}'")
        return
    ui.show_progress(run)
    if run["status"] in ui.ACTIVE and st.button("Cancel this run", key="runs_cancel_one", icon="⏹️"):
        ui.call(jobs.cancel, run_id)
        st.toast(f"Cancellation requested for {run_id}")
    if store.curve(run_id) or (run.get("result") or {}).get("dev_curve"):
        ui.plot(ui.curves_figure([run], f"Dev accuracy · {run_id}"), key="runs_curve")
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
        kinds = c1.multiselect("Kinds", KINDS, default=KINDS, key="runs_kinds")
        statuses = c2.multiselect("Status", STATUSES, default=STATUSES, key="runs_statuses")
        limit = int(c3.number_input("Show at most", 10, 2000, 200, step=10, key="runs_limit"))
        run_list(kinds, statuses, limit)
    with ui.guard():
        from panda_core import jobs

        active = [r for r in jobs.list_jobs(limit=500) if r["status"] in ui.ACTIVE]
        if active:
            pick = st.multiselect("Cancel runs", [r["id"] for r in active], key="runs_cancel_pick",
                                  format_func=lambda i: f"{i} · " + next(ui.run_label(r) for r in active if r["id"] == i))
            if st.button("Cancel selected", key="runs_cancel", disabled=not pick, icon="⏹️"):
                for rid in pick:
                    ui.call(jobs.cancel, rid)
                st.toast(f"Cancellation requested for {len(pick)} run(s)")
    with ui.guard():
        details()


main()
