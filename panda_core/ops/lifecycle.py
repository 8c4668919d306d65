"""The one run lifecycle: create (or adopt a queued run) -> running ->
done / cancelled / failed. Every recorded operation (training, transfers,
projections, multi-prompt runs, job workers) goes through `recorded()`, so the
bookkeeping is written once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .. import store
from ..errors import Cancelled


def one_line(err: BaseException, limit: int = 500) -> str:
    """The first line of an error's message (its type when it has none)."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:limit]


@dataclass
class RunHandle:
    """What a recorded operation writes while it runs."""

    id: str
    finished: bool = False

    def curve(self, step: int, value: float, split: str = "dev") -> None:
        store.add_curve_point(self.id, step, value, split)

    def done(self, result: dict[str, Any], prompt_id: str | None = None) -> None:
        store.update_run(self.id, status="done", result=result, prompt_id=prompt_id)
        self.finished = True


@contextmanager
def recorded(kind: str, method: str, target: str, backbone: str, config: dict, *,
             source: str | None = None, key: str | None = None, run_id: str | None = None) -> Iterator[RunHandle]:
    """Record one run around a block. `run_id` adopts a run created earlier
    (a queued job); otherwise a new row is created. The block calls
    `handle.done(result)`; leaving it by `Cancelled` records "cancelled", by
    any other exception "failed" with the error's first line, and re-raises.
    "done" is final: an error raised after `done()` (e.g. by later work of a
    batch) leaves the finished run as it is."""
    if run_id is None:
        run_id = store.create_run(kind, method, target, backbone, config, source=source, key=key)
    else:
        # a queued job's row holds only the job's parameters; record the settings the run resolved to next to
        # them (as a direct run records them), so readers of run settings see one form whoever started the run
        job = ((store.get_run(run_id) or {}).get("config") or {}).get("job")
        resolved = (dict(config) | ({"job": job} if job is not None else {})) if config else None
        store.update_run(run_id, status="running", key=key, config=resolved)
    handle = RunHandle(run_id)
    try:
        yield handle
    except Cancelled as err:
        if not handle.finished:
            store.update_run(run_id, status="cancelled", error=one_line(err))
        raise
    except BaseException as err:
        if not handle.finished:
            store.update_run(run_id, status="failed", error=one_line(err))
        raise
    if not handle.finished:
        store.update_run(run_id, status="failed", error="the run ended without a result")
