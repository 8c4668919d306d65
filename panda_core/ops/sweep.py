"""Sweeps: many source x target x method transfers, resumable.

Each transfer is recorded in the store the moment it finishes, under a key
that names the work (method, tasks, backbone, config, prompts read); a rerun
of the same sweep skips every finished key, so a killed sweep resumes where
it stopped and never repeats a finished run. Executors:

- ``local``: a process pool on this machine, ``workers`` processes with
  ``cores // workers`` torch threads each (one worker runs in this process
  with every core);
- ``ray``: the same runs as Ray tasks, each asking for ``cores // workers``
  CPUs, on a local Ray instance started for the sweep (and shut down after) or
  an existing cluster (``ray_address``); results go to the same store, so on a
  real cluster the cache directory must be shared (e.g. a network file system)
  and panda_core importable on every node.

Before the transfers, the PT prompts the sweep reads (each source's, and each
target's for PANDA) that are missing from the store are trained in one batched
multi-prompt run (`ops.training.train_prompts`).

The same seeds give the same scores on either executor at the same number of
workers (the same threads per run); see docs/performance.md, "Scaling out".
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, replace
from multiprocessing import get_context

from ..errors import PandaError
from ..paths import REPO_ROOT
from ..transfer import METHODS, Need, Sources, TransferConfig, execution_order

# environment a worker process needs to see the same cache, data and models
_PASS_ENV = ("PANDA_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "PANDA_ALLOW_HUB", "HF_HOME")


def plan(sources: list[str], targets: list[str], methods: list[str], include_self: bool = False) -> list[dict]:
    """The list of transfers of a sweep, in a stable order, read from the
    METHODS registry: a method without sources (PT) runs once per target, a
    one-source method once per (source, target) pair, a many-source method once
    per target with every other source; methods that reuse another run (PANDA
    its PoT teacher) come after it. `include_self` adds source == target pairs
    for the methods that allow them (zero-shot's in-task diagonal)."""
    chosen = [METHODS.get(m) for m in methods]  # unknown names: one PandaError listing the choices
    for m in chosen:
        if not m.sweepable:
            raise PandaError(f"method '{m.name}' cannot be planned in a sweep; run it with `transfer`")
    jobs = []
    for t in targets:
        for m in chosen:
            usable = [s for s in sources if s != t or (include_self and m.allows_self)]
            if m.sources in (Sources.NONE, Sources.OPTIONAL):  # a sweep's baselines read no source
                jobs.append({"source": None, "target": t, "method": m.name})
            elif m.sources is Sources.MANY:
                if usable:
                    jobs.append({"source": ",".join(usable), "target": t, "method": m.name})
            else:
                jobs.extend({"source": s, "target": t, "method": m.name} for s in usable)
    rank = {name: i for i, name in enumerate(execution_order([m.name for m in chosen]))}
    return sorted(jobs, key=lambda j: rank[j["method"]])


def needed_prompts(jobs: list[dict], order: list[str] | None = None) -> list[str]:
    """Tasks whose PT prompt the sweep reads: every source of a method that
    reads source prompts, and the targets of those that read the target's own
    (PANDA); in the order of `order` (e.g. sources + targets as given), else sorted."""
    need: set[str] = set()
    for j in jobs:
        needs = METHODS.get(j["method"]).needs
        if j["source"] and Need.SOURCE_PROMPTS in needs:
            need.update(j["source"].split(","))
        if Need.TARGET_PROMPT in needs:
            need.add(j["target"])
    rank = {t: i for i, t in reversed(list(enumerate(order or [])))}
    return sorted(need, key=lambda t: (rank.get(t, len(rank)), t))


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _die_with_parent() -> None:
    """Linux: a pool worker is killed when the sweep process dies (even by
    SIGKILL), so no orphan finishes a run that the restarted sweep also runs."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(threads: int) -> None:
    """Pool worker set-up: its share of the cores, before torch spins threads."""
    _die_with_parent()
    os.environ["OMP_NUM_THREADS"] = str(threads)  # also stops backbones.default_device raising it
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _run_one(job: dict, backbone: str, config: dict, threads: int | None = None) -> dict:
    """One transfer (in a worker, a Ray task or this process); never raises."""
    if threads is not None:
        import torch

        if "OMP_NUM_THREADS" not in os.environ:
            os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    from . import run_transfer  # the facade: ops.transfer

    cfg = TransferConfig(**config)  # its `train` dict is built into a TrainConfig
    try:
        res = run_transfer(job["source"], job["target"], job["method"], backbone, cfg)
        import torch

        return {"ok": True, **job, "run_id": res.get("run_id"), "test_acc": res.get("test_acc"),
                "reused": bool(res.get("reused")), "pid": os.getpid(), "threads": torch.get_num_threads()}
    except PandaError as err:
        return {"ok": False, **job, "error": str(err)}
    except Exception as err:  # a crash in one run must not lose the others
        return {"ok": False, **job, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"}


def _reap_dead_runs() -> None:
    """Runs left "running" by a killed sweep are marked failed (they will be run again)."""
    try:
        from .jobs import reap

        reap()
    except Exception:  # best effort: the store belongs to jobs/doctor
        pass


def train_missing(jobs: list[dict], backbone: str, config: TransferConfig,
                  log: Callable[[str], None] | None = None, order: list[str] | None = None) -> list[dict]:
    """Train, in one batched run, the PT prompts the sweep reads and the store lacks."""
    from .. import store
    from ..backbones import get_backbone
    from .training import train_prompts

    bb = get_backbone(backbone)
    length = config.train.prompt_length
    needed = needed_prompts(jobs, order)
    have = store.latest_prompts(bb.name, "pt", length, needed, config.train.prompt_type)
    missing = [t for t in needed if t not in have]
    if not missing:
        return []
    if log:
        log(f"training the missing {length}-token PT prompts of {', '.join(missing)} in one batched run")
    return train_prompts(missing, backbone, replace(config.train))  # a copy: the sweep's config stays as given


def run_sweep(
    sources: list[str], targets: list[str], methods: list[str], backbone: str = "minilm",
    config: TransferConfig | None = None, executor: str = "local", workers: int = 1,
    ray_address: str | None = None, log: Callable[[str], None] | None = None,
    train_prompts_first: bool = True,
) -> dict:
    """Run every transfer of the sweep; returns {"runs": [...], "executor",
    "workers", "threads_per_worker", "failed", "trained"}. Finished keys are
    skipped (reported with "reused": true)."""
    config = config or TransferConfig()
    if executor not in ("local", "ray"):
        raise PandaError(f"unknown executor '{executor}'; use local or ray")
    if workers < 1:
        raise PandaError(f"--workers must be at least 1, got {workers}")
    jobs = plan(sources, targets, methods)
    cfg = asdict(config)
    threads = max(1, cores() // workers)
    _reap_dead_runs()
    trained = train_missing(jobs, backbone, config, log, list(sources) + list(targets)) if train_prompts_first else []

    def done(r: dict) -> None:
        if log:
            what = r.get("test_acc") if r["ok"] else f"failed: {r.get('error')}"
            log(f"{r['method']}: {r['source'] or '-'} -> {r['target']}: {what}{' (reused)' if r.get('reused') else ''}")

    results: list[dict] = []
    if executor == "ray":
        results = _run_ray(jobs, backbone, cfg, threads, ray_address, workers, done)
    elif workers == 1:
        for job in jobs:
            results.append(_run_one(job, backbone, cfg))
            done(results[-1])
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            # PANDA needs its PoT teacher: submit in phases so the teacher is stored first
            for phase in _phases(jobs):
                pending = {pool.submit(_run_one, j, backbone, cfg, threads) for j in phase}
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        results.append(fut.result())
                        done(results[-1])
    order = {(j["source"], j["target"], j["method"]): i for i, j in enumerate(jobs)}
    results.sort(key=lambda r: order[(r["source"], r["target"], r["method"])])
    return {"runs": results, "executor": executor, "workers": workers, "threads_per_worker": threads,
            "failed": sum(not r["ok"] for r in results), "trained": trained}


def _phases(jobs: list[dict]) -> list[list[dict]]:
    """Runs that others reuse first (PoT), then those that reuse them (PANDA's teacher)."""
    second = [j for j in jobs if Need.POT_TEACHER in METHODS.get(j["method"]).needs]
    first = [j for j in jobs if j not in second]
    return [p for p in (first, second) if p]


def _ray_env(threads: int) -> dict:
    env = {k: os.environ[k] for k in _PASS_ENV if os.environ.get(k)}
    path = [str(REPO_ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(path)  # workers import panda_core from this checkout
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def _run_ray(jobs, backbone, cfg, threads, address, workers, done) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise PandaError("the ray executor needs the `ray` package: pip install -r requirements.txt") from None
    started = False
    if not ray.is_initialized():
        try:
            local = {} if address else {"num_cpus": workers * threads, "object_store_memory": 128 * 2**20}
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": _ray_env(threads)}, **local)
        except Exception as err:  # ConnectionError, RuntimeError, ...
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise PandaError(f"could not start or reach {where}: {str(err).splitlines()[0][:200]}") from None
        started = True
    try:
        remote = ray.remote(num_cpus=threads, max_retries=1)(_run_one)
        results = []
        for phase in _phases(jobs):
            pending = [remote.remote(j, backbone, cfg, threads) for j in phase]
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    results.append(ray.get(ref))
                    done(results[-1])
        return results
    finally:
        if started:
            ray.shutdown()
