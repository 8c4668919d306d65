"""The facade the CLI, the app, job workers and sweeps call: each operation
does one piece of work, records it as a run (through the one lifecycle,
`lifecycle.recorded`) and returns a JSON-ready result.

- `training`: train_prompt, train_prompts, done_train_run (reuse), seconds_per_step, estimate_seconds;
- `transfer`: run_transfer, plan_transfer (prompt ids resolved once, PANDA's teacher a declared dependency);
- `prompt_files`: import_prompt / export_prompt; run_projection (`crossmodel`) is re-exported here;
- `jobs` / `job_kinds`: background jobs (submit, cancel, retry, wait, reap, work) and the JOB_KINDS registry;
- `sweep`: run_sweep (many transfers, resumable; local processes or Ray);
- `doctor`: check (and repair) the cache;
- `bundle`: the study bundle shipped with the tool (zoo/bundle.json): load and look up values
  (`from panda_core.ops import bundle`);
- `compare`: accuracies with their intervals and paired comparisons of runs, as the app shows them;
  `measuring`: measure_plan, the runs that complete a measured transfer matrix in one configuration.

Names are imported on first use, so importing `panda_core.ops` (as every
waiting job worker does) loads no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it (relative to this package)
_LAZY = {
    "recorded": ".lifecycle", "RunHandle": ".lifecycle",
    "train_prompt": ".training", "train_prompts": ".training", "seconds_per_step": ".training", "estimate_seconds": ".training",
    "done_train_run": ".training",
    "run_transfer": ".transfer", "plan_transfer": ".transfer",
    "run_projection": "..crossmodel",
    "import_prompt": ".prompt_files", "export_prompt": ".prompt_files",
    "submit": ".jobs", "cancel": ".jobs", "retry": ".jobs", "wait": ".jobs", "reap": ".jobs",
    "list_jobs": ".jobs", "work": ".jobs", "run_is_dead": ".jobs",
    "JOB_KINDS": ".job_kinds", "JobKind": ".job_kinds", "JobContext": ".job_kinds",
    "run_sweep": ".sweep", "plan": ".sweep",
    "check": ".doctor",
    "accuracy_of": ".compare", "prompt_accuracies": ".compare", "dev_accuracy_of": ".compare", "compare_runs": ".compare",
    "comparisons": ".compare", "indicator_summary": ".compare", "reference_run_of_prompt": ".compare",
    "verdict": ".compare", "measure_plan": ".measuring", "MeasurePlan": ".measuring",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
