"""Transfer: run the registered transfer methods from chosen sources to a
target as background jobs, watch their dev curves live, compare the results,
and rank candidate sources by every indicator.

The methods, their labels and what they need come from the `METHODS`
registry, the indicators from `INDICATORS`; the jobs a choice means from
`ops.plan`, the PT reference, gains, predictions and source ranking from
`panda_core.indicators.validation`, accuracies with their intervals and the
paired comparisons of the runs from `ops.compare`. A newly registered method
or indicator appears here with no edit."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from panda_app import bundle_view, figures, jobs_view, stats_view, ui
from panda_core import ops
from panda_core.indicators import INDICATORS
from panda_core.indicators import source_ranking as retrieval
from panda_core.indicators import validation as science
from panda_core.transfer import METHODS, KdForm, Need, Sources, StudentInit, Teacher

# Preselected: the prompt-tuning methods that read at most one source (the
# evaluation-only and full-model references, and methods that need several
# sources, are one click away).
DEFAULT_METHODS = [m.name for m in METHODS if m.saves_prompt and m.sources is not Sources.MANY]


# ------------------------------------------------------------------ launching
def knob_inputs() -> dict:
    """The knobs beyond training of the methods that declare them (PANDA's)."""
    owners = [m.label for m in METHODS if m.transfer_knobs]
    if not owners:
        return {}
    with st.expander(f"{', '.join(owners)} options"):
        p1, p2, p3, p4 = st.columns(4)
        lambda_max = p1.number_input("λ max", 0.0, 100.0, 1.0, step=0.1, key="tr_lambda_max",
                                     help="λ(s,t) = λ_max · clip(T(s,t), 0, 1), T = PANDA's metric.")
        kd_form = p2.selectbox("λ form", [k.value for k in KdForm], key="tr_kd_form",
                               help="code: the released code's 0.1 · T / batch size")
        teacher = p3.selectbox("Teacher", [t.value for t in Teacher], key="tr_teacher",
                               help="pot: the vanilla-PoT prompt trained on the target (released code).")
        student_init = p4.selectbox("Student init", [s.value for s in StudentInit], key="tr_student_init")
    return {"lambda_max": float(lambda_max), "kd_form": kd_form, "teacher": teacher, "student_init": student_init}


def problems_of(methods: list[str], sources: list[str], target: str, have: list[str]) -> list[str]:
    chosen = [METHODS.get(m) for m in methods]
    out = []
    sourceless = (Sources.NONE, Sources.OPTIONAL)
    if not sources and any(m.sources not in sourceless for m in chosen):
        alone = " and ".join(m.label for m in METHODS if m.sources in sourceless)
        out.append(f"Choose at least one source (only {alone} runs without one).")
    out += [f"{m.label} needs the target's own PT prompt ({target} has none): train it on the Prompts page."
            for m in chosen if Need.TARGET_PROMPT in m.needs and target not in have]
    return out


def launch_form(bb: str, length: int) -> None:
    tasks = ui.available_tasks()
    have = ui.tasks_ready(1, ": transfers need source prompts")
    if have is None:
        return
    c1, c2 = st.columns([1, 2])
    default_target = next((t for t in tasks if t in have), tasks[0])
    target = c1.selectbox("Target task", tasks, index=tasks.index(default_target), key="tr_target",
                          format_func=lambda t: f"{t} ({ui.task_family(t)})")
    default_sources = [t for t in have if t != target][:1]
    sources = c2.multiselect("Source task(s)", have, default=default_sources, key="tr_sources",
                             format_func=lambda t: f"{t} ({ui.task_family(t)})",
                             help="Sources need a trained prompt on this backbone.")
    if target in sources:
        st.caption(f"{target} is the target: it is left out of the sources.")
        sources = [s for s in sources if s != target]
    methods = st.multiselect("Methods", METHODS.names(), default=DEFAULT_METHODS, key="tr_methods",
                             format_func=jobs_view.method_label,
                             help="  \n".join(f"**{m.label}**: {m.help}." for m in METHODS))
    c3, c4, c5, c6 = st.columns(4)
    steps = int(c3.number_input("Training steps", 1, 10000, 100, step=10, key="tr_steps"))
    eval_every = int(c4.number_input("Dev eval every", 1, 1000, 20, step=5, key="tr_eval_every"))
    dev_limit = int(c5.number_input("Dev examples", 20, 5000, 200, step=20, key="tr_dev_limit"))
    test_limit = int(c6.number_input("Test examples (0 = all)", 0, 100000, 0, step=100, key="tr_test_limit"))
    knobs = knob_inputs()
    problems = problems_of(methods, sources, target, have)
    for p in problems:
        st.warning(p)
    if st.button("Run", type="primary", icon="▶️", key="tr_run", disabled=bool(problems) or not methods):
        train = {"steps": steps, "eval_every": eval_every, "dev_limit": dev_limit,
                 "test_limit": test_limit or None, "prompt_length": length, "prompt_type": ui.active_prompt_type()}
        ids = []
        for job in ui.call(ops.plan, sources, [target], methods):
            method = METHODS.get(job["method"])
            cfg = {"train": train} | (knobs if method.transfer_knobs else {})
            ids.append(ui.call(ops.submit, "transfer", job | {"backbone": bb, "config": cfg}))
        st.session_state["tr_batch"] = ids
        st.query_params["runs"] = ",".join(ids)
        st.toast(f"Started {len(ids)} run(s) in the background")


def current_batch() -> list[str]:
    """Run ids of the last launch: from the session, else from the URL (a reload keeps it)."""
    if st.session_state.get("tr_batch"):
        return st.session_state["tr_batch"]
    raw = st.query_params.get("runs", "")
    ids = [r for r in raw.split(",") if r.startswith("transfer-")][:30]
    if ids:
        st.session_state["tr_batch"] = ids
    return ids


# ------------------------------------------------------------------ results
def reference_run(runs: list[dict], ref: retrieval.PtReference) -> dict | None:
    """The run behind the PT reference: the batch's PT run, or the run that trained the stored PT prompt."""
    if ref.origin == "run":
        return next((r for r in runs if r["id"] == ref.id), None)
    return ui.call(ops.reference_run_of_prompt, ref.id) if ref.origin == "stored" else None


def results_table(runs: list[dict], bb: str, length: int, metric: str, ref: retrieval.PtReference) -> pd.DataFrame:
    targets = {r["target"] for r in runs}
    target = next(iter(targets)) if len(targets) == 1 else None
    gains = retrieval.transfer_gains(runs, ref)
    kind = science.prompt_type_of(runs[0]) if runs else "input"  # the batch's own prompt type
    pred = retrieval.predicted_transfer(metric, bb, [r["source"] for r in runs if r.get("source")], target, length,
                                      table=ui.similarity_table, prompt_type=kind) if target else {}
    dev_sizes = {t["name"]: t.get("n_dev") for t in ui.task_rows()}
    out = []
    for r in runs:
        res, gain = r.get("result") or {}, gains[r["id"]]
        test, dev = ops.accuracy_of(res), ops.dev_accuracy_of(r, dev_sizes.get(r["target"]))
        out.append({
            "method": jobs_view.method_label(r["method"]), "source": r.get("source") or "—",
            "target": r["target"], "status": f"{jobs_view.STATUS_ICON.get(r['status'], '')} {r['status']}",
            f"predicted T ({metric})": pred.get(r.get("source")), "KD weight λ": res.get("kd_weight"),
            "test acc [95% CI]": stats_view.fmt_acc(test), "majority class": test["majority"],
            "test items": test["n"], "best dev acc [95% CI]": stats_view.fmt_acc(dev),
            "steps to PT dev": gain.steps_to_pt_dev, "≈ s to PT dev": gain.seconds_to_pt_dev,
            "seconds": res.get("seconds"), "reused": "yes" if res.get("reused_from") else "", "run": r["id"],
            "test acc": test["acc"], "test acc low": test["low"], "test acc high": test["high"],
        })
    return pd.DataFrame(out)


def reference_caption(ref: retrieval.PtReference, ref_run: dict | None) -> None:
    if ref.dev is None:
        return
    test = ops.accuracy_of(ref_run["result"]) if ref_run else {"acc": ref.test}
    st.caption(f"PT reference on the target: best dev {ui.fmt_acc(ref.dev)}, test {stats_view.fmt_acc(test)} "
               f"({'this batch' if ref.origin == 'run' else 'stored PT prompt'}). 'steps to PT dev' = first "
               "evaluation at which the transfer's dev accuracy reaches it (empty: not reached within the budget). "
               "Intervals are 95% Wilson intervals over the items scored; the best dev accuracy is the best of "
               "several evaluations on the same items, so it leans optimistic.")


@st.cache_data(max_entries=32, show_spinner=False)
def paired_comparisons(runs: list[dict], ref_run: dict | None) -> list[dict]:
    """`ops.comparisons`, cached: the live panel reruns every second while runs are active."""
    return ops.comparisons(runs, ref_run)


def comparisons_table(rows: list[dict]) -> None:
    """Paired differences, each row coloured by its verdict (grey and muted when within noise)."""
    st.markdown("**Paired comparisons** (A − B on the test items both runs scored)")
    if not rows:
        st.caption("No comparison yet: it needs a finished PT reference (or PANDA and PoT from the same source).")
        return
    df = pd.DataFrame([{
        "A": c["a"], "B": c["b"], "A acc [95% CI]": stats_view.fmt_acc(c["a_acc"]),
        "B acc [95% CI]": stats_view.fmt_acc(c["b_acc"]),
        "Δ A − B [95% CI]": stats_view.fmt_value(c["diff"], c["low"], c["high"], signed=True),
        "p (McNemar)": stats_view.fmt_p(c["p_value"]), "items": str(c["n"] or stats_view.NO_VALUE),
        "verdict": stats_view.words(c["verdict"], missing="not paired (run without per-item results)"),
    } for c in rows])
    st.table(stats_view.style_rows(df, [c["verdict"] for c in rows]), hide_index=True)
    stats_view.legend()
    st.caption("Differences are paired on the same test items (the first items of the split both runs scored): "
               "a bootstrap over items gives the 95% interval, the exact McNemar test the p-value.")


def show_batch(ids: list[str], bb: str, length: int) -> None:
    names = INDICATORS.names()
    st.subheader("Runs")
    metric = st.selectbox("Predicted transferability in the table by", names, index=ui.preferred(names, "panda"),
                          key="tr_pred_metric", format_func=ui.indicator_label)

    def results(runs: list[dict]) -> None:
        fig = jobs_view.curves_figure(runs, "Dev accuracy of every run (live)",
                                      name=lambda r: f"{jobs_view.method_label(r['method'])}"
                                                     f"{' from ' + r['source'] if r.get('source') else ''}")
        figures.plot(fig, key="tr_curves")
        if any(r["status"] == "done" for r in runs):
            with ui.guard():
                targets = {r["target"] for r in runs}
                ref = retrieval.pt_reference(runs, bb, next(iter(targets)) if len(targets) == 1 else None, length,
                                           science.prompt_type_of(runs[0]) if runs else "input")
                ref_run = reference_run(runs, ref)
                df = results_table(runs, bb, length, metric, ref)
                reference_caption(ref, ref_run)
                numeric = ["test acc", "test acc low", "test acc high"]
                st.dataframe(df, hide_index=True, key="tr_results",
                             column_order=[c for c in df.columns if c not in numeric],
                             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in df.columns
                                            if c.startswith(("predicted", "KD", "majority"))})
                st.download_button("Results (CSV)", df.drop(columns=[c for c in df.columns if "[" in c])
                                   .to_csv(index=False), "transfer-results.csv", "text/csv",
                                   key="tr_results_csv", icon="⬇️")
                comparisons_table(ui.call(paired_comparisons, [r for r in runs if r["status"] == "done"], ref_run))

    jobs_view.batch_panel(ids, "transfer", results)


