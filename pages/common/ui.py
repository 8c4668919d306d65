"""Shared view helpers for the app's pages: page set-up and sidebar, the
active backbone, error display, cached calls into panda_core, live job
panels and figure downloads. No science here: numbers come from panda_core.

Streamlit does not list this folder as a page (it only lists top-level
scripts of `pages/`).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from panda_core import store
from panda_core.errors import PandaError

DEFAULT_BACKBONE = os.environ.get("PANDA_BACKBONE", "minilm")
ACTIVE = ("queued", "running")
STATUS_ICON = {"queued": "⏳", "running": "▶️", "done": "✅", "failed": "❌", "cancelled": "⏹️"}
METHOD_LABELS = {"zero-shot": "Zero-shot", "pt": "PT (from scratch)", "pot": "Vanilla PoT", "panda": "PANDA",
                 "model-tuning": "Model tuning"}
FAMILY_COLORS = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6"]
PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


# ----------------------------------------------------------------- page set-up
def setup(title: str, icon: str = "🐼") -> None:
    """First call of every page: page config, UMAP warm-up, sidebar status."""
    st.set_page_config(page_title=f"{title} · PANDA explorer", page_icon=icon, layout="wide")
    start_umap_warmup()
    _sidebar()


def backbone() -> str:
    """The backbone every page works on (chosen on Home; kept for the session)."""
    if "backbone" not in st.session_state:
        st.session_state["backbone"] = DEFAULT_BACKBONE
    return st.session_state["backbone"]


def prompt_length() -> int:
    if "prompt_length" not in st.session_state:
        st.session_state["prompt_length"] = 20
    return int(st.session_state["prompt_length"])


def _sidebar() -> None:
    with st.sidebar:
        st.caption("Active backbone")
        st.markdown(f"**{backbone()}** · prompts of {prompt_length()} tokens")
        try:
            running = store.list_runs(status="running", limit=50)
            queued = store.list_runs(status="queued", limit=50)
        except Exception:  # noqa: BLE001 -- the sidebar never breaks a page
            running, queued = [], []
        if running or queued:
            st.caption(f"Background jobs: {len(running)} running, {len(queued)} queued (see Runs)")
        st.caption("Change the backbone on the app (Home) page.")


@contextmanager
def guard() -> Iterator[None]:
    """Show panda_core errors as a readable message, never a traceback.
    Streamlit's own control flow (st.stop, st.rerun) passes through."""
    try:
        yield
    except PandaError as err:
        st.error(str(err))
    except Exception as err:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)  # the server log keeps the details
        line = (str(err) or type(err).__name__).splitlines()[0][:300]
        st.error(f"Something went wrong ({type(err).__name__}): {line}. The server log has the details.")


def call(fn: Callable, *args, **kwargs):
    """Run one panda_core call; on PandaError show it and stop the page here."""
    try:
        return fn(*args, **kwargs)
    except PandaError as err:
        st.error(str(err))
        st.stop()


# ---------------------------------------------------------------- UMAP warm-up
@st.cache_resource(show_spinner=False)
def _umap_warmer() -> dict:
    """Started once per server process: compiles UMAP's numba kernels in a
    background thread so the first UMAP plot does not look frozen."""
    state = {"done": threading.Event(), "error": None, "seconds": None}
    if os.environ.get("PANDA_WARM_UMAP", "1") == "0":
        return state

    def work() -> None:
        try:
            from panda_core.clusters import warm_umap

            state["seconds"] = warm_umap()
        except Exception as err:  # noqa: BLE001
            state["error"] = str(err)
        finally:
            state["done"].set()

    threading.Thread(target=work, name="umap-warmup", daemon=True).start()
    return state


def start_umap_warmup() -> dict:
    return _umap_warmer()


def umap_ready() -> bool:
    from panda_core.clusters import umap_is_warm

    return umap_is_warm() or _umap_warmer()["done"].is_set()


def umap_warming() -> bool:
    """True while the background warm-up is still compiling."""
    if os.environ.get("PANDA_WARM_UMAP", "1") == "0":
        return False
    return not umap_ready()


# ------------------------------------------------------------- cached queries
@st.cache_data(ttl=5, show_spinner=False)
def task_rows() -> list[dict]:
    from panda_core.tasks import list_tasks

    return list_tasks()


def available_tasks() -> list[str]:
    return [t["name"] for t in task_rows() if t["available"]]


def task_family(name: str) -> str:
    for t in task_rows():
        if t["name"] == name:
            return t["family"]
    return "unknown"


