"""Shared view helpers for the app's pages: page set-up and sidebar, the
active backbone, error display, cached reads of panda_core (tasks,
backbones, the store's prompts, indicator matrices), selectors built from
the registries, and uploads/downloads. No science here: numbers come from
panda_core.

The other view modules: `jobs_view` (background jobs: progress, curves,
live panels) and `figures` (heatmaps and figure downloads).
"""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from panda_app import bundle_view
from panda_core import ops, store
from panda_core.errors import PandaError
from panda_core.indicators import INDICATORS

DEFAULT_BACKBONE = os.environ.get("PANDA_BACKBONE", "minilm")
TASK_PROMPT = "pt"  # the method of a task's own trained prompt (what store.latest_prompt reads by default)


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


def active_prompt_type() -> str:
    """The prompt type every page compares and transfers (`PROMPT_TYPES`; chosen on Home)."""
    if "prompt_type" not in st.session_state:
        st.session_state["prompt_type"] = "input"
    return str(st.session_state["prompt_type"])


def prompt_type_label(name: str) -> str:
    from panda_core.prompts.types import PROMPT_TYPES

    return f"{name}: {PROMPT_TYPES.get(name).label}"


def prompt_set() -> str:
    """How the pages name the prompts they show: "20-token input prompts"."""
    return f"{prompt_length()}-token {active_prompt_type()} prompts"


def _sidebar() -> None:
    with st.sidebar:
        st.caption("Active backbone")
        st.markdown(f"**{backbone()}** · {prompt_set()}")
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
            from panda_core.indicators.clusters import warm_umap

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
    from panda_core.indicators.clusters import umap_is_warm

    return umap_is_warm() or _umap_warmer()["done"].is_set()


def umap_warming() -> bool:
    """True while the background warm-up is still compiling."""
    if os.environ.get("PANDA_WARM_UMAP", "1") == "0":
        return False
    return not umap_ready()


# ------------------------------------------------------------- cached queries
@st.cache_data(ttl=5, show_spinner=False)
def task_rows() -> list[dict]:
    from panda_core.data import list_tasks

    return list_tasks()


def available_tasks() -> list[str]:
    return [t["name"] for t in task_rows() if t["available"]]


def task_family(name: str) -> str:
    return next((t["family"] for t in task_rows() if t["name"] == name), "unknown")


@st.cache_data(ttl=30, show_spinner=False)
def backbone_rows() -> list[dict]:
    from panda_core.backbones import list_backbones

    return list_backbones()


def foreign_backbones(installed_names: Sequence[str]) -> list[str]:
    """Backbones with stored (imported) prompts that are not installed here, e.g.
    'roberta-base' from a published prompt collection."""
    from panda_core.backbones.foreign import installed

    stored = {r["backbone"] for r in store.list_prompts()}
    return sorted(b for b in stored - set(installed_names) if not installed(b))


def prompt_rows(bb: str, method: str | None = TASK_PROMPT) -> list[dict]:
    """Stored prompts of a backbone, oldest first (every method when `method` is None)."""
    return store.list_prompts(backbone=bb, method=method)


def latest_prompts(bb: str, length: int | None = None) -> dict[str, dict]:
    """{task: its prompt}: the store's one rule for a task's prompt (its newest PT
    prompt of the session's prompt type)."""
    return store.latest_prompts(bb, TASK_PROMPT, length or prompt_length(), prompt_type=active_prompt_type())


def tasks_with_prompts(bb: str, length: int | None = None) -> list[str]:
    """Tasks with a prompt of `length` tokens: available tasks in catalogue order, then the others."""
    have = set(latest_prompts(bb, length))
    ready = available_tasks()
    return [t for t in ready if t in have] + sorted(have - set(ready))


def tasks_ready(minimum: int, why: str = "") -> list[str] | None:
    """The tasks with a prompt on the active backbone when there are at least
    `minimum`; else None, after telling the user how to train them."""
    bb, length = backbone(), prompt_length()
    have = tasks_with_prompts(bb, length)
    if len(have) >= minimum:
        return have
    st.info(f"Need trained {length}-token {active_prompt_type()} prompts for at least {minimum} task(s) on {bb} (found "
            f"{len(have)}){why}. Train them from the Home page (**Train missing prompts**) or the Prompts page, "
            "or choose another prompt type on Home.")
    st.page_link("app.py", label="Go to Home", icon="🏠")
    return None


def prompt_kinds(bb: str) -> list[str]:
    """The methods of the prompts stored on a backbone (task prompts first)."""
    kinds = sorted({r["method"] for r in prompt_rows(bb, method=None)})
    return sorted(kinds, key=lambda k: k != TASK_PROMPT)


def fingerprint(bb: str) -> tuple:
    """Changes whenever a prompt of the backbone is added or removed: part of
    every cache key that depends on stored prompts."""
    return tuple(r["id"] for r in store.list_prompts(backbone=bb))


