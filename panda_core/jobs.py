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

from . import atomic, paths, store
from .errors import PandaError

ACTIVE = ("queued", "running")
LEGACY_STALE_SECONDS = 6 * 3600


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
    if run_is_dead(run):
        store.fail_dead_run(run_id, DEAD_ERROR)
    elif run["status"] == "queued":
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
            text = stat.read_text()
            return text[text.rindex(")") + 2:].split()[0] not in ("Z", "X")
        except (OSError, IndexError, ValueError):
            return True
    return True


def run_is_dead(run: dict) -> bool:
    """True when an active (queued/running) run has lost the process that
    owns it: its recorded owner (host, pid, start time) is gone, or - for a
    background job not yet claimed - its worker pid is gone. A "running" run
    with no recorded process (written by an older version) counts as dead
    once it has not been updated for 6 hours. Runs owned by another machine,
    and queued runs nobody launched, are never judged dead."""
    if run.get("status") not in ACTIVE:
        return False
    owner = run.get("owner")
    if owner:
        alive = atomic.token_alive(owner)
        if alive is not None:
            return not alive
    if run.get("pid"):
        return not _alive(run["pid"])
    # "running" with no recorded process: written by a version before owners were recorded
    return run["status"] == "running" and time.time() - float(run.get("updated") or 0) > LEGACY_STALE_SECONDS


class Terminated(BaseException):
    """Raised in a worker on SIGTERM; recorded as the run's error."""


DEAD_ERROR = "the process running it died (killed or crashed); rerun it"


def reap() -> list[str]:
    """Mark runs whose process is gone as failed; returns their ids."""
    dead = []
    for run in store.list_runs(limit=100000):
        if run_is_dead(run) and store.fail_dead_run(run["id"], DEAD_ERROR):
            dead.append(run["id"])
    return dead


def retry(run_id: str, launch: bool = True) -> str:
    """Queue a failed or cancelled background job again with the same
    parameters; returns the new run id. Transfers whose identical work has
    finished meanwhile are reused rather than recomputed (their key)."""
    run = store.get_run(run_id)
    if run is None:
        raise PandaError(f"unknown run '{run_id}'")
    if run["status"] in ACTIVE and not run_is_dead(run):
        raise PandaError(f"run {run_id} is still {run['status']}; cancel it first or wait for it")
    params = (run.get("config") or {}).get("job")
    if not isinstance(params, dict):
        raise PandaError(f"run {run_id} was started from the command line, not as a job; run the same command again")
    if run["status"] in ACTIVE:
        store.fail_dead_run(run_id, DEAD_ERROR)
    return submit(run["kind"], params, launch=launch)


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
    """Body of `python -m panda_core worker RUN_ID`. It waits for its turn
    before importing torch, so a queue of waiting jobs costs little memory."""
    run = store.get_run(run_id)
    if run is None:
        raise PandaError(f"unknown run '{run_id}'")
    store.update_run(run_id, pid=os.getpid())
    _exit_on_sigterm()
    while not store.claim_run(run_id, max_jobs()):
        run = store.get_run(run_id)
        if run["status"] != "queued":
            return 0  # cancelled while waiting, or claimed elsewhere
        store.update_run(run_id, progress={"waiting": True})
        reap()  # a killed worker must not hold its slot for ever
        time.sleep(1.0)
    from .train import Cancelled

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
    except Terminated as err:
        store.fail_dead_run(run_id, str(err))
        return 143
    except Exception as err:  # recorded for the UI; the log file has the traceback
        import traceback

        traceback.print_exc()
        store.update_run(run_id, status="failed", error=f"{type(err).__name__}: {err}"[:500])
        return 1
    return 0


def _exit_on_sigterm() -> None:
    """SIGTERM (a polite kill, a shutdown) unwinds the worker like an error,
    so its run is recorded as failed instead of left running."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated("stopped by a termination signal (SIGTERM); rerun it")

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests calling work() directly)
        pass


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

        run_projection(progress=progress, run_id=run_id, should_stop=should_stop, **params)
