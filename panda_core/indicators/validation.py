"""Does an indicator predict real transfer? Measured transfer comes from the
runs in the store; each indicator is scored by rank correlation with it
(Spearman and Kendall, per target over sources, and pooled), as PANDA does.

Measures of transfer for a (source s, target t) pair (`MEASURES`):
- ``zero-shot``: relative performance acc(t | P_s) / acc(t | P_t) (Su et al.);
- ``pot-gain`` / ``panda-gain``: test accuracy of PoT / PANDA on t from s minus
  plain PT on t;
- ``external:<name>``: numbers imported from elsewhere (a paper's CSV;
  `external`), validated the same way and marked external.

A measured matrix keeps to ONE configuration (`measurement`): every run in it
has the same settings (for zero-shot the evaluation settings, otherwise the
whole stored config), and each ratio or difference is taken on the same test
items as its reference (the common prefix of both runs' stored per-item
correctness, or else only a reference with the same test limit).

What the Transfer page builds on these (PT references, gains, source
retrieval) lives in `source_ranking`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import store
from ..errors import PandaError
from ..registry import Registry
from ..stats import common_prefix, paired_difference, paired_ratio_ci, result_items
from .base import INDICATORS
from .correlation import correlate, default_metrics, rounded

#: what decides an evaluation-only run's score: the settings of a zero-shot configuration
EVAL_SETTINGS = ("prompt_length", "test_limit", "max_length", "temperature", "head")


@dataclass(frozen=True)
class Measure:
    """A measured transfer of (source, target) from `method`'s runs: the run's test
    accuracy divided by (`relative`) or minus the target's reference accuracy on the
    same test items. The reference is a run of `reference` on the target (with no
    source, or the target as its own source) or a PT training run of the target, in
    the same configuration. `settings`: the keys of a run's stored config that make
    up a configuration (None: all of it: train settings and the method's knobs)."""

    name: str
    method: str
    relative: bool
    label: str
    reference: str = "pt"
    settings: tuple[str, ...] | None = None

    def of(self, acc: Any, pt: Any) -> Any:
        if self.relative:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.divide(acc, pt) if np.ndim(pt) else (acc / pt if pt else float("nan"))
        return acc - pt


MEASURES: Registry[Measure] = Registry("measure")
MEASURES.register(Measure("zero-shot", "zero-shot", True, "zero-shot transfer, relative to the target's own prompt",
                          reference="zero-shot", settings=EVAL_SETTINGS))
MEASURES.register(Measure("pot-gain", "pot", False, "vanilla PoT test accuracy minus PT"))
MEASURES.register(Measure("panda-gain", "panda", False, "PANDA test accuracy minus PT"))


# ------------------------------------------------------------ measured
#: not a setting: the parameters a background job was submitted with, kept next to the settings they resolved to
JOB_KEY = "job"


def _flat(config: Any) -> dict[str, Any]:
    """A stored (or given) config as one flat dict: a transfer's `train` settings
    next to its method knobs (a TrainConfig / TransferConfig or a dict)."""
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    cfg.pop(JOB_KEY, None)
    train = cfg.get("train")
    return {**train, **{k: v for k, v in cfg.items() if k != "train"}} if isinstance(train, dict) else cfg


def _train_part(run: Mapping[str, Any]) -> dict[str, Any]:
    cfg = run.get("config") or {}
    return dict(cfg["train"]) if isinstance(cfg.get("train"), dict) else {k: v for k, v in cfg.items() if k != JOB_KEY}


def prompt_type_of(run: Mapping[str, Any]) -> str:
    """The prompt type a stored run trained or scored (runs of input prompts do not store it)."""
    return _train_part(run).get("prompt_type") or "input"


def run_settings(run: Mapping[str, Any], measure: Measure) -> dict[str, Any]:
    """The configuration of a stored run as far as `measure` is concerned."""
    flat = _flat(run.get("config"))
    return flat if measure.settings is None else {k: flat[k] for k in measure.settings if k in flat}


def _newest_first(runs: Iterable[dict]) -> list[dict]:
    return sorted((r for r in runs if (r.get("result") or {}).get("test_acc") is not None),
                  key=lambda r: (r["updated"], r["id"]), reverse=True)


def _same_items(run: Mapping[str, Any], ref: Mapping[str, Any]) -> tuple[float, float] | None:
    """(run accuracy, reference accuracy) on the same test items: the common prefix
    of both runs' per-item correctness, else their stored accuracies when both used
    the same test limit; None when the two cannot be put on the same items."""
    a, b = result_items(run["result"]), result_items(ref["result"])
    if a is not None and b is not None:
        a, b = common_prefix(a, b)
        return (float(a.mean()), float(b.mean())) if a.size else None
    if _train_part(run).get("test_limit") != _train_part(ref).get("test_limit"):
        return None
    return float(run["result"]["test_acc"]), float(ref["result"]["test_acc"])


@dataclass
class Measurement:
    """A (sources, targets) matrix of `measure` for ONE configuration (`config`, None
    when no run matched), with the id of each pair's run and each target's reference run."""

    measure: str
    tasks: list[str]
    config: dict[str, Any] | None
    matrix: np.ndarray
    runs: dict[tuple[str, str], str] = field(default_factory=dict)
    references: dict[tuple[str, str], str] = field(default_factory=dict)  # (source, target) -> reference run

    def missing_references(self) -> list[str]:
        """Targets with at least one run whose reference is missing (or on other test items)."""
        return sorted({t for (s, t) in self.runs if (s, t) not in self.references})


def measurement(backbone: str, tasks: list[str], measure: str = "zero-shot", prompt_length: int | None = None,
                config: Mapping[str, Any] | Any | None = None, prompt_type: str = "input") -> Measurement:
    """The measured matrix of `measure` for one configuration of runs.

    `config` (a flat dict of settings, or a TrainConfig / TransferConfig) picks the
    configuration: its keys (with `prompt_length`) must match; the newest finished
    run among `tasks` that matches then fixes every other setting, and only runs of
    exactly those settings fill the matrix (the newest of each pair). Each value is
    taken against the target's newest reference run of the same settings (the test
    limit aside) on the same test items; NaN where no such run or reference exists.
    Runs and references of another `prompt_type` are never used."""
    m = MEASURES.get(measure)
    wanted = _flat(config) | ({} if prompt_length is None else {"prompt_length": prompt_length})
    wanted = {k: v for k, v in wanted.items() if m.settings is None or k in m.settings}
    done = _newest_first(r for r in store.list_runs(kind="transfer", status="done", limit=100000)
                         if r["backbone"] == backbone and prompt_type_of(r) == prompt_type)
    mine = [r for r in done if r["method"] == m.method and r["source"] in tasks and r["target"] in tasks]
    chosen = next((r for r in mine if all(run_settings(r, m).get(k) == v for k, v in wanted.items())), None)
    out = Measurement(m.name, list(tasks), None if chosen is None else run_settings(chosen, m),
                      np.full((len(tasks), len(tasks)), np.nan))
    if chosen is None:
        out.config = wanted or None
        return out
    keys = [k for k in _train_part(chosen) if k != "test_limit" and k in out.config]
    trains = _newest_first(r for r in store.list_runs(kind="train", status="done", limit=100000)
                           if r["backbone"] == backbone and r["method"] == "pt" and prompt_type_of(r) == prompt_type)
    candidates = [r for r in done if r["method"] == m.reference] + trains  # the reference method's own runs first
    for run in mine:
        s, t = run["source"], run["target"]
        if (s, t) in out.runs or run_settings(run, m) != out.config:
            continue
        out.runs[(s, t)] = run["id"]
        for ref in candidates:
            ok = ref["target"] == t and ref.get("source") in (None, t)
            same = ok and all(_train_part(ref).get(k) == out.config[k] for k in keys)
            pair = _same_items(run, ref) if same else None
            if pair is not None:
                out.matrix[tasks.index(s), tasks.index(t)] = m.of(*pair)
                out.references[(s, t)] = ref["id"]
                break
    return out


def pair_interval(found: Measurement, source: str, target: str) -> tuple[float, float] | None:
    """The 95% interval of one measured value: a bootstrap over the test items its
    run and its reference share (paired: an item's two results are resampled
    together); None without a run, a reference or per-item results."""
    rid, ref = found.runs.get((source, target)), found.references.get((source, target))
    if rid is None or ref is None:
        return None
    a, b = (result_items((store.get_run(i) or {}).get("result")) for i in (rid, ref))
    if a is None or b is None:
        return None
    a, b = common_prefix(a, b)
    if not a.size:
        return None
    if MEASURES.get(found.measure).relative:
        return paired_ratio_ci(a, b)
    d = paired_difference(a, b)
    return d.low, d.high


def measured_matrix(backbone: str, tasks: list[str], measure: str = "zero-shot",
                    prompt_length: int | None = None, config: Mapping[str, Any] | Any | None = None,
                    prompt_type: str = "input") -> np.ndarray:
    """(sources, targets) matrix of measured transfer in one configuration (`measurement`);
    NaN where no run of that configuration, or no reference on the same items, exists."""
    return measurement(backbone, tasks, measure, prompt_length, config, prompt_type).matrix


def missing_pairs(backbone: str, tasks: list[str], measure: str, prompt_length: int | None = None,
                  config: Mapping[str, Any] | Any | None = None, prompt_type: str = "input") -> list[tuple[str, str]]:
    """Ordered (source, target) pairs of distinct tasks with no run yet in the
    configuration `measurement` picks (a pair whose run lacks a reference is not
    missing: running it again would not help; see `Measurement.missing_references`)."""
    runs = measurement(backbone, tasks, measure, prompt_length, config, prompt_type).runs
    return [(s, t) for s in tasks for t in tasks if s != t and (s, t) not in runs]


def validate_indicators(
    backbone: str, tasks: list[str] | None = None, measure: str = "zero-shot",
    metrics: list[str] | None = None, prompt_length: int | None = None, n_inputs: int = 32,
    config: Mapping[str, Any] | Any | None = None, prompt_type: str = "input",
) -> dict:
    """Rank correlation of every indicator (`default_metrics`) with the measured
    transfer of one configuration (`measurement`): Spearman and Kendall with
    bootstrap intervals, NDCG@3 and the top-beats-median rate (`correlate`).

    `measure` is a `MEASURES` name (runs in the store; `prompt_length` None means
    20) or ``"external:<name>"``, numbers imported from elsewhere
    (`external.validate_external`; its result says ``"external": True``).

    Returns {"tasks", "measure", "backbone", "config", "measured", "missing_references",
    "indicators": {metric: {"matrix", correlations...}}, "best"}."""
    from .external import external_name
    from .similarity import task_prompts

    metrics = list(metrics or default_metrics(backbone))
    for name in metrics:
        INDICATORS.get(name)  # refuse unknown names before any work
    if external_name(measure) is not None:
        from .external import validate_external

        return validate_external(external_name(measure), backbone, tasks, metrics, prompt_length, n_inputs,
                                 prompt_type)
    MEASURES.get(measure)
    prompt_length = 20 if prompt_length is None else prompt_length
    prompts = task_prompts(backbone, tasks, prompt_length, prompt_type)
    tasks = [p.task for p in prompts]
    found = measurement(backbone, tasks, measure, prompt_length, config, prompt_type)
    measured = found.matrix
    off_diag = ~np.eye(len(tasks), dtype=bool)
    if np.isnan(measured[off_diag]).all():
        if found.runs:
            raise PandaError(
                f"{len(found.runs)} {measure} runs among these tasks on '{backbone}' ({found.config}) have no "
                f"reference on the same test items for {', '.join(found.missing_references())}; run "
                f"'{MEASURES.get(measure).reference}' on those targets with the same settings")
        raise PandaError(
            f"no {measure} transfer runs among these tasks on '{backbone}' yet; run transfers first "
            "(Transfer page, `python -m panda_core sweep`, or `report`)"
        )
    out, best = correlate(metrics, backbone, tasks, prompt_length, measured, n_inputs, prompt_type)
    return {"tasks": tasks, "measure": measure, "backbone": backbone, "prompt_type": prompt_type, "config": found.config,
            "measured": rounded(measured), "missing_references": found.missing_references(),
            "indicators": out, "best": best, "external": False}
