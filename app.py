"""Home: the active backbone, the cache (tasks, trained prompts, what is
missing), one-click training of the missing prompts, and a map of the pages.

Run with: streamlit run app.py
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from panda_app import jobs_view, stats_view, ui
from panda_core import ops
from panda_core.backbones import KINDS
from panda_core.indicators import INDICATORS
from panda_core.transfer import METHODS

PAGES = [
    ("pages/1_Prompts.py", "Prompts", "Train a prompt per task (live progress and dev curve), import a prompt or a "
     "task file, download prompts as safetensors or a PEFT adapter."),
    ("pages/2_Similarity.py", "Similarity", f"Heatmaps of every transferability indicator "
     f"({', '.join(INDICATORS.names())}) over the tasks, grouped by family; two side by side or their difference."),
    ("pages/3_Clusters.py", "Clusters", "UMAP / PCA / t-SNE maps of the prompts (one point per prompt or per "
     "token), coloured by task family."),
    ("pages/4_Transfer.py", "Transfer", f"Run {', '.join(METHODS.labels().values())} from chosen "
     "sources to a target in the background, with live dev curves, a results table and source ranking."),
    ("pages/5_Cross_model.py", "Cross model", "Train a projector between two backbones and score projected "
     "prompts against a random prompt."),
    ("pages/6_Metric_validation.py", "Metric validation", "Which indicator predicts measured transfer best: "
     "scatter plots and Spearman / Kendall per target and pooled."),
    ("pages/7_Runs.py", "Runs", "Every background job with its status; cancel running ones."),
]


def choose_backbone() -> None:
    st.subheader("Backbone")
    rows = ui.backbone_rows()
    names = [r["name"] for r in rows if r.get("available")]
    foreign = ui.foreign_backbones(names)
    other = "Other: a local folder or a hub id…"
    current = ui.backbone()
    options = names + foreign + [other]
    index = options.index(current) if current in options else len(options) - 1
    left, right = st.columns([2, 3])
    with left:
        choice = st.selectbox("Active backbone", options, index=index, key="home_backbone",
                              format_func=lambda o: f"{o} (imported prompts only)" if o in foreign else o,
                              help="Every page works on this backbone's prompts. Offline backbones come from "
                                   "PyPI packages; another model can be given as a folder or a hub id. "
                                   "Backbones that are not installed, with imported prompts, offer what needs "
                                   "only the prompt tensors: embedding indicators and clusters.")
        if choice != other and choice != current:
            st.session_state["backbone"] = choice
            lengths = {r["length"] for r in ui.prompt_rows(choice, method=None)}
            if len(lengths) == 1:  # e.g. published 100-token prompts: the pages should find them
                st.session_state["prompt_length"] = st.session_state["home_prompt_len"] = lengths.pop()
            st.session_state.pop("home_train_tasks", None)  # the training form's default: this backbone's missing
            st.rerun()
        if choice == other:
            custom = st.text_input("Folder with config.json, or a Hugging Face hub id", key="home_custom",
                                   value="" if current in names else current,
                                   placeholder="/path/to/model or org/model")
            if st.button("Use this backbone", key="home_use_custom") and custom.strip():
                from panda_core.backbones import get_backbone

                with st.spinner(f"Loading {custom}…"):
                    bb = ui.call(get_backbone, custom.strip())
                st.session_state["backbone"] = bb.name
                st.session_state["backbone_warning"] = bb.warning
                st.rerun()
        length = st.number_input("Prompt length (tokens)", min_value=1, max_value=200, step=1,
                                 value=ui.prompt_length(), key="home_prompt_len",
                                 help="Pages compare and transfer prompts of this length (PANDA's default: 20).")
        if int(length) != ui.prompt_length():
            st.session_state["prompt_length"] = int(length)
            st.rerun()
        from panda_core.prompts.types import PROMPT_TYPES

        types = PROMPT_TYPES.names()
        kind = st.selectbox("Prompt type", types, index=ui.preferred(types, ui.active_prompt_type()),
                            key="home_prompt_type", format_func=ui.prompt_type_label,
                            help="Pages compare, cluster and transfer prompts of this type. Deep prompts "
                                 "(P-tuning v2) are trained like input prompts, with `--prompt-type deep`.")
        if kind != ui.active_prompt_type():
            st.session_state["prompt_type"] = kind
            st.session_state.pop("home_train_tasks", None)  # the training form's default: this type's missing
            st.rerun()
    with right:
        from panda_core.backbones import default_device

        device = default_device()
        info = next((r for r in rows if r["name"] == ui.backbone()), None)
        c1, c2, c3 = st.columns(3)
        c1.metric("Backbone", ui.backbone() if len(ui.backbone()) < 24 else "…" + ui.backbone()[-22:])
        c2.metric("Device", "GPU (CUDA)" if device.type == "cuda" else "CPU")
        c3.metric("Hidden size", info["hidden_size"] if info else "?")
        if info:
            kind = KINDS.labels().get(info.get("kind"), info.get("kind"))
            st.caption(f"{info.get('description', '')} · {kind} · {info['num_layers']} layers · FFN {info['ffn_size']} · "
                       f"{info.get('license', '')}" + ("" if info.get("prepared", True)
                                                        else " · first load unpacks it once (can take a minute)"))
        elif ui.backbone() in foreign:
            st.info(f"**{ui.backbone()}** is not installed here: its imported prompts can be compared with the "
                    "embedding indicators and clustered; training, transfers, ON and the PANDA metric need the "
                    "backbone itself (PANDA_ALLOW_HUB=1 loads it from the hub).")
        elif st.session_state.get("backbone_warning"):
            st.warning(st.session_state["backbone_warning"])
        table = pd.DataFrame([{k: r.get(k) for k in ("name", "kind", "hidden_size", "num_layers", "ffn_size",
                                                      "available", "prepared")} for r in rows])
        st.dataframe(table, hide_index=True, key="home_backbones")


def cache_overview() -> list[str]:
    """Tasks in the cache and which have a trained prompt; returns the missing ones."""
    bb, length = ui.backbone(), ui.prompt_length()
    st.subheader("Tasks and trained prompts")
    tasks = ui.task_rows()
    latest = ui.latest_prompts(bb, length)
    rows, missing = [], []
    shown = [latest[t["name"]] for t in tasks if t["available"] and t["name"] in latest]
    accs = {p["id"]: a for p, a in zip(shown, ops.prompt_accuracies(shown), strict=True)}
    for t in tasks:
        if not t["available"]:
            continue
        p = latest.get(t["name"])
        if p is None:
            missing.append(t["name"])
        rows.append({"task": t["name"], "family": t["family"], "source": t["source"],
                     "labels": len(t["labels"]), "train": t.get("n_train"), "test": t.get("n_test"),
                     "prompt": "✅" if p else "missing",
                     "test acc [95% CI]": stats_view.fmt_acc(accs[p["id"]]["test"]) if p else "",
                     "origin": {"zoo": "zoo (shipped)", "user": "yours"}.get((p or {}).get("origin"), ""),
                     "prompt id": (p or {}).get("id")})
    unavailable = [t for t in tasks if not t["available"]]
    c1, c2, c3 = st.columns(3)
    c1.metric("Tasks ready", len(rows))
    c2.metric(f"Prompts on {bb if len(bb) < 16 else '…'}", len(rows) - len(missing))
    c3.metric("Missing prompts", len(missing))
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="home_tasks")
        zoo = sum(r["origin"].startswith("zoo") for r in rows)
        if zoo:
            st.caption(f"{zoo} of these prompts come from the zoo shipped with the tool (docs/zoo.md); a prompt "
                       "you train or import for a task always replaces the zoo's.")
    else:
        st.warning("No task data in the cache yet: run `make setup` (or `python -m panda_core data prepare`).")
    if unavailable:
        with st.expander(f"{len(unavailable)} tasks not available here"):
            st.dataframe(pd.DataFrame([{"task": t["name"], "family": t["family"], "source": t["source"],
                                        "why": t.get("reason", "")} for t in unavailable]), hide_index=True)
    return missing


def train_missing(missing: list[str]) -> None:
    from panda_core.backbones.foreign import installed

    bb, length = ui.backbone(), ui.prompt_length()
    st.subheader("Train the missing prompts")
    if not installed(bb) and bb in ui.foreign_backbones([]):
        st.caption(f"Training needs the backbone; {bb} is not installed here.")
        return
    if missing:
        if len(missing) == len(ui.available_tasks()):
            st.info("👋 **First time here?** No prompts are trained on this backbone yet. Every page needs them: "
                    "pick a budget and click **Train missing prompts** (one background job per task; you can "
                    "keep using the app meanwhile).")
        with st.form("home_train_form", border=False):
            chosen = st.multiselect("Tasks", missing, default=missing, key="home_train_tasks")
            c1, c2 = st.columns(2)
            steps = c1.number_input("Steps per task", 10, 5000, 200, step=10, key="home_train_steps",
                                    help="On MiniLM and 2 CPU cores a step takes about 0.4-1.5 s, longer for long texts.")
            eval_every = c2.number_input("Evaluate on dev every", 5, 1000, 50, step=5, key="home_train_eval")
            go = st.form_submit_button("Train missing prompts", type="primary", icon="🚀")
        eta = ui.call(ops.estimate_seconds, bb, chosen, int(steps))
        st.caption("Estimated time, one job after another: "
                   + (f"about {eta / 60:.0f} min, from the training runs recorded on {bb} here." if eta else
                      "unknown until the first run on this backbone finishes (MiniLM on 2 CPU cores: "
                      "about 2-6 min per task at 300 steps)."))
        if go and chosen:
            ids = []
            for task in chosen:
                cfg = {"steps": int(steps), "eval_every": int(eval_every), "prompt_length": length,
                       "prompt_type": ui.active_prompt_type()}
                ids.append(ui.call(ops.submit, "train", {"task": task, "backbone": bb, "config": cfg}))
            st.session_state["home_train_runs"] = ids
            st.toast(f"Started {len(ids)} training job(s)")
    else:
        st.success(f"Every available task has a {length}-token {ui.active_prompt_type()} prompt on {bb}. Explore the "
                   "pages in the sidebar.")
    batch = list(st.session_state.get("home_train_runs", []))
    for r in jobs_view.active_runs("train", bb):
        if r["id"] not in batch:
            batch.append(r["id"])
    if batch:
        def render(runs: list[dict]) -> None:
            done = sum(r["status"] == "done" for r in runs)
            frac = sum(1.0 if r["status"] not in jobs_view.ACTIVE else
                       ((r.get("progress") or {}).get("step", 0) / max(1, (r.get("progress") or {}).get("steps", 1)))
                       for r in runs) / len(runs)
            st.progress(min(frac, 1.0), text=f"Overall: {done}/{len(runs)} prompts trained")
            with st.expander("Each job", expanded=len(runs) <= 4):
                for r in runs:
                    jobs_view.show_progress(r)
            jobs_view.cancel_buttons(runs, "home")

        jobs_view.live_runs(batch, render, "home_train")


def page_map() -> None:
    st.subheader("What each page does")
    for path, label, what in PAGES:
        c1, c2 = st.columns([1, 4])
        c1.page_link(path, label=label)
        c2.caption(what)


def main() -> None:
    ui.setup("Home")
    st.title("🐼 Soft-prompt transferability explorer")
    st.caption("Train soft prompts on a frozen backbone, compare them with transferability indicators, and transfer "
               "them across tasks and across backbones. Long work runs in "
               "background jobs that survive a page reload.")
    with ui.guard():
        choose_backbone()
    with ui.guard():
        missing = cache_overview()
        train_missing(missing)
    page_map()


main()
