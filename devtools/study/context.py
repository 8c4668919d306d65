"""The state the stages share: the backbone, the tasks, the JSON being built,
the runs' per-item correctness, and the outputs.

Every run goes through `panda_core.ops` (`run_transfer`, `train_prompt`),
which reuses a finished run with the same key, so a killed report resumes
where it stopped. The per-item correctness of the runs is written to
`items.json` next to `results.json` (the page needs only the latter; the
items are the evidence to recompute any interval).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from panda_core import atomic
from panda_core.data import available_tasks, get_task, list_tasks
from panda_core.errors import PandaError
from panda_core.stats import RESULT_KEY, wilson_interval
from panda_core.training import TrainConfig
from panda_core.transfer import TransferConfig

from .analysis import rid
from .config import StudyConfig

Log = Callable[[str], None]

SCHEMA = 2  # results.json layout; 1 was the single-seed study before issue 11


def ci_of(acc: float, n: int) -> list[float]:
    """The Wilson interval of an accuracy whose run kept no per-item record (older runs, projectors)."""
    low, high = wilson_interval(round(acc * n), n)
    return [round(low, 4), round(high, 4)]


def flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A CSV row: nested dicts become prefixed columns ("majority_acc"), lists of seeds are dropped."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out |= flat(v, f"{prefix}{k}_")
        elif not (isinstance(v, list) and v and isinstance(v[0], dict)):
            out[f"{prefix}{k}"] = v
    return out


class Study:
    """One report: its config, loaded backbone, tasks and the results being written."""

    def __init__(self, config: StudyConfig, out_dir: Path, log: Log, md_path: Path) -> None:
        from panda_core.backbones import get_backbone

        from .baselines import PromptBaselines

        self.cfg, self.out, self.log, self.md_path = config, out_dir, log, md_path
        self.out.mkdir(parents=True, exist_ok=True)
        self.bb = get_backbone(config.backbone)
        self.tasks = [t for t in available_tasks() if get_task(t).source == "offline"
                      and (config.tasks is None or t in config.tasks)]
        self.tasks.sort(key=lambda t: (get_task(t).family, t))
        self.test_sizes = {r["name"]: r["n_test"] for r in list_tasks() if r["name"] in self.tasks}
        self.data: dict[str, Any] = {"schema": SCHEMA, "config": config.to_dict(), "tasks": self.tasks,
                                     "families": {t: get_task(t).family for t in self.tasks},
                                     "test_sizes": self.test_sizes}
        self.items: dict[str, str] = {}
        self.baselines = PromptBaselines(self.bb)
        self.t0 = time.time()

    def carry_over(self, keys: list[str]) -> None:
        """Copy `keys` (and, unless the study itself is re-run, its items) from the last results.json."""
        src = self.out / "results.json"
        last = json.loads(src.read_text()) if src.is_file() else {}
        if last.get("schema") != SCHEMA:
            return
        self.data |= {k: last[k] for k in keys if k in last}
        items = self.out / "items.json"
        if "panda_vs_pot" in keys and items.is_file():
            self.items |= json.loads(items.read_text())

    def elapsed(self) -> str:
        return f"[{time.time() - self.t0:.0f} s]"

    def transfer(self, source: str | None, target: str, method: str, train: TrainConfig, **knobs: Any) -> dict:
        """One recorded transfer run (reused from the store when its key is done)."""
        from panda_core.ops import run_transfer

        return run_transfer(source, target, method, self.bb.name, TransferConfig(train=train, **knobs))

    def record(self, arm: str, target: str, source: str | None, seed: int, result: dict[str, Any],
               **extra: Any) -> dict[str, Any]:
        """A run record for the JSON (its items go to `self.items`); an old run without items is refused."""
        if not isinstance(result.get(RESULT_KEY), str):
            raise PandaError(f"run {result.get('run_id')} ({arm} {source}->{target}) has no per-item test "
                             "correctness; it predates issue 11: delete it or change the study's budget")
        rec = {"arm": arm, "target": target, "source": source, "seed": seed,
               "test_acc": result["test_acc"], "ci": result.get("test_acc_ci"), "n": result.get("n_test"),
               "majority": result.get("majority_test_acc"), "seconds": result.get("seconds"),
               "kd_weight": result.get("kd_weight"), "transferability": result.get("transferability"),
               "run_id": result.get("run_id"), "reused": bool(result.get("reused"))} | extra
        self.items[rid(rec)] = result[RESULT_KEY]
        return rec

    def scored(self, arm: str, target: str, source: str | None, seed: int, correct: Any) -> dict[str, Any]:
        """A record of a prompt scored without training (a baseline): the same fields as a run's."""
        from panda_core.stats import encode_items

        from .analysis import accuracy

        a = accuracy(correct)
        rec = {"arm": arm, "target": target, "source": source, "seed": seed, "test_acc": a["acc"],
               "ci": [a["low"], a["high"]], "n": a["n"]}
        self.items[rid(rec)] = encode_items(correct)
        return rec

    def write(self) -> list[str]:
        """results.json, items.json, the CSVs and the page (rendered from the JSON alone)."""
        import pandas as pd

        from ..results_md import render_markdown

        self.data["seconds"] = round(time.time() - self.t0, 1)
        out = [self.out / "results.json", self.out / "items.json"]
        atomic.write_text(out[0], json.dumps(self.data, indent=1, default=str))
        atomic.write_text(out[1], json.dumps(self.items, indent=0, sort_keys=True))
        tables = {"pt": self.data.get("pt"), "nli": (self.data.get("nli") or {}).get("rows"),
                  "study_runs": (self.data.get("panda_vs_pot") or {}).get("runs"),
                  "projectors": self.data.get("projectors")}
        for name, rows in tables.items():
            if rows:
                pd.DataFrame([flat(r) for r in rows]).to_csv(self.out / f"{name}.csv", index=False)
                out.append(self.out / f"{name}.csv")
        if self.data.get("zero_shot"):
            pd.DataFrame(self.data["zero_shot"]["relative"], index=self.tasks, columns=self.tasks).to_csv(
                self.out / "zero_shot_relative.csv")
            out.append(self.out / "zero_shot_relative.csv")
        atomic.write_text(self.md_path, render_markdown(self.data))
        return [str(p) for p in [*out, self.md_path]]
