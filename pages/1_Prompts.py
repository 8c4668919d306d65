"""Prompts: train a prompt per task in the background (live progress and dev
curve), import a prompt file or a task file, download stored prompts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from panda_app import figures, jobs_view, stats_view, ui
from panda_core import ops
from panda_core.prompts import PROMPT_TYPES


def train_section() -> None:
    bb, length = ui.backbone(), ui.prompt_length()
    st.subheader("Train a prompt")
    tasks = ui.available_tasks()
    if not tasks:
        st.warning("No task data in the cache yet: run `make setup`.")
        return
    have = set(ui.tasks_with_prompts(bb, length))
    with st.form("prompts_train_form"):
        c1, c2, c3, c4 = st.columns(4)
        task = c1.selectbox("Task", tasks, key="prompts_task",
                            format_func=lambda t: f"{t} ({ui.task_family(t)})" + (" ✓" if t in have else ""))
        steps = c2.number_input("Steps", 10, 10000, 200, step=10, key="prompts_steps")
        eval_every = c3.number_input("Dev eval every", 5, 1000, 25, step=5, key="prompts_eval_every")
        seed = c4.number_input("Seed", 0, 10_000, 0, key="prompts_seed")
        c5, c6, c7 = st.columns(3)
        lr = c5.number_input("Learning rate (0 = backbone default)", 0.0, 1.0, 0.0, step=0.005, format="%.4f",
                             key="prompts_lr")
        dev_limit = c6.number_input("Dev examples per eval", 20, 5000, 300, step=20, key="prompts_dev_limit")
        c7.markdown(f"Backbone **{bb}**, {length} prompt tokens")
        kind = st.selectbox("Prompt type", PROMPT_TYPES.names(), key="prompts_type",
                            format_func=lambda name: PROMPT_TYPES.get(name).label)
        go = st.form_submit_button("Train", type="primary", icon="🚀")
    if go:
        cfg = {"steps": int(steps), "eval_every": int(eval_every), "seed": int(seed), "prompt_length": length,
               "lr": float(lr) or None, "dev_limit": int(dev_limit)}
        if kind != "input":  # an input-level run keeps the config (and key) it always had
            cfg["prompt_type"] = kind
        run_id = ui.call(ops.submit, "train", {"task": task, "backbone": bb, "config": cfg})
        st.session_state.setdefault("prompts_runs", []).insert(0, run_id)
        st.toast(f"Training {task} in the background ({run_id})")
    runs = st.session_state.get("prompts_runs", [])[:6]
    runs += [r["id"] for r in jobs_view.active_runs("train", bb) if r["id"] not in runs][:6]
    jobs_view.batch_panel(runs, "prompts", lambda rows: figures.plot(
        jobs_view.curves_figure(rows, "Dev accuracy while training"), key="prompts_curves"))


def stored_section() -> None:
    bb, length = ui.backbone(), ui.prompt_length()
    st.subheader(f"Stored prompts on {bb}")
    rows = ui.prompt_rows(bb, method=None)
    if not rows:
        st.info("No prompts on this backbone yet. Train one above, or train them all from the Home page.")
        return
    rows = list(reversed(rows))
    dev_sizes = {t["name"]: t.get("n_dev") for t in ui.task_rows()}
    accs = ops.prompt_accuracies(rows, dev_sizes)
    table = pd.DataFrame([{
        "task": r["task"], "family": ui.task_family(r["task"]), "method": r["method"],
        "type": r.get("prompt_type", "input"), "tokens": r["length"], "seed": r["seed"],
        "test acc [95% CI]": stats_view.fmt_acc(a["test"]), "test items": a["test"]["n"],
        "dev acc [95% CI]": stats_view.fmt_acc(a["dev"]), "untrained test acc [95% CI]": stats_view.fmt_acc(a["untrained"]),
        "origin": r.get("origin"), "created": ui.ago(r["created"]), "id": r["id"],
    } for r, a in zip(rows, accs, strict=True)])
    st.dataframe(table, hide_index=True, key="prompts_table")
    st.caption(f"Pages use the newest input-level `pt` prompt of {length} tokens per task (a deep prompt is "
               "only compared, transferred or projected with deep prompts). Intervals are Wilson 95% intervals "
               "over the items scored (the best-dev accuracy leans optimistic: it was chosen on those items). "
               "'untrained test acc' is the score of the initial prompt before training (zero-shot scoring "
               "through label embeddings).")
    c1, c2, c3 = st.columns([3, 1, 1])
    pid = c1.selectbox("Download a prompt", [r["id"] for r in rows], key="prompts_download_id")
    if pid:
        c2.download_button("safetensors", lambda: ui.prompt_download(pid, "safetensors"),
                           file_name=f"{pid}.safetensors", mime="application/octet-stream",
                           key="prompts_dl_st", icon="⬇️")
        c3.download_button("PEFT adapter (zip)", lambda: ui.prompt_download(pid, "peft"),
                           file_name=f"{pid}-peft.zip", mime="application/zip", key="prompts_dl_peft", icon="⬇️",
                           help="adapter_config.json + adapter_model.safetensors: loads with "
                                "peft.PeftModel.from_pretrained on the same base model.")


UPLOAD_TYPES = ["safetensors", "json", "npy", "pt", "pth", "bin", "zip"]
_SESSION_BB, _FROM_FILE, _OTHER_BB = "session", "file", "other"


def _import_target(folder: Path) -> Path | None:
    """What to import from the uploaded files: a PEFT adapter (its two files),
    one prompt file, or (several files) the folder of them."""
    files = sorted(folder.iterdir())
    if any(f.name == "adapter_config.json" for f in files) or len(files) > 1:
        return folder
    return files[0] if files else None


def import_prompt_section() -> None:
    bb = ui.backbone()
    st.markdown(
        "**Import prompts**: a `.safetensors` prompt exported by this app; the two files of a PEFT "
        "prompt-tuning or prefix-tuning adapter (`adapter_config.json` + `adapter_model.safetensors`); a numpy "
        "`.npy` array (n x d); a torch `.pt`/`.bin` file holding one tensor, such as the `task_prompt` files "
        "of Prompt-Transferability (rename `IMDBPromptRoberta/task_prompt` to `IMDBPromptRoberta.pt` and the "
        "task and backbone are read from the name); or a `.zip` of many, named that way or listed in a "
        "`manifest.json`/`manifest.csv` (file, task, backbone). Files are checked before anything is stored "
        "(64 MB per file, 512 MB per zip; nothing is unpickled): one bad file refuses the whole upload.")
    files = st.file_uploader("Prompt file(s)", type=UPLOAD_TYPES, accept_multiple_files=True, key="prompts_upload")
    c1, c2 = st.columns(2)
    task = c1.selectbox("Task it was trained on (when the file does not say)", ["(from the file)"] +
                        ui.available_tasks(), key="prompts_upload_task")
    choices = {_SESSION_BB: f"{bb} (this session's backbone)",
               _FROM_FILE: "from the file, its name or the manifest",
               _OTHER_BB: "another backbone id (e.g. roberta-base)"}
    which = c2.selectbox("Backbone of the prompts", list(choices), format_func=choices.get,
                         key="prompts_upload_bb_choice")
    other = c2.text_input("Backbone id", "roberta-base", key="prompts_upload_bb",
                          disabled=which != _OTHER_BB,
                          help="A backbone that is not installed is stored without loading it: the embedding "
                               "indicators and clusters work on its prompts; transfers and model indicators need it.")
    backbone = {_SESSION_BB: bb, _FROM_FILE: None, _OTHER_BB: other.strip() or None}[which]
    if st.button("Import", key="prompts_import", disabled=not files):
        with ui.uploaded_files(files) as folder:
            target = _import_target(folder)
            if target is None:
                st.error("Upload a prompt file, the two files of a PEFT adapter, or a .zip of prompts.")
                return
            out = ui.call(ops.import_prompt, target, backbone=backbone,
                          task=None if task.startswith("(") else task)
        for row in out.get("prompts", [out]):
            where = "" if row["installed"] else " (backbone not installed: embedding indicators and clusters only)"
            st.success(f"Imported {row['prompt_id']} ({row['task']}, {row['backbone']}, {row['length']} tokens, "
                       f"method {row['method']}){where}")
        if out.get("skipped"):
            st.caption(f"Skipped (not prompt files): {', '.join(out['skipped'][:10])}")


def import_task_section() -> None:
    from panda_core.data import add_user_task

    st.markdown("**Add a task from a file** (CSV, JSONL or parquet with a text and a label column; split "
                "80/10/10 with a fixed seed).")
    f = st.file_uploader("Task file", type=["csv", "jsonl", "json", "parquet", "tsv"], key="tasks_upload")
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("Task name", key="tasks_upload_name", placeholder="my_task")
    text_col = c2.text_input("Text column", "text", key="tasks_upload_text")
    label_col = c3.text_input("Label column", "label", key="tasks_upload_label")
    c4, c5 = st.columns(2)
    text_b = c4.text_input("Second text column (pairs; optional)", "", key="tasks_upload_text_b")
    label_names = c5.text_input("Label names in id order (optional, comma-separated)", "", key="tasks_upload_labels")
    if st.button("Add task", key="tasks_add", disabled=f is None or not name):
        with ui.uploaded_files([f]) as folder:
            out = ui.call(add_user_task, name.strip(), folder / Path(f.name).name, text_col=text_col.strip(),
                          label_col=label_col.strip(), text_b_col=text_b.strip() or None,
                          label_names=[x.strip() for x in label_names.split(",") if x.strip()] or None)
        ui.task_rows.clear()
        st.success(f"Added task {out['name']}: {out['n_train']} train / {out['n_dev']} dev / {out['n_test']} test, "
                   f"labels {', '.join(map(str, out['labels']))}. Train its prompt above.")


def main() -> None:
    ui.setup("Prompts")
    st.title("Prompts")
    st.caption("A soft prompt is the only trained parameter: the backbone stays frozen. Training runs as a "
               "background job; the page stays usable and the job survives a reload (see Runs).")
    with ui.guard():
        train_section()
    with ui.guard():
        stored_section()
    st.divider()
    c1, c2 = st.columns(2)
    with c1, ui.guard():
        import_prompt_section()
    with c2, ui.guard():
        import_task_section()


main()
