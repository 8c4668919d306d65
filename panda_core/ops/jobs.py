"""Background jobs: work launched from the app (or a sweep) runs in its own
detached process, so it survives a page reload, a closed browser and even an
app restart. Everything about a job lives in the run registry:

    queued -> running -> done | failed | cancelled

A job is a row in `runs` with status "queued" and its parameters in
`config`; `python -m panda_core worker RUN_ID` claims it (at most
`PANDA_MAX_JOBS` run at once, default 1 on 2 cores), executes its kind's
entry of `JOB_KINDS`, writes progress and dev-curve points as it goes, and
records the outcome. Cancelling sets a flag the worker polls every step. A
worker that died (killed, machine rebooted) is detected from its pid and its
run marked failed. The process that launched a worker reaps it when it exits,
so finished workers never linger as zombies of the app.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import atomic, paths, store
from ..errors import Cancelled, PandaError
from .job_kinds import JOB_KINDS, JobContext

ACTIVE = store.ACTIVE
LEGACY_STALE_SECONDS = 6 * 3600
DEAD_ERROR = "the process running it died (killed or crashed); rerun it"


def max_jobs() -> int:
    return max(1, int(os.environ.get("PANDA_MAX_JOBS", "1")))


def submit(kind: str, params: dict, launch: bool = True) -> str:
    """Queue a job and start its worker process; `kind` names a `JOB_KINDS`
    entry (train | transfer | project). Malformed parameters are refused here."""
    entry = JOB_KINDS.get(kind)
    entry.arguments(params)
    row = entry.describe(params)
    run_id = store.create_run(kind, row["method"], row["target"], row["backbone"], {"job": params},
                              source=row["source"], status="queued")
    if launch:
        start_worker(run_id)
    return run_id


def start_worker(run_id: str) -> int:
    """Launch the detached worker process for a queued run; returns its pid.
    A daemon thread waits for it, so its exit status is collected (no zombie)."""
    log_dir = paths.sub("logs")
    with open(log_dir / f"{run_id}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panda_core", "worker", run_id],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            cwd=str(paths.REPO_ROOT), start_new_session=True, env=os.environ.copy(),
        )
    threading.Thread(target=proc.wait, name=f"reap-{run_id}", daemon=True).start()
    store.update_run(run_id, pid=proc.pid)
    return proc.pid


def cancel(run_id: str) -> None:
    """Cancel a queued job at once, or ask a running one to stop."""
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


def run_is_dead(run: Mapping[str, Any]) -> bool:
    """True when an active (queued/running) run has lost the process that
    owns it: its recorded owner (host, pid, start time) is gone, or - for a
    background job not yet claimed - its worker pid is gone. A "running" run
    with no recorded process (written by an older version) counts as dead
    once it has not been updated for 6 hours. Runs owned by another machine,
    and queued runs nobody launched, are never judged dead. `run` is a
    `get_run` dict or a `store.Run`."""
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


def reap() -> list[str]:
    """Mark runs whose process is gone as failed; returns their ids."""
    dead = []
    for run in store.run_records(limit=100000):
        if run_is_dead(run) and store.fail_dead_run(run.id, DEAD_ERROR):
            dead.append(run.id)
    return dead


def retry(run_id: str, launch: bool = True) -> str:
    """Queue a failed or cancelled background job again with the same
    parameters; returns the new run id. Transfers whose identical work has
    finished meanwhile are reused rather than recomputed (their key)."""
    run = store.run_record(run_id)
    if run is None:
        raise PandaError(f"unknown run '{run_id}'")
    if run.active and not run_is_dead(run):
        raise PandaError(f"run {run_id} is still {run.status}; cancel it first or wait for it")
    params = run.config.get("job")
    if not isinstance(params, dict):
        raise PandaError(f"run {run_id} was started from the command line, not as a job; run the same command again")
    if run.active:
        store.fail_dead_run(run_id, DEAD_ERROR)
    return submit(run.kind, params, launch=launch)


def list_jobs(limit: int = 100) -> list[dict]:
    """The newest runs (jobs and command-line runs), dead ones marked failed first."""
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
def _context(run_id: str) -> JobContext:
    """Progress written at most twice a second; the cancel flag read at most twice a second."""
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

    return JobContext(run_id, progress, should_stop)


def work(run_id: str) -> int:
    """Body of `python -m panda_core worker RUN_ID`. It waits for its turn
    before importing torch, so a queue of waiting jobs costs little memory.
    Returns the process's exit code (0 done or cancelled, 2 refused, 1 crashed)."""
    run = store.run_record(run_id)
    if run is None:
        raise PandaError(f"unknown run '{run_id}'")
    store.update_run(run_id, pid=os.getpid())
    _exit_on_sigterm()
    while not store.claim_run(run_id, max_jobs()):
        run = store.run_record(run_id)
        if run.status != "queued":
            return 0  # cancelled while waiting, or claimed elsewhere
        store.update_run(run_id, progress={"waiting": True})
        reap()  # a killed worker must not hold its slot for ever
        time.sleep(1.0)
    try:
        entry = JOB_KINDS.get(run.kind)
        entry.execute(entry.arguments(run.config.get("job")), _context(run_id))
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