# ------------------------------------------------------------------ ranking
def ranking(bb: str, length: int) -> None:
    st.subheader("Which source for this target?")
    st.caption("SPoT-style source retrieval: rank the candidate sources by each indicator (1 = predicted best), "
               "next to what transfer actually gave where runs exist ("
               + "; ".join(f"{m.name}: {m.label}" for m in science.MEASURES) + ").")
    have = ui.tasks_with_prompts(bb, length)
    target = st.session_state.get("tr_target")
    if target not in have or len(have) < 3:
        st.info("Ranking needs a target with a trained prompt and at least two candidate sources.")
        return
    slow = [i.name for i in INDICATORS if i.needs_backbone]
    model_based = st.checkbox(f"Include {', '.join(slow)} (run the backbone; slower)", value=False,
                              key="tr_rank_model")
    indicators = [i.name for i in INDICATORS if model_based or not i.needs_backbone]
    tables: list[dict] = []

    def table(*args, **kwargs) -> dict:  # ui's cached (or bundled) tables, kept to say where they came from
        tables.append(ui.similarity_table(*args, **kwargs))
        return tables[-1]

    with st.spinner("Computing indicators…"):
        rk = ui.call(retrieval.rank_sources, bb, target, indicators, length, tasks=have, table=table,
                     prompt_type=ui.active_prompt_type())
    bundled_zero_shot = bundle_view.fill_zero_shot(rk, tables, bb, ui.active_prompt_type())
    df = pd.DataFrame(index=pd.Index(rk.sources, name="source"))
    df["family"] = [ui.task_family(s) for s in rk.sources]
    for m in indicators:
        df[f"rank {m}"] = [rk.ranks[m][s] for s in rk.sources]
    for measure in rk.measured:
        df[measure] = [measured_text(rk, measure, s) for s in rk.sources]
    st.dataframe(df, key="tr_ranking")
    prompts, values = bundle_view.table_origins(tables)
    st.caption(bundle_view.origin_caption(prompts))
    bundle_view.values_note(values, "tr_rank", "Indicator scores")
    if bundled_zero_shot:
        st.caption(f"Zero-shot transfer: {bundled_zero_shot} of {len(rk.sources)} values bundled with the tool (the "
                   "zoo prompts on the first test items of each task); zero-shot runs you measure here replace them.")
    st.caption("Measured values carry their 95% interval (a paired bootstrap over the test items the run shares "
               "with its reference); ≈ marks a value whose interval covers no change (0, or 1 for a ratio).")
    lines = []
    for m, s in rk.best.items():
        got = [f"{k} {measured_text(rk, k, s)}" for k, v in rk.measured.items() if v[s] is not None]
        lines.append(f"- **{m}** picks **{s}**" + (f" (measured: {', '.join(got)})" if got else " (no runs yet)"))
    st.markdown("\n".join(lines))


def measured_text(rk: retrieval.SourceRanking, measure: str, source: str) -> str:
    """ "+0.032 [+0.010, +0.055]", "0.91 [0.86, 0.97]" for a ratio, with ≈ when the interval covers no change."""
    value, ci = rk.measured[measure][source], rk.measured_ci.get(measure, {}).get(source)
    relative = science.MEASURES.get(measure).relative
    text = stats_view.fmt_value(value, *(ci or (None, None)), signed=not relative)
    no_change = 1.0 if relative else 0.0
    return f"{text} ≈" if ci and ci[0] <= no_change <= ci[1] else text


def main() -> None:
    ui.setup("Transfer")
    st.title("Transfer")
    st.caption(" ".join(f"**{m.label}**: {m.help}." for m in METHODS))
    bb, length = ui.backbone(), ui.prompt_length()
    with ui.guard():
        launch_form(bb, length)
    ids = current_batch()
    if ids:
        with ui.guard():
            show_batch(ids, bb, length)
    with ui.guard():
        ranking(bb, length)


main()
