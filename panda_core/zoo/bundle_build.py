"""`zoo bundle`: the study bundle, computed from the zoo's prompts (minilm,
input-level by default), so a fresh clone's pages show real values before
anything is computed there. It holds

- the K x K zero-shot matrix: each prompt scored as it is on each task's
  first 200 test items (the report's zero-shot limit), each cell with its
  Wilson interval and per-item correctness; the relative matrix (a cell over
  its target's own prompt on the same items);
- every registered indicator's matrix over the same prompts, with the
  options it was computed with (through `similarity.table_of_prompts`, the
  code `similarity_table` runs);
- each indicator's correlation with the zero-shot transfer (Spearman and
  Kendall with bootstrap intervals, per-target Spearman, NDCG@3);
- seeded 2-D layouts (UMAP, PCA, t-SNE; a point per prompt and per token);
- the report's measured transfers and correlations (docs/results/results.json)
  when the report ran on exactly the prompts the zoo was built from.

Everything is keyed by the zoo prompts' ids: `ops.bundle` applies a value
only where the prompts in use are exactly the ones it was computed from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..errors import PandaError
from ..paths import REPO_ROOT
from ..stats import encode_items, wilson_interval
from .build import git_commit
from .files import BUNDLE, entry_file, entry_problems, manifest_path, read_manifest, zoo_dir

SCHEMA = 1
ZERO_SHOT_LIMIT = 200  # the report's zero-shot test limit (devtools.study StudyConfig.zero_shot_test_limit)
LAYOUTS = ("umap", "pca", "tsne")
MODES = ("prompt", "token")
SEEDS = (0,)
RETRIEVAL_K = 3
#: what `similarity_table` passes every indicator by default (its layers and n_inputs arguments)
TABLE_DEFAULTS: dict[str, Any] = {"layers": None, "n_inputs": 32}
STUDY_KEYS = ("pt", "zero_shot", "indicators", "indicator_measures", "panda_vs_pot", "nli")
Log = Callable[[str], None]


def zoo_prompts(backbone: str, prompt_type: str, zoo: Path | None = None) -> tuple[list[dict], list]:
    """The zoo's entries and prompts of one backbone and type, ordered by (family, task)."""
    from ..prompts.formats import read_prompt_file

    entries = [e for e in read_manifest(zoo)["prompts"] if e["backbone"] == backbone and e["prompt_type"] == prompt_type]
    if len(entries) < 2:
        raise PandaError(f"the zoo has {len(entries)} {prompt_type} prompt(s) on {backbone}; a bundle needs at least 2: "
                         f"python -m panda_core zoo build --backbones {backbone} --prompt-types {prompt_type}")
    problems = [p for e in entries for p in entry_problems(e, zoo)]
    if problems:
        raise PandaError(f"the zoo is inconsistent ({problems[0]}); rebuild it with `python -m panda_core zoo build`")
    entries.sort(key=lambda e: (e["family"], e["task"]))
    prompts = []
    for e in entries:
        p = read_prompt_file(entry_file(e, zoo))
        p.prompt_id = e["id"]
        prompts.append(p)
    return entries, prompts


def zero_shot_matrix(backbone: Any, prompts: list, limit: int = ZERO_SHOT_LIMIT,
                     log: Log = print) -> dict[str, Any]:
    """Each prompt on each prompt's task, as the zero-shot transfer scores it."""
    from ..indicators.validation import MEASURES
    from .scoring import zero_shot_items

    tasks = [p.task for p in prompts]
    k = len(prompts)
    acc, n = np.zeros((k, k)), np.zeros((k, k), dtype=int)
    ci: list[list[list[float]]] = [[[] for _ in range(k)] for _ in range(k)]
    items: list[list[str]] = [["" for _ in range(k)] for _ in range(k)]
    for i, p in enumerate(prompts):
        log(f"[bundle] zero-shot {i + 1}/{k}: the {p.task} prompt on every task")
        for j, t in enumerate(tasks):
            correct = zero_shot_items(backbone, p, t, limit)
            n[i, j] = len(correct)
            acc[i, j] = float(correct.mean()) if len(correct) else 0.0
            low, high = wilson_interval(int(correct.sum()), len(correct))
            ci[i][j] = [round(low, 4), round(high, 4)]
            items[i][j] = encode_items(correct)
    own = np.diag(acc).copy()
    measure = next(m for m in MEASURES if m.relative)
    relative = measure.of(acc, own[None, :])
    return {"measure": measure.name, "test_limit": limit, "acc": np.round(acc, 4).tolist(), "n": n.tolist(),
            "ci": ci, "relative": _rounded(relative), "own": np.round(own, 4).tolist(), "items": items}


def correlations(predicted: np.ndarray, truth: np.ndarray, k: int = RETRIEVAL_K) -> dict[str, Any]:
    """How well one indicator's matrix ranks sources the way `truth` goes: the report's numbers."""
    from ..indicators import rank_correlation
    from ..stats import bootstrap_mean_ci, rank_correlation_ci, retrieval_summary

    off = ~np.eye(len(truth), dtype=bool) & ~np.isnan(truth)
    x, y = predicted[off], truth[off]
    base = rank_correlation(predicted, truth)
    low, high = bootstrap_mean_ci(base["spearman_per_target"])
    out = base | {"spearman_ci": rank_correlation_ci(x, y, "spearman"), "kendall_ci": rank_correlation_ci(x, y, "kendall"),
                  "spearman_mean_ci": [low, high]} | retrieval_summary(predicted, truth, k=k)
    return json.loads(json.dumps(out, default=_plain))


