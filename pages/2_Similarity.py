"""Similarity: heatmaps of the transferability indicators between the prompts
of the selected tasks (rows = source, columns = target), grouped by family."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402

from pages.common import ui  # noqa: E402

METRICS = ["e_concat", "e_avg", "c_concat", "c_avg", "spot", "on", "panda"]
MODES = ["One indicator", "Two side by side", "Difference (A − B)", "Every indicator"]


def layer_window(key: str) -> tuple[int, int] | None:
    """ON reads every layer, or a window [start, end) of layers."""
    info = next((r for r in ui.backbone_rows() if r["name"] == ui.backbone()), None)
    n_layers = (info or {}).get("num_layers")
    if not n_layers:
        from panda_core.backbones import get_backbone

        n_layers = ui.call(get_backbone, ui.backbone()).num_layers
    which = st.radio("ON layers", ["all layers", "a window of layers"], horizontal=True, key=f"{key}_which")
    if which == "all layers":
        return None
    lo, hi = st.slider("Layer window (first, last)", 1, int(n_layers), (1, int(n_layers)), key=f"{key}_window",
                       help="Layers are numbered from 1 (closest to the input).")
    return lo - 1, hi


def table_for(metric: str, tasks: list[str], layers, n_inputs: int) -> dict:
    msg = {"on": "Running the backbone once per prompt (ON)…",
           "panda": "Computing PANDA task embeddings (backbone forward passes)…"}.get(metric)
    if msg:
        with st.spinner(msg):
            return ui.similarity_table(metric, ui.backbone(), tasks, ui.prompt_length(),
                                       layers if metric == "on" else None, n_inputs)
    return ui.similarity_table(metric, ui.backbone(), tasks, ui.prompt_length(), None, n_inputs)


def show(table: dict, key: str, title: str, z=None, diverging: bool = False) -> None:
    fig = ui.heatmap(table, z=z, title=title, diverging=diverging)
    ui.plot(fig, key=f"sim_fig_{key}")
    ui.figure_downloads(fig, f"{ui.backbone()}-{key}", csv=ui.matrix_csv(table, z), key=key)


def main() -> None:
    ui.setup("Similarity")
    st.title("Similarity")
    st.caption("Predicted transferability between the prompts of the selected tasks: entry (source, target). "
               "Embedding indicators compare the prompt tensors; ON compares which FFN neurons each prompt "
               "activates; PANDA compares how each prompt makes the frozen model see the target's inputs.")
    with ui.guard():
        bb, length = ui.backbone(), ui.prompt_length()
        have = ui.tasks_with_prompts(bb, length)
        if len(have) < 2:
            st.info(f"Need trained {length}-token prompts for at least 2 tasks on {bb} (found {len(have)}). "
                    "Train them from the Home page (**Train missing prompts**) or the Prompts page.")
            st.page_link("app.py", label="Go to Home", icon="🏠")
            return
        labels = ui.metric_labels()
        tasks = st.multiselect("Tasks (ordered by family)", have, default=have, key="sim_tasks")
        c1, c2, c3 = st.columns([2, 2, 2])
        mode = c1.radio("View", MODES, key="sim_mode")
        metric_a = metric_b = None
        if mode == MODES[3]:
            c2.caption("Every indicator, each on its own colour scale. ON (all layers) and PANDA run the backbone.")
        else:
            metric_a = c2.selectbox("Indicator A", METRICS, index=METRICS.index("on"), key="sim_metric_a",
                                    format_func=lambda m: f"{m}: {labels.get(m, m)}")
        if mode in (MODES[1], MODES[2]):
            metric_b = c3.selectbox("Indicator B", METRICS, index=METRICS.index("c_avg"), key="sim_metric_b",
                                    format_func=lambda m: f"{m}: {labels.get(m, m)}")
        layers, n_inputs = None, 32
        if {"on", "panda"} & {metric_a, metric_b}:
            with st.expander("Indicator options", expanded=True):
                if "on" in (metric_a, metric_b):
                    layers = layer_window("sim")
                if "panda" in (metric_a, metric_b):
                    n_inputs = st.number_input("Target inputs for PANDA's task embeddings", 4, 256, 32, step=4,
                                               key="sim_n_inputs")
        if len(tasks) < 2:
            st.warning("Select at least 2 tasks.")
            return
        if mode == MODES[3]:
            tables = [table_for(m, tasks, None, 32) for m in METRICS]
            fig = ui.heatmap_grid(tables)
            ui.plot(fig, key="sim_fig_grid")
            ui.figure_downloads(fig, f"{ui.backbone()}-all-indicators", csv=ui.tables_csv(tables), key="grid",
                                csv_label="All matrices (CSV)")
            return
        a = table_for(metric_a, tasks, layers, int(n_inputs))
        if mode == MODES[0]:
            show(a, metric_a, f"{metric_a}: {labels.get(metric_a, '')}")
        else:
            b = table_for(metric_b, tasks, layers, int(n_inputs))
            if mode == MODES[1]:
                left, right = st.columns(2)
                with left:
                    show(a, metric_a, f"A · {metric_a}")
                with right:
                    show(b, metric_b, f"B · {metric_b}")
            else:
                diff = (np.array(a["matrix"]) - np.array(b["matrix"])).round(6).tolist()
                show(a, f"{metric_a}-minus-{metric_b}", f"{metric_a} − {metric_b}", z=diff, diverging=True)
                st.caption("Indicators live on different scales; the difference shows where they disagree "
                           "in relative terms only.")
        with st.expander("Prompts used"):
            st.write({t: p for t, p in zip(a["tasks"], a["prompt_ids"], strict=True)})


main()
