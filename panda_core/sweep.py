"""Sweeps: many source x target x method transfers, resumable.

Each transfer is recorded in the store the moment it finishes, under a key
that names the work (method, tasks, backbone, config, prompts read); a rerun
of the same sweep skips every finished key, so a killed sweep resumes where
it stopped and never repeats a finished run. Executors:

- ``local``: a process pool on this machine (``workers`` processes, the cores
  shared between them);
- ``ray``: the same runs as Ray tasks, on a local Ray instance or an existing
  cluster (``ray_address``); results go to the same store, so the cache
  directory must be shared (e.g. a network file system) on a real cluster.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context

from .errors import PandaError
from .train import TrainConfig
from .transfer import Method, TransferConfig


def plan(sources: list[str], targets: list[str], methods: list[str], include_self: bool = False) -> list[dict]:
    """The list of transfers of a sweep, in a stable order."""
    for m in methods:
        try:
            Method(m)
        except ValueError:
            raise PandaError(f"unknown method '{m}'; choose from {[x.value for x in Method]}") from None
    jobs = []
    for t in targets:
        for m in methods:
            if m == "pt":
                jobs.append({"source": None, "target": t, "method": m})
                continue
            for s in sources:
                if s != t or include_self:
                    jobs.append({"source": s, "target": t, "method": m})
    # PANDA reuses the PoT teacher of the same pair: run PoT first
    order = {"zero-shot": 0, "pt": 1, "pot": 2, "model-tuning": 3, "panda": 4}
    return sorted(jobs, key=lambda j: order[j["method"]])


def _run_one(job: dict, backbone: str, config: dict, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from .transfer import run_transfer

    raw = dict(config)
    cfg = TransferConfig(train=TrainConfig(**raw.pop("train")), **raw)
    try:
        res = run_transfer(job["source"], job["target"], job["method"], backbone, cfg)
        return {"ok": True, **job, "run_id": res.get("run_id"), "test_acc": res.get("test_acc"),
                "reused": bool(res.get("reused"))}
    except PandaError as err:
        return {"ok": False, **job, "error": str(err)}


def run_sweep(
    sources: list[str], targets: list[str], methods: list[str], backbone: str = "minilm",
    config: TransferConfig | None = None, executor: str = "local", workers: int = 1,
    ray_address: str | None = None, log: Callable[[str], None] | None = None,
) -> dict:
    """Run every transfer of the sweep; returns {"runs": [...], "executor", "workers"}."""
    config = config or TransferConfig()
    jobs = plan(sources, targets, methods)
    cfg = asdict(config)
    cores = os.cpu_count() or 1
    threads = max(1, cores // max(1, workers))
    results: list[dict] = []
    if executor == "ray":
        results = _run_ray(jobs, backbone, cfg, threads, ray_address, workers)
    elif executor == "local" and workers <= 1:
        for job in jobs:
            results.append(_run_one(job, backbone, cfg, threads))
            if log:
                log(f"{job['method']}: {job['source']} -> {job['target']}: {results[-1].get('test_acc')}")
    elif executor == "local":
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            # PANDA needs its PoT teacher: submit in phases so the teacher is stored first
            for phase in _phases(jobs):
                futures = [pool.submit(_run_one, j, backbone, cfg, threads) for j in phase]
                for fut in as_completed(futures):
                    results.append(fut.result())
                    if log:
                        r = results[-1]
                        log(f"{r['method']}: {r['source']} -> {r['target']}: {r.get('test_acc')}")
    else:
        raise PandaError(f"unknown executor '{executor}'; use local or ray")
    return {"runs": results, "executor": executor, "workers": workers,
            "failed": sum(not r["ok"] for r in results)}


def _phases(jobs: list[dict]) -> list[list[dict]]:
    first = [j for j in jobs if j["method"] != "panda"]
    second = [j for j in jobs if j["method"] == "panda"]
    return [p for p in (first, second) if p]


def _run_ray(jobs, backbone, cfg, threads, address, workers) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise PandaError("the ray executor needs the `ray` package: pip install 'ray[default]'") from None
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else workers * threads,
                 include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PANDA_CACHE": os.environ.get("PANDA_CACHE", "")}} if
                 os.environ.get("PANDA_CACHE") else None)
    remote = ray.remote(num_cpus=threads)(_run_one)
    results = []
    for phase in _phases(jobs):
        results += ray.get([remote.remote(j, backbone, cfg, threads) for j in phase])
    return results
