"""Background jobs: work launched from the app (or a sweep) runs in its own
detached process, so it survives a page reload, a closed browser and even an
app restart. Everything about a job lives in the run registry:

    queued -> running -> done | failed | cancelled

A job is a row in `runs` with status "queued" and its parameters in
`config`; `python -m panda_core worker RUN_ID` claims it (at most
`PANDA_MAX_JOBS` run at once, default 1 on 2 cores), executes it, writes
progress and dev-curve points as it goes, and records the outcome. Cancelling
sets a flag the worker polls every step. A worker that died (killed, machine
rebooted) is detected from its pid and its run marked failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from . import paths, store
from .errors import PandaError

ACTIVE = ("queued", "running")


def max_jobs() -> int:
    return max(1, int(os.environ.get("PANDA_MAX_JOBS", "1")))


def submit(kind: str, params: dict, launch: bool = True) -> str:
    """Queue a job and start its worker process. kind: train | transfer | project."""
    if kind not in ("train", "transfer", "project"):
        raise PandaError(f"unknown job kind '{kind}'")
    method = params.get("method", "pt")
    target = params.get("target") or params.get("task") or params.get("train_task") or "?"
    backbone = params.get("backbone") or params.get("target_backbone") or "minilm"
    run_id = store.create_run(kind, method, target, backbone, {"job": params}, source=params.get("source"),
                              status="queued")
    if launch:
        start_worker(run_id)
    return run_id


def start_worker(run_id: str) -> int:
    """Launch the detached worker process for a queued run; returns its pid."""
    log_dir = paths.sub("logs")
    with open(log_dir / f"{run_id}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panda_core", "worker", run_id],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            cwd=str(paths.REPO_ROOT), start_new_session=True, env=os.environ.copy(),
        )
    store.update_run(run_id, pid=proc.pid)
    return proc.pid


def cancel(run_id: str) -> None:
    run = store.get_run(run_id)
    if run is None:
        raise PandaError(f"unknown run '{run_id}'")
    if run["status"] == "queued":
        store.update_run(run_id, status="cancelled", cancel=True, error="cancelled before it started")
    elif run["status"] == "running":
        store.update_run(run_id, cancel=True)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # a zombie is not alive
        try:
            return stat.read_text().split()[2] != "Z"
        except (OSError, IndexError):
            return True
    return True


def reap() -> list[str]:
    """Mark runs whose worker process is gone as failed; returns their ids."""
    dead = []
    for run in store.list_runs(limit=2000):
        if run["status"] in ACTIVE and run.get("pid") and not _alive(run["pid"]):
            store.update_run(run["id"], status="failed", error="the worker process died (killed or crashed); rerun it")
            dead.append(run["id"])
    return dead


def list_jobs(limit: int = 100) -> list[dict]:
    reap()
    return store.list_runs(limit=limit)


def wait(run_id: str, timeout: float = 600.0, poll: float = 0.5) -> dict:
    """Block until a job leaves queued/running (for tests and scripts)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = store.get_run(run_id)
        if run and run["status"] not in ACTIVE:
            return run
        if run and run.get("pid") and not _alive(run["pid"]):
            reap()
        time.sleep(poll)
    raise PandaError(f"run {run_id} did not finish within {timeout:.0f} s")


# ------------------------------------------------------------------ worker
def work(run_id: str) -> int:
    """Body of `python -m panda_core worker RUN_ID`."""
    from .train import Cancelled

    run = store.get_run(run_id)
    if run is None:
        raise PandaError(f"unknown run '{run_id}'")
    store.update_run(run_id, pid=os.getpid())
    while not store.claim_run(run_id, max_jobs()):
        run = store.get_run(run_id)
        if run["status"] != "queued":
            return 0  # cancelled while waiting, or claimed elsewhere
        store.update_run(run_id, progress={"waiting": True})
        time.sleep(1.0)
    params = run["config"]["job"]
    last = [0.0]

    def progress(info: dict) -> None:
        now = time.time()
        if now - last[0] > 0.5 or info.get("step") == info.get("steps"):
            last[0] = now
            store.update_run(run_id, progress=info)

    stop_checked = [0.0, False]

    def should_stop() -> bool:
        now = time.time()
        if now - stop_checked[0] > 0.5:
            stop_checked[0], stop_checked[1] = now, store.cancel_requested(run_id)
        return stop_checked[1]

    try:
        _execute(run["kind"], params, run_id, progress, should_stop)
    except Cancelled:
        store.update_run(run_id, status="cancelled", error="cancelled by the user")
    except PandaError as err:
        store.update_run(run_id, status="failed", error=str(err))
        return 2
    except Exception as err:  # recorded for the UI; the log file has the traceback
        import traceback

        traceback.print_exc()
        store.update_run(run_id, status="failed", error=f"{type(err).__name__}: {err}"[:500])
        return 1
    return 0


def _execute(kind: str, params: dict, run_id: str, progress, should_stop) -> None:
    from .train import TrainConfig

    if kind == "train":
        from .runs import train_prompt

        cfg = TrainConfig(**params.get("config", {}))
        train_prompt(params["task"], params.get("backbone", "minilm"), cfg, progress, should_stop, run_id=run_id)
    elif kind == "transfer":
        from .transfer import TransferConfig, run_transfer

        raw = dict(params.get("config", {}))
        train_cfg = TrainConfig(**raw.pop("train", {}))
        run_transfer(params.get("source"), params["target"], params["method"], params.get("backbone", "minilm"),
                     TransferConfig(train=train_cfg, **raw), progress, should_stop, run_id=run_id)
    else:
        from .projector import run_projection

        run_projection(progress=progress, run_id=run_id, **params)
