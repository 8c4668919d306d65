"""What a measured transfer matrix still needs, in ONE configuration.

`validation.measurement` keeps to one configuration of runs (the newest
matching run fixes every setting) and takes each value against a reference
run of the target with the same settings, on the same test items (PT from
scratch for the gains, the target's own prompt for zero-shot). Launching
"more pairs" with other settings would therefore start a second
configuration instead of completing the first, and a pair run without its
reference measures nothing. `measure_plan` gives the runs that complete the
measurement: the missing pairs of the measure's method and the reference
runs their targets lack, all in the measured configuration's settings (or in
the given settings when nothing is measured yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .. import store


@dataclass
class MeasurePlan:
    """Runs that complete a measurement. `config` is the TransferConfig dict
    they are submitted with; `measured` says it is the configuration of runs
    already measured (False: no run yet, the given settings start one)."""

    measure: str
    method: str
    reference: str
    config: dict[str, Any]
    measured: bool
    settings: dict[str, Any]  # the settings that make up the configuration (the measured ones, else the given)
    values: int  # measured (source, target) values of distinct tasks so far
    pairs: list[dict[str, Any]] = field(default_factory=list)  # {"source", "target", "method"}
    references: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # targets with a run but no reference yet

    def jobs(self, n: int) -> list[dict[str, Any]]:
        """The first `n` missing pairs, after the references that their targets,
        and the runs measured so far, lack."""
        pairs = self.pairs[:max(0, n)]
        wanted = {p["target"] for p in pairs} | set(self.waiting)
        return [r for r in self.references if r["target"] in wanted] + pairs


def _field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def submit_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The TransferConfig dict (as runs store it) of flat settings: training
    settings under "train", the method knobs beside them; others default."""
    from ..training import TrainConfig
    from ..transfer.config import TransferConfig

    train = {k: v for k, v in settings.items() if k in _field_names(TrainConfig)}
    knobs = {k: v for k, v in settings.items() if k in _field_names(TransferConfig) - {"train"}}
    return TransferConfig(train=TrainConfig.from_dict(train), **knobs).to_dict()


def _train_part(config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(config or {})
    return dict(cfg["train"]) if isinstance(cfg.get("train"), dict) else cfg


def _has_reference(runs: list[dict], target: str, train: Mapping[str, Any], keys: list[str]) -> bool:
    """A finished reference run of `target` in these settings (the test limit aside) whose
    items can be put beside a new run's: stored per-item results, or the same test limit."""
    for r in runs:
        if r["target"] != target or r.get("source") not in (None, target):
            continue
        part = _train_part(r.get("config"))
        if all(part.get(k) == train.get(k) for k in keys) and (
                isinstance((r.get("result") or {}).get("test_correct"), str)
                or part.get("test_limit") == train.get("test_limit")):
            return True
    return False


def measure_plan(backbone: str, tasks: list[str], measure: str, prompt_length: int,
                 settings: Mapping[str, Any] | None = None, prompt_type: str = "input") -> MeasurePlan:
    """The runs that complete the (sources, targets) matrix of `measure` among
    `tasks` with `prompt_type` prompts of `prompt_length` tokens (`validation.measurement`'s
    configuration), as job parameters for `ops.submit("transfer", ...)`.

    `settings` (flat training settings and knobs) apply only when no run is
    measured yet; otherwise the measured configuration's own settings are used,
    so the new runs join it."""
    from ..indicators import validation
    from ..transfer import METHODS, Sources

    m = validation.MEASURES.get(measure)
    found = validation.measurement(backbone, tasks, measure, prompt_length, prompt_type=prompt_type)
    measured = bool(found.runs)
    flat = dict(found.config or {}) if measured else dict(settings or {})
    config = submit_config(flat | {"prompt_length": prompt_length, "prompt_type": prompt_type})
    train = config["train"]
    keys = [k for k in train if k != "test_limit" and (m.settings is None or k in m.settings)]
    done = [r for r in store.list_runs(kind="transfer", status="done", limit=100000)
            if r["backbone"] == backbone and r["method"] == m.reference]
    done += [r for r in store.list_runs(kind="train", status="done", limit=100000)
             if r["backbone"] == backbone and r["method"] == "pt"]
    done = [r for r in done if validation.prompt_type_of(r) == prompt_type]
    ref_method = METHODS.get(m.reference)
    sourceless = ref_method.sources in (Sources.NONE, Sources.OPTIONAL)
    off = ~np.eye(len(tasks), dtype=bool)
    plan = MeasurePlan(m.name, m.method, m.reference, config, measured, flat,
                       int(np.sum(~np.isnan(found.matrix[off]))))
    plan.pairs = [{"source": s, "target": t, "method": m.method} for s in tasks for t in tasks
                  if s != t and (s, t) not in found.runs]
    plan.waiting = found.missing_references()
    needed = {p["target"] for p in plan.pairs} | set(plan.waiting)
    plan.references = [{"source": None if sourceless else t, "target": t, "method": m.reference}
                       for t in tasks if t in needed and not _has_reference(done, t, train, keys)]
    return plan