@st.cache_data(ttl=30, show_spinner=False)
def backbone_rows() -> list[dict]:
    from panda_core.backbones import list_backbones

    return list_backbones()


def prompt_rows(bb: str, method: str | None = "pt") -> list[dict]:
    return store.list_prompts(backbone=bb, method=method)


def tasks_with_prompts(bb: str, length: int | None = None) -> list[str]:
    length = length or prompt_length()
    have = {r["task"] for r in prompt_rows(bb) if r["length"] == length}
    return [t for t in available_tasks() if t in have] + sorted(have - set(available_tasks()))


def fingerprint(bb: str) -> tuple:
    """Changes whenever a prompt of the backbone is added or removed: part of
    every cache key that depends on stored prompts."""
    return tuple(r["id"] for r in store.list_prompts(backbone=bb))


@st.cache_data(max_entries=64, show_spinner=False)
def similarity(metric: str, bb: str, tasks: tuple[str, ...] | None, length: int,
               layers: tuple[int, int] | None, n_inputs: int, fp: tuple) -> dict:
    from panda_core.similarity import similarity_table

    return similarity_table(metric, bb, list(tasks) if tasks else None, prompt_length=length, layers=layers,
                            n_inputs=n_inputs)


def similarity_table(metric: str, bb: str, tasks: list[str] | None, length: int = 20,
                     layers: tuple[int, int] | None = None, n_inputs: int = 32) -> dict:
    """panda_core.similarity.similarity_table, cached until the prompts change."""
    return similarity(metric, bb, tuple(tasks) if tasks else None, length, layers, n_inputs, fingerprint(bb))


def metric_labels() -> dict[str, str]:
    from panda_core.metrics import METRIC_LABELS

    return METRIC_LABELS


# ---------------------------------------------------------------- live jobs
def run_label(run: dict) -> str:
    kind = run["kind"]
    if kind == "train":
        return f"train {run['target']}"
    if kind == "project":
        src = (run.get("source") or ((run.get("config") or {}).get("job") or {}).get("source_backbone")
               or (run.get("result") or {}).get("source_backbone") or "?")
        return f"projector {src} → {run['backbone']} ({run['method']}, trained on {run['target']})"
    src = run.get("source") or "—"
    return f"{METHOD_LABELS.get(run['method'], run['method'])}: {src} → {run['target']}"


def show_progress(run: dict) -> None:
    """One status line and a progress bar for a run."""
    prog = run.get("progress") or {}
    step, steps = prog.get("step"), prog.get("steps")
    status = run["status"]
    label = f"{STATUS_ICON.get(status, '')} {run_label(run)} · {status}"
    if prog.get("waiting") and status == "queued":
        label += " (waiting for a free worker)"
    if step and steps:
        label += f" · step {step}/{steps}"
        if prog.get("loss") is not None:
            label += f" · loss {prog['loss']:.3f}"
        if prog.get("dev_acc") is not None:
            label += f" · dev {prog['dev_acc']:.3f}"
    frac = 1.0 if status == "done" else (min(1.0, step / steps) if step and steps else 0.0)
    st.progress(frac, text=label)
    if status == "failed" and run.get("error"):
        st.error(f"{run_label(run)} failed: {run['error']}")
    elif status == "cancelled":
        st.caption(f"{run_label(run)}: {run.get('error') or 'cancelled'}")


