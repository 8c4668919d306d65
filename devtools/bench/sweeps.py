"""The sweep cases: a size x size PoT sweep through `panda_core.ops.run_sweep`
in a fresh process and a fresh private cache each time, locally with 1 and 2
workers (`sweep_local`) and on a local Ray instance (`sweep_ray`, which must
give the same scores as the local executor under the same seeds).

A subprocess per sweep keeps this process's warm caches out of the numbers
and lets `PeakRSS(tree=True)` see the whole process tree, Ray's daemons included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from panda_core.errors import PandaError
from panda_core.paths import REPO_ROOT

from .harness import (
    BENCH_TASKS,
    SWEEP_TASKS,
    BenchConfig,
    Case,
    Log,
    PeakRSS,
    available,
    cores,
    median,
    rounded,
    rss_kb,
)

_SWEEP_SCRIPT = r"""
import json, sys, time
t_start = time.perf_counter()
from safetensors.torch import load_file
from panda_core import store
from panda_core.ops import run_sweep
from panda_core.prompts import SoftPrompt
from panda_core.training import TrainConfig
from panda_core.transfer import TransferConfig
spec = json.loads(sys.argv[1])
for task, t in load_file(spec["prompts"]).items():
    store.save_prompt(SoftPrompt(tensor=t, backbone=spec["backbone"], task=task, method="pt", seed=0))
cfg = TransferConfig(train=TrainConfig(**spec["train"]))
t0 = time.perf_counter()
out = run_sweep(spec["sources"], spec["targets"], spec["methods"], spec["backbone"], cfg,
                executor=spec["executor"], workers=spec["workers"])
out["seconds"] = time.perf_counter() - t0
out["import_seconds"] = t0 - t_start
print(json.dumps(out, default=str))
"""


def private_cache(root: Path) -> Path:
    """A throw-away cache that shares the project's models and prepared tasks."""
    from panda_core.paths import cache_dir

    project = cache_dir()
    root.mkdir(parents=True)
    for name in ("models", "downloads", "tasks"):
        src = project / name
        if src.exists():
            (root / name).symlink_to(src, target_is_directory=True)
    return root


