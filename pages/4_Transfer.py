"""Transfer: run zero-shot, PT, vanilla PoT, PANDA and model tuning from
chosen sources to a target as background jobs, watch their dev curves live,
compare the results, and rank candidate sources by every indicator."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from pages.common import ui  # noqa: E402
from panda_core.validation import steps_to_reach  # noqa: E402

METHODS = ["zero-shot", "pt", "pot", "panda", "model-tuning"]
EMBEDDING = ["e_concat", "e_avg", "c_concat", "c_avg", "spot"]
MODEL_BASED = ["on", "panda"]


# ------------------------------------------------------------------ launching
def launch_form(bb: str, length: int) -> None:
    from panda_core import jobs

    tasks = ui.available_tasks()
    have = ui.tasks_with_prompts(bb, length)
    if not have:
        st.info(f"No trained {length}-token prompts on {bb} yet: transfers need source prompts. Train them from "
                "the Home page (**Train missing prompts**).")
        st.page_link("app.py", label="Go to Home", icon="🏠")
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
    methods = st.multiselect("Methods", METHODS, default=["pt", "pot", "panda"], key="tr_methods",
                             format_func=ui.METHOD_LABELS.get,
                             help="PT trains the target from scratch (the baseline, no source). PANDA first "
                                  "runs (or reuses) vanilla PoT as its teacher.")
    c3, c4, c5, c6 = st.columns(4)
    steps = int(c3.number_input("Training steps", 1, 10000, 100, step=10, key="tr_steps"))
    eval_every = int(c4.number_input("Dev eval every", 1, 1000, 20, step=5, key="tr_eval_every"))
    dev_limit = int(c5.number_input("Dev examples", 20, 5000, 200, step=20, key="tr_dev_limit"))
    test_limit = int(c6.number_input("Test examples (0 = all)", 0, 100000, 0, step=100, key="tr_test_limit"))
    with st.expander("PANDA options"):
        p1, p2, p3, p4 = st.columns(4)
        lambda_max = p1.number_input("λ max", 0.0, 100.0, 1.0, step=0.1, key="tr_lambda_max",
                                     help="λ(s,t) = λ_max · clip(T(s,t), 0, 1), T = PANDA's metric.")
        kd_form = p2.selectbox("λ form", ["scaled", "code"], key="tr_kd_form",
                               help="code: the released code's 0.1 · T / batch size")
        teacher = p3.selectbox("Teacher", ["pot", "source"], key="tr_teacher",
                               help="pot: the vanilla-PoT prompt trained on the target (released code).")
        student_init = p4.selectbox("Student init", ["source", "random"], key="tr_student_init")
    problems = []
    if any(m != "pt" for m in methods) and not sources:
        problems.append("Choose at least one source (only PT runs without one).")
    if "panda" in methods and target not in have:
        problems.append(f"PANDA needs the target's own PT prompt ({target} has none): train it on the Prompts page.")
    for p in problems:
        st.warning(p)
    run = st.button("Run", type="primary", icon="▶️", key="tr_run", disabled=bool(problems) or not methods)
    if run:
        train = {"steps": steps, "eval_every": eval_every, "dev_limit": dev_limit,
                 "test_limit": test_limit or None, "prompt_length": length}
        extra = {"lambda_max": float(lambda_max), "kd_form": kd_form, "teacher": teacher,
                 "student_init": student_init}
        ids = []
        for method in methods:
            for source in ([None] if method == "pt" else sources):
                cfg = {"train": train} | (extra if method == "panda" else {})
                ids.append(ui.call(jobs.submit, "transfer", {"source": source, "target": target, "method": method,
                                                             "backbone": bb, "config": cfg}))
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
def predicted(metric: str, bb: str, sources: list[str], target: str, length: int) -> dict[str, float]:
    have = set(ui.tasks_with_prompts(bb, length))
    tasks = [s for s in dict.fromkeys(sources) if s in have and s != target]
    if target not in have or not tasks:
        return {}
    table = ui.similarity_table(metric, bb, tasks + [target], length)
    j = table["tasks"].index(target)
    return {s: table["matrix"][table["tasks"].index(s)][j] for s in tasks}


def results_table(runs: list[dict], bb: str, length: int, metric: str) -> pd.DataFrame:
    from panda_core import store

    done = [r for r in runs if r["status"] == "done" and r.get("result")]
    targets = {r["target"] for r in runs}
    target = next(iter(targets)) if len(targets) == 1 else None
    # the PT reference: the PT run of this batch, else the target's stored PT prompt
    pt_run = next((r for r in done if r["method"] == "pt"), None)
    pt_dev = pt_test = None
    if pt_run:
        pt_curve = store.curve(pt_run["id"]) or [tuple(p) for p in pt_run["result"].get("dev_curve") or []]
        pt_dev = max((acc for _, acc in pt_curve), default=pt_run["result"].get("dev_acc"))
        pt_test = pt_run["result"].get("test_acc")
    elif target:
        rows = [p for p in store.list_prompts(backbone=bb, task=target, method="pt") if p["length"] == length]
        if rows:
            pt_dev, pt_test = rows[-1]["scores"].get("dev_acc"), rows[-1]["scores"].get("test_acc")
    pred = predicted(metric, bb, [r["source"] for r in runs if r.get("source")], target, length) if target else {}
    out = []
    for r in runs:
        res = r.get("result") or {}
        curve = store.curve(r["id"]) or [tuple(p) for p in res.get("dev_curve") or []]
        reach = steps_to_reach(curve, pt_dev) if r["method"] not in ("zero-shot", "pt") else None
        secs = res.get("seconds")
        n_steps = res.get("steps")
        out.append({
            "method": ui.METHOD_LABELS.get(r["method"], r["method"]), "source": r.get("source") or "—",
            "target": r["target"], "status": f"{ui.STATUS_ICON.get(r['status'], '')} {r['status']}",
            f"predicted T ({metric})": pred.get(r.get("source")),
            "PANDA λ": res.get("kd_weight"),
            "test acc": res.get("test_acc"), "best dev acc": res.get("dev_acc"),
            "Δ test vs PT": (res["test_acc"] - pt_test) if res.get("test_acc") is not None and pt_test else None,
            "steps to PT dev": reach,
            "≈ s to PT dev": round(secs * reach / n_steps, 1) if reach is not None and secs and n_steps else None,
            "seconds": secs, "reused": "yes" if res.get("reused_from") else "",
            "run": r["id"],
        })
    df = pd.DataFrame(out)
    if pt_dev is not None:
        st.caption(f"PT reference on the target: best dev {pt_dev:.3f}, test {pt_test:.3f} "
                   f"({'this batch' if pt_run else 'stored PT prompt'}). 'steps to PT dev' = first evaluation "
                   "at which the transfer's dev accuracy reaches it (empty: not reached within the budget).")
    return df


def show_batch(ids: list[str], bb: str, length: int) -> None:
    metric = st.session_state.get("tr_pred_metric", "panda")

    def render(runs: list[dict]) -> None:
        for r in runs:
            ui.show_progress(r)
        ui.cancel_buttons(runs, "transfer")
        fig = ui.curves_figure(runs, "Dev accuracy of every run (live)",
                               name=lambda r: f"{ui.METHOD_LABELS.get(r['method'], r['method'])}"
                                              f"{' from ' + r['source'] if r.get('source') else ''}")
        ui.plot(fig, key="tr_curves")
        if any(r["status"] == "done" for r in runs):
            with ui.guard():
                df = results_table(runs, bb, length, metric)
                st.dataframe(df, hide_index=True, key="tr_results",
                             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in df.columns
                                            if c.startswith(("predicted", "test", "best", "Δ", "PANDA"))})
                st.download_button("Results (CSV)", df.to_csv(index=False), "transfer-results.csv", "text/csv",
                                   key="tr_results_csv", icon="⬇️")

    st.subheader("Runs")
    st.selectbox("Predicted transferability in the table by", EMBEDDING + MODEL_BASED,
                 index=(EMBEDDING + MODEL_BASED).index(metric), key="tr_pred_metric",
                 format_func=lambda m: f"{m}: {ui.metric_labels().get(m, m)}")
    ui.live_runs(ids, render, "transfer")


# ------------------------------------------------------------------ ranking
def ranking(bb: str, length: int) -> None:
    from panda_core.validation import measured_matrix

    st.subheader("Which source for this target?")
    st.caption("SPoT-style source retrieval: rank the candidate sources by each indicator (1 = predicted best), "
               "next to what transfer actually gave where runs exist (zero-shot: accuracy relative to the "
               "target's PT; PoT / PANDA: test accuracy minus PT).")
    have = ui.tasks_with_prompts(bb, length)
    target = st.session_state.get("tr_target")
    if target not in have or len(have) < 3:
        st.info("Ranking needs a target with a trained prompt and at least two candidate sources.")
        return
    model_based = st.checkbox("Include ON and PANDA (run the backbone; slower)", value=False, key="tr_rank_model")
    metrics = EMBEDDING + (MODEL_BASED if model_based else [])
    tasks = have
    j = None
    scores = {}
    with st.spinner("Computing indicators…"):
        for m in metrics:
            table = ui.similarity_table(m, bb, tasks, length)
            j = table["tasks"].index(target)
            scores[m] = {s: table["matrix"][i][j] for i, s in enumerate(table["tasks"])}
        order = table["tasks"]
    sources = [s for s in order if s != target]
    df = pd.DataFrame(index=sources)
    df.index.name = "source"
    df["family"] = [ui.task_family(s) for s in sources]
    for m in metrics:
        col = pd.Series({s: scores[m][s] for s in sources})
        df[f"rank {m}"] = col.rank(ascending=False, method="min").astype(int)
    for measure in ("zero-shot", "pot-gain", "panda-gain"):
        M = measured_matrix(bb, order, measure)
        jj = order.index(target)
        df[measure] = [None if np.isnan(M[order.index(s), jj]) else round(float(M[order.index(s), jj]), 4)
                       for s in sources]
    df = df.sort_values(f"rank {metrics[0]}")
    st.dataframe(df, key="tr_ranking")
    best = {m: min(sources, key=lambda s, m=m: -scores[m][s]) for m in metrics}
    lines = []
    for m, s in best.items():
        got = df.loc[s, ["zero-shot", "pot-gain", "panda-gain"]].dropna()
        measured = ", ".join(f"{k} {v:+.3f}" if k != "zero-shot" else f"{k} {v:.3f}" for k, v in got.items())
        lines.append(f"- **{m}** picks **{s}**" + (f" (measured: {measured})" if measured else " (no runs yet)"))
    st.markdown("\n".join(lines))


def main() -> None:
    ui.setup("Transfer")
    st.title("Transfer")
    st.caption("Zero-shot: the source prompt as is. PT: the target from scratch. Vanilla PoT: start from the "
               "source prompt. PANDA: PoT plus distillation from a PoT teacher, weighted by the predicted "
               "transferability. Model tuning: every backbone weight trained (reference).")
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
