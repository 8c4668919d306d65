"""Metric validation: does an indicator predict measured transfer? Scatter of
each indicator against the transfer measured by stored runs, with Spearman
and Kendall rank correlations per target and pooled (PANDA's protocol), or
against transfer measured elsewhere (a paper's CSV, imported here or with
`measurements import`), labelled external.
Indicators come from `INDICATORS`, measures from `validation.MEASURES` and
`indicators.external`; the measured pairs and correlations from
`panda_core.indicators.validation`, their intervals and verdicts from
`ops.compare`, and the runs that complete a measurement in one configuration
from `ops.measure_plan`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from panda_app import bundle_view, figures, jobs_view, stats_view, ui
from panda_core import ops, store
from panda_core.backbones.foreign import installed
from panda_core.indicators import INDICATORS, external
from panda_core.indicators import validation as science
from panda_core.indicators.correlation import default_metrics

MAX_SUBMIT = 12  # each background job is its own process: launch a bounded number per click
SHOWN = ("steps", "test_limit", "seed", "max_length", "lambda_max")  # settings named in a configuration's summary


def runs_fingerprint(bb: str) -> tuple:
    runs = store.list_runs(kind="transfer", status="done", limit=5000)
    return (len(runs), max((r["updated"] for r in runs), default=0.0), ui.fingerprint(bb))


def external_fingerprint(bb: str) -> tuple:
    """Changes when an external measurement of the backbone is imported or replaced, or a prompt changes."""
    return (tuple((m["name"], m.get("sha256"), m.get("imported")) for m in external.list_measurements(bb)),
            ui.fingerprint(bb))


def import_form(bb: str) -> None:
    """Import a CSV of transfer measured elsewhere (a paper's numbers) as an external measurement of `bb`."""
    with st.expander("Import measured transfer from elsewhere (CSV)",
                     expanded=not installed(bb) and not external.list_measurements(bb)):
        st.caption("A CSV with the header `source,target,score` (optional columns: `backbone`, `metric`, `n`, "
                   f"`note`), one row per source-target pair, e.g. a paper's zero-shot transfer. Its tasks need "
                   f"prompts on {bb}; its numbers are stored as an **external** measurement, never as runs.")
        upload = st.file_uploader("CSV of measured transfer", type=["csv"], key="mv_csv")
        c1, c2 = st.columns(2)
        name = c1.text_input("Name", key="mv_csv_name", placeholder="the file's name",
                             help="letters, digits, '_', '-', '.'; e.g. su2022")
        measure = c2.selectbox("What the scores are", science.MEASURES.names(), key="mv_csv_measure",
                               format_func=lambda m: f"{m}: {science.MEASURES.get(m).label}",
                               help="used unless the CSV has a metric column")
        replace = st.checkbox("Replace a measurement of the same name", key="mv_csv_replace")
        if st.button("Import", key="mv_csv_import", icon="📥", disabled=upload is None):
            got = ui.call(external.import_measurement, None, name.strip() or Path(upload.name).stem, bb, measure,
                          data=upload.getvalue(), where=upload.name, replace=replace)
            st.session_state["mv_measure"] = got["measure_id"]
            st.session_state["mv_imported"] = (f"Imported '{got['name']}': {got['pairs']} pairs over "
                                               f"{len(got['tasks'])} tasks ({got['measure']}).")
            st.rerun()
    if st.session_state.get("mv_imported"):
        st.success(st.session_state.pop("mv_imported"))


def measure_options(bb: str) -> list[str]:
    """The measured transfers offered: runs in the store (an installed backbone only), then external ones."""
    runs = science.MEASURES.names() if installed(bb) else []
    options = runs + [m["measure_id"] for m in external.list_measurements(bb) if not m.get("error")]
    if st.session_state.get("mv_measure") not in options:
        st.session_state.pop("mv_measure", None)  # another backbone's measurement, or one deleted
    return options


@st.cache_data(max_entries=16, show_spinner=False)
def validate(bb: str, tasks: tuple[str, ...], measure: str, metrics: tuple[str, ...], length: int, fp: tuple,
             prompt_type: str = "input"):
    return science.validate_indicators(bb, list(tasks), measure, list(metrics), prompt_length=length,
                                       prompt_type=prompt_type)


def form_settings() -> dict:
    """The settings of new runs when nothing is measured yet (the form's inputs, read before they are drawn)."""
    steps = int(st.session_state.get("mv_steps", 100))
    test_limit = int(st.session_state.get("mv_test", 300))
    return {"steps": steps, "eval_every": max(1, steps // 5), "test_limit": test_limit or None, "dev_limit": 200}


def fill_form(bb: str, plan: ops.MeasurePlan) -> None:
    """Launch the runs that complete the measurement: missing pairs and the references their targets lack."""
    label, ref_label = jobs_view.method_label(plan.method), jobs_view.method_label(plan.reference)
    if not plan.pairs and not plan.references:
        st.caption(f"Every ordered pair of the selected tasks has a {label} run with its {ref_label} reference.")
    else:
        title = f"Measure more pairs: {len(plan.pairs)} {label} runs missing"
        if plan.references:
            title += f", {len(plan.references)} {ref_label} reference runs missing"
        with st.expander(title, expanded=False):
            if plan.measured:
                shown = ", ".join(f"{k} {plan.settings[k]}" for k in SHOWN if k in plan.settings)
                st.caption("New runs use the settings of the runs measured so far, so they join the same "
                           f"configuration ({shown}; the others are on Runs).")
            c1, c2, c3 = st.columns(3)
            n = int(c1.number_input("Pairs to launch now", 0, MAX_SUBMIT, min(MAX_SUBMIT, len(plan.pairs)),
                                    key="mv_n"))
            if not plan.measured:
                c2.number_input("Training steps", 1, 5000, 100, step=10, key="mv_steps",
                                help="Methods that only evaluate (zero-shot) ignore it.")
                c3.number_input("Test examples (0 = all)", 0, 100000, 300, step=50, key="mv_test")
            jobs = plan.jobs(n)
            refs = len(jobs) - min(n, len(plan.pairs))
            st.caption(f"Launches {len(jobs) - refs} {label} run(s) and {refs} {ref_label} reference run(s) on the "
                       f"same settings (each value is taken against its target's reference on the same test "
                       f"items). Each run is a background job; at most {MAX_SUBMIT} pairs per click.")
            if st.button(f"Run {len(jobs)} job(s)", key="mv_fill", icon="▶️", disabled=not jobs):
                st.session_state["mv_runs"] = [
                    ui.call(ops.submit, "transfer", job | {"backbone": bb, "config": plan.config}) for job in jobs]
    if st.session_state.get("mv_runs"):
        def render(runs: list[dict]) -> None:
            done = sum(r["status"] not in jobs_view.ACTIVE for r in runs)
            st.progress(done / len(runs), text=f"{done}/{len(runs)} transfer runs finished")
            for r in runs:
                if r["status"] == "failed":
                    jobs_view.show_progress(r)
            jobs_view.cancel_buttons(runs, "mv")

        jobs_view.live_runs(st.session_state["mv_runs"], render, "mv")


CORRELATIONS = {"spearman_pooled": "Spearman (pooled)", "kendall_pooled": "Kendall (pooled)",
                "spearman_mean": "Spearman (mean over targets)", "kendall_mean": "Kendall (mean over targets)"}


def summary(rows: list[dict]) -> None:
    """Every indicator's correlations with their 95% intervals, each cell coloured by its own verdict."""
    labels = INDICATORS.labels()
    table = pd.DataFrame([{
        "indicator": r["indicator"], "name": labels.get(r["indicator"], r["indicator"]),
        **{f"{title} [95% CI]": stats_view.fmt_value(r[k]["value"], r[k]["low"], r[k]["high"])
           for k, title in CORRELATIONS.items()},
        "p (pooled Spearman)": stats_view.fmt_p(r["spearman_pooled"]["p_value"]),
        "NDCG@3": stats_view.fmt_value(r["ndcg_at_3"]),
        "top source beats median": f"{r['top_beats_median'][0]}/{r['top_beats_median'][1]} targets",
        "pairs": r["n_pairs"],
        "verdict (pooled Spearman)": stats_view.words(r["verdict"], stats_view.CORR_WORDS),
    } for r in rows])
    verdicts = {f"{title} [95% CI]": [r[k]["verdict"] for r in rows] for k, title in CORRELATIONS.items()}
    verdicts["verdict (pooled Spearman)"] = [r["verdict"] for r in rows]
    st.table(stats_view.style_cells(table, verdicts), hide_index=True)
    stats_view.legend(stats_view.CORR_WORDS, "correlation")
    st.caption("Intervals: bootstrap over source-target pairs (pooled) or over targets (mean). NDCG@3 scores the "
               "top three of each target's ranking against the best order; 'top source beats median' counts the "
               "targets where the indicator's first choice transfers better than the target's median source.")
    csv = pd.DataFrame([{"indicator": r["indicator"], "pairs": r["n_pairs"], "ndcg_at_3": r["ndcg_at_3"],
                         **{f"{k}_{part}": r[k][part] for k in CORRELATIONS for part in ("value", "low", "high")},
                         "verdict": r["verdict"]} for r in rows])
    st.download_button("Summary (CSV)", csv.to_csv(index=False), "indicator-validation.csv", "text/csv",
                       key="mv_summary_csv", icon="⬇️")


def best_line(rows: list[dict], imported: bool = False) -> None:
    best = rows[0] if rows and rows[0]["spearman_mean"]["value"] is not None else None
    if best is None:
        st.warning("Not enough measured pairs per target for a rank correlation (needs 3 sources per target). "
                   + ("Import a CSV with more pairs, or select more of its tasks." if imported
                      else "Measure more pairs above."))
        return
    mean, pooled = best["spearman_mean"], best["spearman_pooled"]
    text = (f"Best predictor here: **{ui.indicator_label(best['indicator'])}**, mean Spearman "
            f"{stats_view.fmt_value(mean['value'], mean['low'], mean['high'])} over targets, pooled "
            f"{stats_view.fmt_value(pooled['value'], pooled['low'], pooled['high'])}.")
    if best["verdict"] == stats_view.BETTER:
        st.success(text)
    elif best["verdict"] == stats_view.WITHIN_NOISE:
        st.info(f"{text} Its pooled interval covers 0: **within noise**. Measure more pairs before trusting it.")
    else:
        st.warning(f"{text} {stats_view.words(best['verdict'], stats_view.CORR_WORDS)}.")


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


def bundled_validation(bb: str, tasks: list[str], measure: str, metrics: list[str]) -> dict | None:
    """The study bundle's validation when nothing is measured here yet and the prompts in
    use are exactly the zoo prompts it was computed from (zero-shot transfer only)."""
    from panda_core.ops import bundle

    if measure != "zero-shot" or st.session_state.get(bundle_view.OFF):
        return None
    ids = [ui.latest_prompts(bb)[t]["id"] for t in tasks]
    return bundle.validation_table(bb, ids, list(metrics), ui.active_prompt_type())


def results(out: dict, bb: str, measure: str) -> None:
    rows = ops.indicator_summary(out)
    best_line(rows, bool(out.get("external")))
    if out.get("origin") == "bundled":
        st.caption(f"Measured transfer: bundled with the tool ({out['bundle']}): the zoo prompts' zero-shot "
                   f"transfer on the first {out['config'].get('test_limit')} test items of each task, against the "
                   "bundled indicator matrices. Runs you measure here replace it.")
    elif out.get("external"):
        left = out.get("left_out") or []
        st.caption(f"Measured transfer: **external** numbers, '{out['source']}' imported from "
                   f"{out.get('source_file') or 'a CSV'} ({out['external_measure']}), not runs on this machine. "
                   "They carry no per-item results, so the intervals bootstrap pairs and targets only."
                   + (f" Its tasks without a selected prompt here: {', '.join(left)}." if left else ""))
    else:
        config = out.get("config") or {}
        shown = ", ".join(f"{k} {config[k]}" for k in SHOWN if k in config)
        st.caption(f"One configuration of runs is measured ({shown or 'see Runs'}); runs of other settings are "
                   "left out." + (f" Targets whose runs still lack a reference: {', '.join(out['missing_references'])}."
                                  if out.get("missing_references") else ""))
    summary(rows)
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
               "is set against measured transfer, from runs in the store or imported from elsewhere; an "
               "indicator is good when it ranks the sources of each target in the measured order (Spearman / "
               "Kendall per target, then averaged), as PANDA evaluates its metric.")
    with ui.guard():
        bb, length = ui.backbone(), ui.prompt_length()
        have = ui.tasks_ready(3)
        if have is None:
            return
        import_form(bb)
        options = measure_options(bb)
        if not options:
            st.info(f"{bb} is not installed here, so no transfer runs can measure it: import published numbers "
                    "(a CSV) above to validate the indicators against them.")
            return
        c1, c2 = st.columns([2, 1])
        tasks = c1.multiselect("Tasks (sources and targets)", have, default=have, key="mv_tasks")
        measure = c2.radio("Measured transfer", options, key="mv_measure", format_func=external.label)
        names = default_metrics(bb)
        metrics = st.multiselect("Indicators", names, default=names, key="mv_metrics",
                                 format_func=ui.indicator_label)
        if len(tasks) < 3 or not metrics:
            st.warning("Select at least 3 tasks and one indicator.")
            return
        if external.external_name(measure) is not None:
            with st.spinner("Computing indicators and correlations…"):
                out = ui.call(validate, bb, tuple(tasks), measure, tuple(metrics), length, external_fingerprint(bb),
                              ui.active_prompt_type())
            results(out, bb, measure)
            return
        plan = ui.call(ops.measure_plan, bb, tasks, measure, length, form_settings(), ui.active_prompt_type())
        fill_form(bb, plan)
        if not plan.values:
            bundled = bundled_validation(bb, tasks, measure, metrics)
            if bundled is not None:
                results(bundled, bb, measure)
                return
            label, ref = jobs_view.method_label(plan.method), jobs_view.method_label(plan.reference)
            if not plan.measured:
                st.info(f"No {label} transfer runs among these tasks on {bb} yet, so there is nothing to validate "
                        "against. Launch some with **Measure more pairs** above, or from the Transfer page.")
            else:
                st.info(f"The {label} runs among these tasks have no {ref} reference on the same settings yet "
                        f"({', '.join(plan.waiting)}): launch them with **Measure more pairs** above.")
            return
        with st.spinner("Computing indicators and correlations…"):
            out = ui.call(validate, bb, tuple(tasks), measure, tuple(metrics), length, runs_fingerprint(bb),
                          ui.active_prompt_type())
        results(out, bb, measure)


main()