@st.cache_data(max_entries=64, show_spinner=False)
def _similarity(metric: str, bb: str, tasks: tuple[str, ...] | None, length: int,
                options: tuple[tuple[str, Any], ...], fp: tuple, kind: str = "input") -> dict:
    from panda_core.indicators.similarity import similarity_table

    return similarity_table(metric, bb, list(tasks) if tasks else None, prompt_length=length,
                            options=dict(options), prompt_type=kind)


def similarity_table(metric: str, bb: str, tasks: Sequence[str] | None, length: int = 20,
                     options: dict[str, Any] | None = None, prompt_type: str | None = None) -> dict:
    """panda_core's indicator table, cached until the prompts change. Only the
    options the indicator declares are passed (and keyed), so an embedding
    indicator is computed once whatever the model options are. `prompt_type`:
    the session's unless given. The study bundle's value is used when the
    prompts are exactly the zoo prompts it was computed from ("origin":
    "bundled"; else "computed")."""
    declared = {o.name for o in INDICATORS.get(metric).options}
    opts = tuple(sorted((k, v) for k, v in (options or {}).items() if k in declared))
    kind = prompt_type or active_prompt_type()
    bundled = bundle_view.bundled_table(metric, bb, tasks, length, dict(opts), kind)
    if bundled is not None:  # exactly the zoo prompts the shipped bundle was computed from
        return bundled
    table = _similarity(metric, bb, tuple(tasks) if tasks else None, length, opts, fingerprint(bb), kind)
    return table | {"origin": "computed"}


# ------------------------------------------------- selectors from the registries
def indicator_label(name: str) -> str:
    """`name: label` of a registered indicator (for selectors)."""
    return f"{name}: {INDICATORS.labels().get(name, name)}"


def preferred(options: Sequence[str], name: str) -> int:
    """Index of a preferred default among registry-built options (0 when it is not registered)."""
    return list(options).index(name) if name in options else 0


def layer_window(key: str, label: str = "Layers") -> tuple[int, int] | None:
    """Every layer (None), or a window [start, end) of the active backbone's layers."""
    info = next((r for r in backbone_rows() if r["name"] == backbone()), None)
    n_layers = (info or {}).get("num_layers")
    if not n_layers:
        from panda_core.backbones import get_backbone

        n_layers = call(get_backbone, backbone()).num_layers
    which = st.radio(label, ["all layers", "a window of layers"], horizontal=True, key=f"{key}_which")
    if which == "all layers":
        return None
    lo, hi = st.slider("Layer window (first, last)", 1, int(n_layers), (1, int(n_layers)), key=f"{key}_window",
                       help="Layers are numbered from 1 (closest to the input).")
    return lo - 1, hi


def _has_input(opt: Any) -> bool:
    """A layer window, a choice, a yes/no or a number gets an input; other options keep their defaults."""
    return opt.name == "layers" or bool(getattr(opt, "choices", ())) or isinstance(opt.default, (bool, int))


def _applies(opt: Any, options: Sequence[Any]) -> bool:
    """An option whose help names another option in backticks only matters when
    that one is set: without an input for it, it keeps its default."""
    others = {o.name: o for o in options}
    return all(_has_input(others[n]) for n in re.findall(r"`(\w+)`", opt.help) if n in others)


def indicator_options(names: Sequence[str], key: str) -> dict[str, Any]:
    """Inputs for the options the chosen indicators declare (`Indicator.options`),
    one input per option name: a layer window for `layers`, a select box for
    a choice, a checkbox for a yes/no, a number for integer options; other
    options keep their defaults. Returns {option: value}."""
    declared: dict[str, tuple[Any, list[str]]] = {}
    for name in dict.fromkeys(names):
        options = INDICATORS.get(name).options
        for opt in options:
            if _has_input(opt) and _applies(opt, options):
                declared.setdefault(opt.name, (opt, []))[1].append(name)
    values: dict[str, Any] = {}
    for name, (opt, users) in declared.items():
        who = ", ".join(users)
        label = f"{opt.help[:1].upper()}{opt.help[1:]} ({who})"
        if name == "layers":
            values[name] = layer_window(key, f"Layers read by {who}")
        elif getattr(opt, "choices", ()):
            values[name] = st.selectbox(label, list(opt.choices), index=list(opt.choices).index(opt.default),
                                        key=f"{key}_{name}")
        elif isinstance(opt.default, bool):
            values[name] = st.checkbox(label, value=opt.default, key=f"{key}_{name}")
        else:
            values[name] = int(st.number_input(label, 1, max(256, 8 * opt.default), opt.default, key=f"{key}_{name}"))
    return values


def has_options(names: Sequence[str]) -> bool:
    return any(_has_input(o) for n in names for o in INDICATORS.get(n).options)


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
    with tempfile.TemporaryDirectory(prefix="panda-export-") as tmp:
        out = ops.export_prompt(prompt_id, fmt, tmp)
        files = [Path(p) for p in out["files"]]
        if fmt == "safetensors":
            return files[0].read_bytes()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                zf.write(p, arcname=f"{prompt_id}/{p.name}")
        return buf.getvalue()


def fmt_acc(x: float | None) -> str:
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
