"""Clusters: 2-D maps of the stored prompts (UMAP, PCA or t-SNE, seeded),
one point per prompt or per prompt token, coloured by task family. The
prompt kinds offered are the methods of the prompts in the store, named by
the `METHODS` registry."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from panda_app import bundle_view, figures, ui
from panda_core.indicators.clusters import Layout
from panda_core.transfer import METHODS

LABELS = {"umap": "UMAP", "pca": "PCA", "tsne": "t-SNE"}  # display names of the `Layout` values
LAYOUTS = {m.value: LABELS.get(m.value, m.value) for m in Layout}
MODES = {"prompt": "each prompt is a point", "token": "each prompt token is a point"}


@st.cache_data(max_entries=32, show_spinner=False)
def points(bb: str, tasks: tuple[str, ...], length: int, mode: str, method: str, seed: int,
           methods: tuple[str, ...], fp: tuple, prompt_type: str = "input"):
    from panda_core.indicators.clusters import prompt_points

    return prompt_points(bb, list(tasks), length, mode=mode, method=method, seed=seed, methods=methods,
                         prompt_type=prompt_type)


@st.fragment(run_every=1.0)
def wait_for_umap() -> None:
    """Polls the background UMAP warm-up; reruns the page once it is ready."""
    if ui.umap_ready():
        st.rerun()
    st.caption("⏳ UMAP is compiling in the background (first use after start-up, about 20 s)…")


def kind_label(kind: str) -> str:
    """A stored prompt's method, with the transfer method's label when one stored it."""
    by_prompt = {m.prompt_method: m.label for m in METHODS if m.saves_prompt}
    return f"{kind} ({by_prompt[kind]})" if kind in by_prompt else kind


def figure(df, mode: str, method: str):
    hover = {"x": False, "y": False, "prompt_id": True, "method": True, "seed": True,
             "token": mode == "token", "family": True, "origin": True}
    fig = px.scatter(df, x="x", y="y", color="family", symbol="task", hover_name="task", hover_data=hover,
                     color_discrete_map=figures.family_colors(list(df["family"])),
                     title=f"{LAYOUTS[method]} of {ui.backbone()} prompts ({MODES[mode]})")
    fig.update_traces(marker=dict(size=13 if mode == "prompt" else 7, opacity=0.85, line=dict(width=0.5)))
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=60, b=10), legend_title_text="family, task",
                      xaxis_title=f"{LAYOUTS[method]} 1", yaxis_title=f"{LAYOUTS[method]} 2")
    return fig


def main() -> None:
    ui.setup("Clusters")
    st.title("Clusters")
    st.caption("Prompts of related tasks should sit together (Su et al.). Layouts are seeded: the same prompts "
               "and seed give the same picture.")
    with ui.guard():
        bb, length = ui.backbone(), ui.prompt_length()
        have = ui.tasks_ready(1)
        if have is None:
            return
        tasks = st.multiselect("Tasks", have, default=have, key="clu_tasks")
        c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
        method = c1.radio("Layout", list(LAYOUTS), format_func=LAYOUTS.get, horizontal=True, key="clu_method")
        mode = c2.radio("Points", list(MODES), format_func=lambda m: MODES[m], key="clu_mode")
        seed = int(c3.number_input("Seed", 0, 10_000, 0, key="clu_seed"))
        kinds = c4.multiselect("Prompt kinds", ui.prompt_kinds(bb), default=[ui.TASK_PROMPT], key="clu_kinds",
                               format_func=kind_label, help=f"{ui.TASK_PROMPT}: each task's own trained prompt; "
                               "the others come from transfer methods, imports and projections.")
        if not tasks or not kinds:
            st.warning("Select at least one task and one prompt kind.")
            return
        shown = method
        kind = ui.active_prompt_type()
        df = bundle_view.bundled_points(bb, tasks, length, mode, method, seed, kinds, kind)
        if df is None and method == "umap" and ui.umap_warming():
            shown = "pca"
            st.info("UMAP's first run compiles code (about 20 s); it is warming up in the background. "
                    "Showing PCA meanwhile; the UMAP map replaces it by itself.")
            wait_for_umap()
            df = bundle_view.bundled_points(bb, tasks, length, mode, shown, seed, kinds, kind)
        if df is None:
            with st.spinner(f"Computing the {LAYOUTS[shown]} layout…"):
                df = points(bb, tuple(tasks), length, mode, shown, seed, tuple(kinds), ui.fingerprint(bb), kind)
            origin = "computed"
        else:
            origin = "bundled"
        fig = figure(df, mode, shown)
        figures.plot(fig, key="clu_fig")
        figures.figure_downloads(fig, f"{bb}-{shown}-{mode}", csv=df.to_csv(index=False), key="clu",
                            csv_label="Points (CSV)")
        n_prompts = df["prompt_id"].nunique()
        st.caption(f"{n_prompts} {ui.active_prompt_type()} prompts, {len(df)} points. Hover a point for "
                   "its task and prompt id.")
        per_prompt = df.drop_duplicates("prompt_id")["origin"].tolist()
        st.caption(bundle_view.origin_caption(per_prompt))
        bundle_view.values_note([origin], "clu", f"{LAYOUTS[shown]} coordinates")


main()