def sweep_once(executor: str, workers: int, spec: dict, tmp: Path, tag: str) -> dict:
    """One sweep in a fresh process and cache: its seconds, wall time, start-up time, peak RSS and scores."""
    cache = private_cache(tmp / tag)
    env = dict(os.environ, PANDA_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("OMP_NUM_THREADS", None)
    args = json.dumps(spec | {"executor": executor, "workers": workers})
    t0 = time.perf_counter()
    with PeakRSS(tree=True) as mem:
        proc = subprocess.run([sys.executable, "-c", _SWEEP_SCRIPT, args], cwd=str(REPO_ROOT), env=env,
                              capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise PandaError(f"sweep ({executor}, {workers} workers) failed: {' | '.join(tail)[:400]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out.get("failed"):
        errors = [r.get("error") for r in out["runs"] if not r["ok"]]
        raise PandaError(f"sweep ({executor}, {workers} workers): {out['failed']} runs failed: {errors[:2]}")
    # the subprocess tree includes this process (sampled as well): report the tree minus our own RSS
    rss = mem.peak_kb / 1024 - rss_kb() / 1024
    return {"seconds": out["seconds"], "wall": wall, "import_seconds": out["import_seconds"], "rss_mb": rss,
            "scores": {f"{r['method']}:{r['source']}->{r['target']}": r["test_acc"] for r in out["runs"]},
            "runs": len(out["runs"])}


def _run_sweeps(bb_name: str, cfg: BenchConfig, log: Log, tasks: list[str],
                variants: list[tuple[str, int]]) -> dict[tuple[str, int], list[dict]]:
    """Every variant `cfg.sweep_reps` times (rotating order), within `cfg.sweep_budget`."""
    from safetensors.torch import save_file

    from panda_core.backbones import get_backbone
    from panda_core.prompts import init_prompt

    bb = get_backbone(bb_name)
    train = {"steps": cfg.sweep_steps, "eval_every": cfg.sweep_steps, "batch_size": 16,
             "prompt_length": cfg.prompt_length, "max_length": cfg.max_length, "dev_limit": cfg.sweep_eval_limit,
             "test_limit": cfg.sweep_eval_limit, "train_limit": 256, "seed": cfg.seed}
    with tempfile.TemporaryDirectory(prefix="panda-bench-") as tmp_s:
        tmp = Path(tmp_s)
        prompts = {t: init_prompt(bb.embeddings(), cfg.prompt_length, "vocab", seed=200 + i).contiguous()
                   for i, t in enumerate(tasks)}
        save_file(prompts, str(tmp / "prompts.safetensors"))
        spec = {"prompts": str(tmp / "prompts.safetensors"), "backbone": bb_name, "sources": tasks,
                "targets": tasks, "methods": ["pot"], "train": train}
        results: dict[tuple[str, int], list[dict]] = {v: [] for v in variants}
        started = time.perf_counter()
        for r in range(cfg.sweep_reps):
            if r and cfg.sweep_budget and time.perf_counter() - started > cfg.sweep_budget / (r + 1):
                log(f"  one sweep round took {time.perf_counter() - started:.0f} s: no further repetition")
                break
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for ex, w in order:
                log(f"  sweep {len(tasks)}x{len(tasks)} pot, {ex} with {w} worker(s), rep {r + 1}/{cfg.sweep_reps}")
                results[(ex, w)].append(sweep_once(ex, w, spec, tmp, f"{ex}{w}-{r}"))
    return results


def bench_sweeps(bb_name: str, cfg: BenchConfig, log: Log, thread_speedup: float | None = None) -> list[Case]:
    """A size x size PoT sweep (every source to every other target) through
    `run_sweep` in a fresh process and a fresh private cache each time: local
    at 1 and 2 workers, and on a local Ray instance with 2 workers."""
    tasks = available(SWEEP_TASKS + BENCH_TASKS, cfg.sweep_size)
    variants = [("local", 1), ("local", 2)]
    try:
        import ray  # noqa: F401

        variants.append(("ray", 2))
    except ImportError:
        log("  ray is not installed: the sweep_ray case is skipped")
    results = _run_sweeps(bb_name, cfg, log, tasks, variants)

    def summary(v):
        rs = results[v]
        return median([x["seconds"] for x in rs]), max(x["rss_mb"] for x in rs)

    def each(v, key: str) -> list[float]:
        return [round(x[key], 2) for x in results[v]]

    one, rss1 = summary(("local", 1))
    two, rss2 = summary(("local", 2))
    n_runs = results[("local", 1)][0]["runs"]
    base = {"tasks": tasks, "runs": n_runs, "steps_per_run": cfg.sweep_steps,
            "seconds_1_worker": each(("local", 1), "seconds"), "seconds_2_workers": each(("local", 2), "seconds"),
            "process_start_seconds": rounded(median([x["import_seconds"] for x in results[("local", 1)]]), 2),
            "wall_seconds_1_worker": each(("local", 1), "wall"), "wall_seconds_2_workers": each(("local", 2), "wall")}
    if thread_speedup:
        # 1 worker runs each transfer on all cores; 2 workers run two at once on one core each
        base["two_thread_speedup_of_a_step"] = thread_speedup
        base["ceiling"] = rounded(cores() / thread_speedup) if cores() == 2 else None
    local = Case("sweep_local", two, one, None, "s", "2 workers >= 1.6x of 1 worker", backbone=bb_name,
                 ours_is=f"{n_runs} transfers, local, 2 workers x {max(1, cores() // 2)} thread(s)",
                 peer_is=f"local, 1 worker x {cores()} threads", rss_mb=round(max(rss1, rss2), 1), detail=base)
    local.meets_goal = local.ratio_vs_peer >= 1.6
    if ("ray", 2) not in results:
        return [local, Case("sweep_ray", 0.0, one, None, "s", "ray not installed", backbone=bb_name,
                            detail={"skipped": "ray is not installed"})]
    ray_s, rss_r = summary(("ray", 2))
    same = all(x["scores"] == results[("local", 2)][0]["scores"] for x in results[("ray", 2)])
    c = Case("sweep_ray", ray_s, one, None, "s", "same scores as the local executor (same seeds)",
             backbone=bb_name, ours_is=f"{n_runs} transfers, local Ray instance, 2 workers",
             peer_is="local, 1 worker", rss_mb=round(rss_r, 1),
             detail={"seconds_ray": each(("ray", 2), "seconds"), "scores_equal_to_local_2_workers": same,
                     "speedup_vs_local_2_workers": rounded(two / ray_s)})
    c.meets_goal = same
    return [local, c]