def curves_figure(runs: list[dict], title: str = "Dev accuracy during training",
                  name: Callable[[dict], str] | None = None) -> go.Figure:
    """Dev-accuracy curves (from the store) of several runs on one plot. A
    zero-shot run has no curve (nothing is trained): it is drawn as a dashed
    level at its test accuracy."""
    fig = go.Figure()
    flat = []
    last_step = 1
    for run in runs:
        pts = store.curve(run["id"])
        if not pts and run.get("result") and run["result"].get("dev_curve"):
            pts = [tuple(p) for p in run["result"]["dev_curve"]]
        if not pts:
            if run["method"] == "zero-shot" and (run.get("result") or {}).get("test_acc") is not None:
                flat.append(run)
            continue
        xs, ys = zip(*pts, strict=True)
        last_step = max(last_step, max(xs))
        mode = "markers" if len(pts) == 1 else "lines+markers"
        fig.add_trace(go.Scatter(x=list(xs), y=list(ys), mode=mode, name=(name or run_label)(run),
                                 hovertemplate="step %{x}<br>dev acc %{y:.4f}<extra>%{fullData.name}</extra>"))
    for run in flat:
        acc = run["result"]["test_acc"]
        fig.add_trace(go.Scatter(x=[0, last_step], y=[acc, acc], mode="lines", line=dict(dash="dash"),
                                 name=f"{(name or run_label)(run)} (test acc, no training)",
                                 hovertemplate="zero-shot test acc %{y:.4f}<extra>%{fullData.name}</extra>"))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title="accuracy",
                      height=380, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def live_runs(run_ids: list[str], render: Callable[[list[dict]], None], key: str) -> None:
    """Render `render(runs)` now, and every second while any run is active
    (a fragment: the rest of the page stays usable). When the last run ends
    the whole page reruns once so results outside the fragment appear."""
    if not run_ids:
        return
    runs = [r for r in (store.get_run(i) for i in run_ids) if r]
    active = any(r["status"] in ACTIVE for r in runs)
    flag = f"_live_{key}_active"
    st.session_state[flag] = active

    @st.fragment(run_every=1.0 if active else None)
    def _panel() -> None:
        from panda_core import jobs

        jobs.reap()
        current = [r for r in (store.get_run(i) for i in run_ids) if r]
        render(current)
        still = any(r["status"] in ACTIVE for r in current)
        if st.session_state.get(flag) and not still:
            st.session_state[flag] = False
            st.rerun()

    _panel()


def active_runs(kind: str, bb: str | None = None) -> list[dict]:
    """Queued or running jobs of a kind (from the store: they survive a reload)."""
    return [r for r in store.list_runs(kind=kind, limit=300)
            if r["status"] in ACTIVE and (bb is None or r["backbone"] == bb)]


def cancel_buttons(runs: list[dict], key: str) -> None:
    from panda_core import jobs

    active = [r for r in runs if r["status"] in ACTIVE]
    if not active:
        return
    if st.button(f"Cancel {len(active)} active run(s)", key=f"cancel_{key}", icon="⏹️"):
        for r in active:
            with guard():
                jobs.cancel(r["id"])
        st.toast("Cancellation requested; workers stop at their next step.")


# ---------------------------------------------------------------- figures
def family_colors(families: list[str]) -> dict[str, str]:
    return {f: FAMILY_COLORS[i % len(FAMILY_COLORS)] for i, f in enumerate(dict.fromkeys(families))}


def heatmap(table: dict, z: list[list[float]] | None = None, title: str | None = None,
            diverging: bool = False) -> go.Figure:
    """Plotly heatmap of an indicator table: rows = source, columns = target,
    tasks grouped by family (blocks separated by lines), exact values on hover."""
    tasks, fams = table["tasks"], table["families"]
    z = table["matrix"] if z is None else z
    labels = [f"{t}" for t in tasks]
    custom = [[[fams[i], fams[j]] for j in range(len(tasks))] for i in range(len(tasks))]
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=labels, customdata=custom,
        colorscale="RdBu" if diverging else "Viridis", zmid=0 if diverging else None,
        texttemplate="%{z:.2f}" if len(tasks) <= 12 else None,
        hovertemplate="source %{y} (%{customdata[0]})<br>target %{x} (%{customdata[1]})"
                      "<br>value %{z}<extra></extra>",
        colorbar=dict(title=""),
    ))
    # family blocks
    bounds = [i for i in range(1, len(fams)) if fams[i] != fams[i - 1]]
    for b in bounds:
        for axis in ("x", "y"):
            line = dict(type="line", line=dict(color="white", width=3), xref="x", yref="y")
            if axis == "x":
                fig.add_shape(**line, x0=b - 0.5, x1=b - 0.5, y0=-0.5, y1=len(tasks) - 0.5)
            else:
                fig.add_shape(**line, y0=b - 0.5, y1=b - 0.5, x0=-0.5, x1=len(tasks) - 0.5)
    starts = [0] + bounds
    ends = bounds + [len(fams)]
    for s, e in zip(starts, ends, strict=True):
        fig.add_annotation(x=(s + e - 1) / 2, y=1.0, yref="paper", yanchor="bottom", text=f"<b>{fams[s]}</b>",
                           showarrow=False, font=dict(size=11))
    fig.update_layout(title=title or table.get("metric"), height=max(380, 40 * len(tasks) + 160),
                      margin=dict(l=10, r=10, t=80, b=10), xaxis=dict(title="target", side="bottom"),
                      yaxis=dict(title="source", autorange="reversed"))
    return fig