def layouts(entries: list[dict], prompts: list, prompt_type: str, log: Log = print,
            which: tuple[str, ...] = LAYOUTS) -> list[dict[str, Any]]:
    """Seeded 2-D layouts of the prompts, as the Clusters page draws them (method "pt", the default kinds)."""
    from ..indicators.clusters import points_of

    rows = [{"task": e["task"], "id": e["id"], "method": "pt", "seed": e["seed"], "origin": "zoo"} for e in entries]
    out = []
    for layout in which:
        for mode in MODES:
            for seed in SEEDS:
                log(f"[bundle] {layout} layout, a point per {mode}, seed {seed}")
                df = points_of(rows, prompts, mode, layout, seed, prompt_type)
                out.append({"layout": layout, "mode": mode, "seed": seed, "methods": ["pt"],
                            "points": json.loads(df.round(6).to_json(orient="records"))})
    return out


def study_part(results_json: Path, entries: list[dict], backbone: str) -> tuple[dict | None, str]:
    """The report's measured transfers and correlations when it ran on the prompts the zoo
    was built from (same backbone, each task's PT prompt the zoo entry's source); else None and why."""
    if not results_json.is_file():
        return None, f"no report results at {results_json.name}: run `python -m panda_core report`"
    try:
        data = json.loads(results_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, f"{results_json.name} is unreadable"
    if data.get("schema", 1) < 2:
        return None, f"{results_json.name} predates the seeded study (schema 2); run the report again"
    if (data.get("config") or {}).get("backbone") != backbone:
        return None, f"the report ran on {(data.get('config') or {}).get('backbone')}, not {backbone}"
    source = {e["task"]: e["provenance"].get("source_prompt_id") for e in entries}
    pt = {r["task"]: r.get("prompt_id") for r in data.get("pt") or []}
    if not pt or set(pt) != set(source) or any(source[t] != pt[t] for t in pt):
        return None, "the report's PT prompts are not the ones the zoo was built from"
    return {k: data[k] for k in STUDY_KEYS if k in data} | {"source": "docs/results/results.json",
                                                           "tasks": data.get("tasks")}, "the report's own runs"


def build_bundle(zoo: Path | None = None, backbone: str = "minilm", prompt_type: str = "input",
                 test_limit: int = ZERO_SHOT_LIMIT, results_json: Path | None = None, command: str | None = None,
                 log: Log = print, with_layouts: tuple[str, ...] = LAYOUTS,
                 indicators: list[str] | None = None) -> dict[str, Any]:
    """Compute the bundle and write `zoo/bundle.json`; returns a summary of what it holds.
    `indicators` (default: every registered one) and `with_layouts` narrow it (tests)."""
    from ..backbones import get_backbone
    from ..indicators import INDICATORS
    from ..indicators.similarity import effective_options, table_of_prompts

    zoo = zoo or zoo_dir()
    entries, prompts = zoo_prompts(backbone, prompt_type, zoo)
    bb = get_backbone(backbone)
    t0 = time.time()
    zs = zero_shot_matrix(bb, prompts, test_limit, log)
    truth = np.array(zs["relative"], dtype=float)
    matrices, corr = {}, {}
    for name in indicators or INDICATORS.names():
        log(f"[bundle] indicator {name}")
        table = table_of_prompts(name, prompts, backbone, TABLE_DEFAULTS, prompt_type=prompt_type)
        matrices[name] = {"options": effective_options(name, TABLE_DEFAULTS), "matrix": table["matrix"]}
        corr[name] = {zs["measure"]: correlations(np.array(table["matrix"]), truth)}
    points = layouts(entries, prompts, prompt_type, log, with_layouts)
    study, why = study_part(results_json or REPO_ROOT / "docs" / "results" / "results.json", entries, backbone)
    commit = git_commit()
    mpath = manifest_path(zoo)
    bundle = {
        "schema": SCHEMA, "backbone": backbone, "prompt_type": prompt_type, "prompt_length": prompts[0].length,
        "tasks": [p.task for p in prompts], "families": [e["family"] for e in entries],
        "prompt_ids": [e["id"] for e in entries],
        "provenance": {"command": command or f"python -m panda_core zoo bundle --backbone {backbone} "
                                             f"--prompt-type {prompt_type}",
                       "commit": commit.get("commit"), "dirty": commit.get("dirty"),
                       "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "manifest_sha256": atomic.sha256_file(mpath) if mpath.is_file() else None,
                       "seconds": round(time.time() - t0, 1)},
        "zero_shot": zs, "indicators": matrices, "correlations": corr, "layouts": points,
        "study": study, "study_note": why,
    }
    path = zoo / BUNDLE
    atomic.write_text(path, json.dumps(bundle, separators=(",", ":"), default=_plain))
    return {"bundle": str(path), "bytes": path.stat().st_size, "tasks": bundle["tasks"],
            "indicators": list(matrices), "layouts": len(points), "study": study is not None, "study_note": why,
            "seconds": bundle["provenance"]["seconds"]}


def _rounded(m: np.ndarray) -> list[list[float | None]]:
    return [[None if not np.isfinite(x) else round(float(x), 4) for x in row] for row in np.asarray(m, dtype=float)]


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays (NaN becomes null through float checks)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")
