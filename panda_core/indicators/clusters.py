"""2-D layouts of soft prompts for the cluster view (Su et al.: prompts of
different tasks form distinguishable clusters).

Each stored prompt becomes one point (its flattened tensor, `mode="prompt"`)
or each of its tokens becomes a point (`mode="token"`); the points are laid
out in 2-D with UMAP, PCA or t-SNE. Every layout is seeded, so the same
prompts give the same picture on every call.

UMAP compiles its kernels with numba the first time it runs in a process
(about 15-20 s); `warm_umap()` does that on a tiny input so an app can call
it in a background thread at start-up.
"""

from __future__ import annotations

import enum
import time

import numpy as np
import pandas as pd

from .. import store
from ..errors import PandaError
from ..prompts.types import PROMPT_TYPES


class Layout(str, enum.Enum):
    UMAP = "umap"
    PCA = "pca"
    TSNE = "tsne"


class PointMode(str, enum.Enum):
    PROMPT = "prompt"  # one point per prompt: vec(P), n*d features
    TOKEN = "token"  # one point per prompt token: p_i, d features


COLUMNS = ["x", "y", "task", "family", "token", "prompt_id", "method", "seed", "origin"]


def _family(task: str) -> str:
    from ..data import get_task

    try:
        return get_task(task).family
    except PandaError:
        return "unknown"


def layout_rows(backbone: str, tasks: list[str] | None, prompt_length: int, methods: tuple[str, ...],
                prompt_type: str = "input") -> list[dict]:
    """The store rows a layout shows, in plotting order, without loading a
    tensor: every prompt of `methods`, except zoo prompts the user's own
    shadow (`store.without_shadowed_zoo`). Their ids key the bundled layouts."""
    rows = [r for m in methods for r in store.list_prompts(backbone=backbone, method=m, length=prompt_length,
                                                           prompt_type=prompt_type)]
    rows = [r for r in store.without_shadowed_zoo(rows) if tasks is None or r["task"] in tasks]
    if not rows:
        what = f"tasks {', '.join(tasks)}" if tasks else "any task"
        raise PandaError(
            f"no {prompt_length}-token prompts on '{backbone}' for {what}; train prompts first "
            f"(Prompts page, or python -m panda_core train --task TASK --backbone {backbone})"
        )
    rows.sort(key=lambda r: (_family(r["task"]), r["task"], r["created"]))
    return rows


def _collect(backbone: str, tasks: list[str] | None, prompt_length: int, methods: tuple[str, ...],
             prompt_type: str = "input"):
    rows = layout_rows(backbone, tasks, prompt_length, methods, prompt_type)
    prompts = [store.load_prompt(r["id"]) for r in rows]
    hidden = {p.hidden_size for p in prompts}
    if len(hidden) > 1:
        raise PandaError(f"prompts on '{backbone}' have different hidden sizes {sorted(hidden)}; cannot lay them out together")
    return rows, prompts