def heatmap_grid(tables: list[dict], cols: int = 4) -> go.Figure:
    """Small multiples: one heatmap per indicator table (each on its own colour
    scale, since indicators live on different scales)."""
    from plotly.subplots import make_subplots

    rows = (len(tables) + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t["metric"] for t in tables],
                        horizontal_spacing=0.06, vertical_spacing=0.12)
    for k, table in enumerate(tables):
        r, c = k // cols + 1, k % cols + 1
        fig.add_trace(go.Heatmap(z=table["matrix"], x=table["tasks"], y=table["tasks"], showscale=False,
                                 colorscale="Viridis", name=table["metric"],
                                 hovertemplate=f"{table['metric']}<br>source %{{y}}<br>target %{{x}}"
                                               "<br>value %{z}<extra></extra>"), row=r, col=c)
        fig.update_yaxes(autorange="reversed", row=r, col=c, showticklabels=c == 1)
        fig.update_xaxes(showticklabels=False, row=r, col=c)
    fig.update_layout(height=330 * rows + 60, margin=dict(l=10, r=10, t=60, b=10),
                      title="Every indicator (rows = source, columns = target; each panel on its own scale)")
    return fig


def tables_csv(tables: list[dict]) -> str:
    """Long format: metric, source, target, value."""
    import pandas as pd

    rows = [{"metric": t["metric"], "source": s, "target": u, "value": t["matrix"][i][j]}
            for t in tables for i, s in enumerate(t["tasks"]) for j, u in enumerate(t["tasks"])]
    return pd.DataFrame(rows).to_csv(index=False)


def matrix_csv(table: dict, z: list[list[float]] | None = None) -> str:
    import pandas as pd

    z = table["matrix"] if z is None else z
    df = pd.DataFrame(z, index=table["tasks"], columns=table["tasks"])
    df.index.name = "source \\ target"
    return df.to_csv()


def png_bytes(fig: go.Figure) -> bytes | None:
    """PNG via kaleido when it is installed and works offline; else None."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return None
    try:
        return fig.to_image(format="png", scale=2)
    except Exception:  # noqa: BLE001
        return None


def figure_downloads(fig: go.Figure, stem: str, csv: str | None = None, key: str = "",
                     csv_label: str = "Matrix (CSV)") -> None:
    """Download buttons: the matrix as CSV, the figure as standalone HTML
    (plotly.js embedded: opens offline), and PNG where kaleido is available."""
    cols = st.columns(3)
    if csv is not None:
        cols[0].download_button(csv_label, csv, file_name=f"{stem}.csv", mime="text/csv",
                                key=f"dl_csv_{key}", icon="⬇️")
    cols[1].download_button("Figure (HTML)", lambda: fig.to_html(include_plotlyjs=True, full_html=True),
                            file_name=f"{stem}.html", mime="text/html", key=f"dl_html_{key}", icon="⬇️")
    png = png_bytes(fig) if _kaleido_present() else None
    if png is not None:
        cols[2].download_button("Figure (PNG)", png, file_name=f"{stem}.png", mime="image/png",
                                key=f"dl_png_{key}", icon="⬇️")
    else:
        cols[2].caption("PNG: use the camera icon in the chart's toolbar (drawn by your browser, works offline).")


@st.cache_resource(show_spinner=False)
def _kaleido_check() -> bool:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return True


def _kaleido_present() -> bool:
    return _kaleido_check()


def plot(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, key=key, config=PLOT_CONFIG)


# --------------------------------------------------------------- uploads
@contextmanager
def uploaded_files(files) -> Iterator[Path]:
    """Write uploaded files into a private temporary folder; yields the folder."""
    with tempfile.TemporaryDirectory(prefix="panda-upload-") as tmp:
        folder = Path(tmp)
        for f in files:
            name = Path(f.name).name  # never trust a client path
            (folder / name).write_bytes(f.getvalue())
        yield folder


def prompt_download(prompt_id: str, fmt: str) -> bytes:
    """Bytes for a prompt download: safetensors file, or a zip of the PEFT adapter."""
    from panda_core.export import export_prompt

    with tempfile.TemporaryDirectory(prefix="panda-export-") as tmp:
        out = export_prompt(prompt_id, fmt, tmp)
        files = [Path(p) for p in out["files"]]
        if fmt == "safetensors":
            return files[0].read_bytes()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                zf.write(p, arcname=f"{prompt_id}/{p.name}")
        return buf.getvalue()


def fmt_acc(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def ago(ts: float | None) -> str:
    if not ts:
        return ""
    s = time.time() - ts
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.1f} h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
