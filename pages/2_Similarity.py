"""Similarity: heatmaps of the transferability indicators between the prompts
of the selected tasks (rows = source, columns = target), grouped by family.
The indicators, their labels and their options come from the `INDICATORS`
registry: a newly registered indicator appears here with no edit."""

from __future__ import annotations

import numpy as np
import streamlit as st

from panda_app import bundle_view, figures, ui
from panda_core.indicators import INDICATORS

MODES = ["One indicator", "Two side by side", "Difference (A − B)", "Every indicator"]


def table_for(metric: str, tasks: list[str], options: dict) -> dict:
    indicator = INDICATORS.get(metric)
    args = (metric, ui.backbone(), tasks, ui.prompt_length(), options)
    if indicator.needs_backbone:
        with st.spinner(f"Running the backbone for {indicator.label}…"):
            return ui.similarity_table(*args)
    return ui.similarity_table(*args)


def show(table: dict, key: str, title: str, z=None, diverging: bool = False) -> None:
    fig = figures.heatmap(table, z=z, title=title, diverging=diverging)
    figures.plot(fig, key=f"sim_fig_{key}")
    figures.figure_downloads(fig, f"{ui.backbone()}-{key}", csv=figures.matrix_csv(table, z), key=key)


def every_indicator(tasks: list[str]) -> list[dict]:
    tables = [table_for(m, tasks, {}) for m in INDICATORS.names()]
    fig = figures.heatmap_grid(tables)
    figures.plot(fig, key="sim_fig_grid")
    figures.figure_downloads(fig, f"{ui.backbone()}-all-indicators", csv=figures.tables_csv(tables), key="grid",
                             csv_label="All matrices (CSV)")
    return tables


def provenance(tables: list[dict]) -> None:
    """Which prompts the matrices are over (the zoo's or the user's own), and whether
    their values are bundled with the tool or computed here."""
    prompts, values = bundle_view.table_origins(tables)
    st.caption(bundle_view.origin_caption(prompts))
    bundle_view.values_note(values, "sim", "Matrices")


def main() -> None:
    ui.setup("Similarity")
    st.title("Similarity")
    st.caption("Predicted transferability between the prompts of the selected tasks: entry (source, target). "
               "Embedding indicators compare the prompt tensors; model indicators run the frozen backbone "
               "(ON compares which FFN neurons each prompt activates; PANDA compares how each prompt makes "
               "the model see the target's inputs).")
    with ui.guard():
        have = ui.tasks_ready(2)
        if have is None:
            return
        names = INDICATORS.names()
        first_model = next((i.name for i in INDICATORS if i.needs_backbone), names[0])
        tasks = st.multiselect("Tasks (ordered by family)", have, default=have, key="sim_tasks")
        c1, c2, c3 = st.columns([2, 2, 2])
        mode = c1.radio("View", MODES, key="sim_mode")
        chosen = []
        if mode == MODES[3]:
            slow = ", ".join(i.name for i in INDICATORS if i.needs_backbone)
            c2.caption(f"Every indicator, each on its own colour scale. {slow} run the backbone.")
        else:
            chosen.append(c2.selectbox("Indicator A", names, index=ui.preferred(names, first_model),
                                       key="sim_metric_a", format_func=ui.indicator_label))
        if mode in (MODES[1], MODES[2]):
            chosen.append(c3.selectbox("Indicator B", names, index=ui.preferred(names, "c_avg"),
                                       key="sim_metric_b", format_func=ui.indicator_label))
        options = {}
        if ui.has_options(chosen):
            with st.expander("Indicator options", expanded=True):
                options = ui.indicator_options(chosen, "sim")
        if len(tasks) < 2:
            st.warning("Select at least 2 tasks.")
            return
        if mode == MODES[3]:
            provenance(every_indicator(tasks))
            return
        a = table_for(chosen[0], tasks, options)
        shown = [a]
        if mode == MODES[0]:
            show(a, chosen[0], ui.indicator_label(chosen[0]))
        else:
            metric_a, metric_b = chosen
            b = table_for(metric_b, tasks, options)
            shown.append(b)
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
        provenance(shown)
        with st.expander("Prompts used"):
            origins = a.get("prompt_origins") or ["user"] * len(a["tasks"])
            st.write({t: f"{p} ({'zoo' if o == 'zoo' else 'yours'})"
                      for t, p, o in zip(a["tasks"], a["prompt_ids"], origins, strict=True)})


main()