def embed_2d(features: np.ndarray, method: str = "umap", seed: int = 0, metric: str = "cosine") -> np.ndarray:
    """(N, F) features -> (N, 2) coordinates with a seeded layout.

    Small N is handled (UMAP/t-SNE neighbourhoods shrink to fit; one or two
    points are placed without a fit). Runs single-threaded: the inputs are
    small, and in a process that also holds torch, BLAS/OpenMP thread pools
    fighting over 2 cores made t-SNE 20-50x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _embed_2d(features, method, seed, metric)


def _embed_2d(features: np.ndarray, method: str, seed: int, metric: str) -> np.ndarray:
    try:
        method = Layout(method).value
    except ValueError:
        raise PandaError(f"unknown layout '{method}'; choose from {[m.value for m in Layout]}") from None
    X = np.asarray(features, dtype=np.float64)
    n = X.shape[0]
    if n == 0:
        raise PandaError("no points to lay out")
    if n == 1:
        return np.zeros((1, 2))
    if n == 2 or (method != "pca" and n < 4):
        method = "pca"  # neighbourhood methods need a few points; PCA is exact here
    if method == "pca":
        from sklearn.decomposition import PCA

        k = min(2, n, X.shape[1])
        out = PCA(n_components=k, random_state=seed).fit_transform(X - X.mean(0))
        if k < 2:
            out = np.hstack([out, np.zeros((n, 2 - k))])
        return out
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(max(1.0, min(30.0, (n - 1) / 3.0)))
        return TSNE(n_components=2, perplexity=perplexity, metric=metric, init="pca", random_state=seed,
                    max_iter=500).fit_transform(X)
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, n - 1)), metric=metric, random_state=seed,
                        init="spectral" if n > 10 else "random", min_dist=0.1)
    return reducer.fit_transform(X)


def prompt_points(
    backbone: str,
    tasks: list[str] | None = None,
    prompt_length: int = 20,
    mode: str = "prompt",
    method: str = "umap",
    seed: int = 0,
    methods: tuple[str, ...] = ("pt",),
    prompt_type: str = "input",
) -> pd.DataFrame:
    """The stored prompts of `backbone` laid out in 2-D.

    Args:
        tasks: restrict to these tasks (None: every task with a prompt).
        mode: "prompt" (one point per prompt) or "token" (one per prompt token).
        method: "umap", "pca" or "tsne"; seeded with `seed`.
        methods: which stored prompt kinds to include ("pt", "pot", "panda", ...).
        prompt_type: which `PROMPT_TYPES` entry (a deep prompt's points are its
            flattened per-layer prefixes).

    Returns:
        DataFrame with columns x, y, task, family, token (token index, or -1
        in prompt mode), prompt_id, method, seed, origin ("zoo" or "user");
        one row per point. Zoo prompts the user's own shadow are left out.
    """
    try:
        mode = PointMode(mode).value
    except ValueError:
        raise PandaError(f"unknown point mode '{mode}'; use 'prompt' or 'token'") from None
    rows, prompts = _collect(backbone, tasks, prompt_length, tuple(methods), prompt_type)
    return points_of(rows, prompts, mode, method, seed, prompt_type)


def points_of(rows: list[dict], prompts: list, mode: str = "prompt", method: str = "umap", seed: int = 0,
              prompt_type: str = "input") -> pd.DataFrame:
    """`prompt_points` of given prompts and their rows ({"task", "id", "method",
    "seed"}, optionally "origin"): the store's, or the zoo's when the study
    bundle is built, so both come from the same code."""
    mode = PointMode(mode).value
    meta = []
    feats = []
    for r, p in zip(rows, prompts, strict=True):
        t = PROMPT_TYPES.get(prompt_type).rows(p.tensor.detach().float().cpu()).numpy()
        fam = _family(r["task"])
        if mode == "prompt":
            feats.append(t.reshape(-1))
            meta.append((r["task"], fam, -1, r["id"], r["method"], r["seed"], r.get("origin", store.USER)))
        else:
            for i in range(t.shape[0]):
                feats.append(t[i])
                meta.append((r["task"], fam, i, r["id"], r["method"], r["seed"], r.get("origin", store.USER)))
    xy = embed_2d(np.stack(feats), method, seed)
    df = pd.DataFrame(meta, columns=["task", "family", "token", "prompt_id", "method", "seed", "origin"])
    df.insert(0, "y", xy[:, 1].astype(float))
    df.insert(0, "x", xy[:, 0].astype(float))
    return df[COLUMNS]


_WARM_SECONDS: float | None = None


def warm_umap() -> float:
    """Import umap and run one tiny fit so numba compiles its kernels now, not
    on the user's first click. Returns the seconds it took (0 once warm)."""
    global _WARM_SECONDS
    if _WARM_SECONDS is not None:
        return 0.0
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    embed_2d(rng.normal(size=(24, 16)), "umap", seed=0)
    _WARM_SECONDS = time.perf_counter() - t0
    return _WARM_SECONDS


def umap_is_warm() -> bool:
    return _WARM_SECONDS is not None
