"""Cross model: train a projector from one backbone's prompt space to
another's (distance minimizing or task tuning) and score projected prompts
zero-shot on several tasks against a random prompt."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from panda_app import figures, jobs_view, stats_view, ui
from panda_core import ops, store

PROJ_METHODS = {"task": "Task tuning (train through the target backbone)",
                "distance": "Distance minimizing (match the target's own prompt)"}


def launch(length: int) -> None:
    names = [r["name"] for r in ui.backbone_rows() if r.get("available")]
    if ui.backbone() not in names:
        names.insert(0, ui.backbone())
    c1, c2, c3 = st.columns(3)
    src_bb = c1.selectbox("Source backbone", names, index=names.index(ui.backbone()), key="cm_source")
    others = [n for n in names if n != src_bb] or names
    tgt_bb = c2.selectbox("Target backbone", others, key="cm_target")
    method = c3.radio("Projector training", list(PROJ_METHODS), format_func=PROJ_METHODS.get, key="cm_method")
    src_have = ui.tasks_with_prompts(src_bb, length)
    tgt_have = set(ui.tasks_with_prompts(tgt_bb, length))
    if not src_have:
        st.info(f"No {length}-token prompts on {src_bb}: train them first (Home page with {src_bb} active).")
        return
    c4, c5 = st.columns([1, 2])
    train_task = c4.selectbox("Train the projector on", src_have, key="cm_train_task")
    eval_tasks = c5.multiselect("Evaluate projected prompts on", src_have, default=src_have[:4],
                                key="cm_eval_tasks", help="Each task's source prompt is projected and scored "
                                                          "zero-shot on the target backbone.")
    c6, c7 = st.columns(2)
    steps = int(c6.number_input("Projector steps", 1, 10000, 100, step=10, key="cm_steps"))
    test_limit = int(c7.number_input("Test examples per task (0 = all)", 0, 100000, 300, step=50, key="cm_test"))
    problems = []
    if method == "distance" and train_task not in tgt_have:
        problems.append(f"Distance minimizing needs a {train_task} prompt trained on {tgt_bb}; train it there "
                        "or choose task tuning.")
    if src_bb == tgt_bb:
        problems.append("Choose two different backbones.")
    for p in problems:
        st.warning(p)
    info = next((r for r in ui.backbone_rows() if r["name"] == tgt_bb), {})
    if info and not info.get("prepared", True):
        st.caption(f"{tgt_bb} is not unpacked yet: the job's first step prepares it once (a minute or more).")
    if st.button("Train projector", type="primary", icon="▶️", key="cm_run", disabled=bool(problems) or not eval_tasks):
        params = {"source_backbone": src_bb, "target_backbone": tgt_bb, "train_task": train_task, "method": method,
                  "eval_tasks": list(eval_tasks), "steps": steps, "prompt_length": length,
                  "test_limit": test_limit or None}
        run_id = ui.call(ops.submit, "project", params)
        st.session_state["cm_runs"] = [run_id] + st.session_state.get("cm_runs", [])[:4]
        st.toast(f"Projector training started ({run_id})")


ACC_COLUMNS = (("test_acc", "projected prompt"), ("random_prompt_acc", "random prompt"),
               ("target_pt_acc", "target's own PT prompt"))
DIFF_COLUMNS = (("projected_vs_random", "projected − random"), ("projected_vs_target_pt", "projected − own PT"))


def _acc(row: dict, key: str) -> str:
    ci = row.get(f"{key}_ci") or [None, None]
    return stats_view.fmt_acc({"acc": row.get(key), "low": ci[0], "high": ci[1]})


def result_table(results: list[dict]) -> tuple[pd.DataFrame, dict]:
    """One row per eval task: each accuracy with its 95% interval, and the paired
    differences with their verdicts (old runs without intervals show "—")."""
    rows, verdicts = [], {name: [] for _, name in DIFF_COLUMNS}
    for r in results:
        row = {"task": r["task"], "family": r.get("family"), "test items": r.get("n_test"),
               "majority class": r.get("majority_test_acc")}
        row |= {name: _acc(r, key) for key, name in ACC_COLUMNS}
        for key, name in DIFF_COLUMNS:
            d = r.get(key) or {}
            row[name] = stats_view.fmt_value(d.get("diff"), d.get("low"), d.get("high"), signed=True)
            verdicts[name].append(ops.verdict(d.get("low"), d.get("high")))
        rows.append(row)
    return pd.DataFrame(rows), verdicts


def _error_bars(df: pd.DataFrame, col: str) -> dict | None:
    """The 95% intervals of a bar series as plotly error bars (None for runs stored without them)."""
    if f"{col}_ci" not in df:
        return None
    below, above = [], []
    for ci, acc in zip(df[f"{col}_ci"], df[col], strict=True):
        ok = isinstance(ci, list) and len(ci) == 2 and acc == acc  # NaN: no value
        below.append(acc - ci[0] if ok else 0.0)
        above.append(ci[1] - acc if ok else 0.0)
    return dict(type="data", symmetric=False, array=above, arrayminus=below)


def result_view(run: dict) -> None:
    res = run["result"]
    df = pd.DataFrame(res["results"]).dropna(axis=1, how="all")
    st.markdown(f"**{res['source_backbone']} → {res['target_backbone']}**, {res['method']} projector trained on "
                f"**{res['train_task']}** ({res['steps']} steps, {res.get('seconds', '?')} s) · "
                f"`{res['projector_id']}`")
    table, verdicts = result_table(res["results"])
    st.table(stats_view.style_cells(table, verdicts))
    stats_view.legend()
    fig = go.Figure()
    for col, name in (("test_acc", "projected prompt"), ("random_prompt_acc", "random prompt"),
                      ("target_pt_acc", f"own PT prompt on {res['target_backbone']}")):
        if col in df and df[col].notna().any():
            fig.add_trace(go.Bar(x=df["task"], y=df[col], name=name, error_y=_error_bars(df, col),
                                 hovertemplate="%{x}<br>" + name + ": %{y:.4f}<extra></extra>"))
    fig.update_layout(barmode="group", yaxis_title="test accuracy", height=400, yaxis_range=[0, 1],
                      title="Zero-shot accuracy on the target backbone", margin=dict(l=10, r=10, t=50, b=10))
    figures.plot(fig, key=f"cm_fig_{run['id']}")
    flat = pd.json_normalize(res["results"])  # differences as "projected_vs_random.diff", ...
    figures.figure_downloads(fig, f"projector-{res['projector_id']}", csv=flat.to_csv(index=False),
                        key=f"cm_{run['id']}", csv_label="Table (CSV)")


def history() -> None:
    done = [r for r in store.list_runs(kind="project", status="done", limit=50) if r.get("result")]
    if not done:
        return
    st.subheader("Projector results")
    pick = st.selectbox("Run", [r["id"] for r in done], key="cm_pick",
                        format_func=lambda i: next(jobs_view.run_label(r) + f" · {ui.ago(r['updated'])}"
                                                   for r in done if r["id"] == i))
    result_view(next(r for r in done if r["id"] == pick))


def main() -> None:
    ui.setup("Cross model")
    st.title("Cross-model transfer")
    st.caption("A prompt only drives the backbone it was trained on. A projector (flatten → Linear → Tanh → "
               "Linear → LayerNorm) maps prompts of backbone A into backbone B's space (Su et al.); a projector "
               "trained on one task is evaluated on several.")
    length = ui.prompt_length()
    with ui.guard():
        launch(length)
    runs = list(st.session_state.get("cm_runs", []))
    runs += [r["id"] for r in jobs_view.active_runs("project") if r["id"] not in runs]
    with ui.guard():
        jobs_view.batch_panel(runs, "cm")
    with ui.guard():
        history()


main()
