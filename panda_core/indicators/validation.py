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

Also the science the Transfer and Metric-validation pages show: the PT
reference of a target (`pt_reference`), each run's gain over it and the steps
it took to reach it (`transfer_gains`), the predicted transfer of chosen
sources (`predicted_transfer`) and SPoT-style source retrieval (`rank_sources`).
The Transfer page's PT reference falls back to the target's newest PT prompt
(`store.latest_prompt`, the store's one rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import store
from ..errors import PandaError
from ..registry import Registry
from ..stats import common_prefix, paired_difference, paired_ratio_ci, result_items
from .base import INDICATORS
from .correlation import correlate, default_metrics, rounded

#: (metric, backbone, tasks, prompt_length, prompt_type=...) -> similarity_table dict; pages pass their cached version
TableFn = Callable[..., dict]


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


def steps_to_reach(curve: list, threshold: float | None) -> int | None:
    """First evaluated step whose dev accuracy reaches `threshold` (how fast a
    transfer gets to what prompt tuning reached), or None."""
    if threshold is None:
        return None
    for step, acc in curve:
        if acc >= threshold - 5e-5:  # stored scores are rounded to 4 decimals
            return int(step)
    return None


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


# ------------------------------------------------- the Transfer page's science
@dataclass(frozen=True)
class PtReference:
    """What prompt tuning reached on the target: the batch's PT run (`origin="run"`),
    else the target's newest stored PT prompt (`"stored"`), else nothing (`"none"`)."""

    dev: float | None
    test: float | None
    origin: str
    id: str | None = None  # the run id or the prompt id


def run_curve(run: dict) -> list[tuple[int, float]]:
    """A run's dev curve: its stored points, else the curve in its result."""
    return store.curve(run["id"]) or [tuple(p) for p in (run.get("result") or {}).get("dev_curve") or []]


def pt_reference(runs: Iterable[dict], backbone: str, target: str | None, prompt_length: int,
                 prompt_type: str = "input") -> PtReference:
    """The PT reference of a batch of runs on `target`: a finished PT run among `runs`
    (its best dev accuracy over the curve, its test accuracy), else the target's newest PT prompt."""
    pt_run = next((r for r in runs if r["method"] == "pt" and r["status"] == "done" and r.get("result")), None)
    if pt_run is not None:
        res = pt_run["result"]
        dev = max((acc for _, acc in run_curve(pt_run)), default=res.get("dev_acc"))
        return PtReference(dev, res.get("test_acc"), "run", pt_run["id"])
    row = store.latest_prompt(target, backbone, "pt", prompt_length, prompt_type) if target else None
    if row is not None:
        return PtReference(row["scores"].get("dev_acc"), row["scores"].get("test_acc"), "stored", row["id"])
    return PtReference(None, None, "none")


@dataclass(frozen=True)
class TransferGain:
    """One run against the PT reference: test accuracy minus PT's, the first
    evaluated step whose dev accuracy reached PT's best dev, and that step in seconds."""

    delta_test: float | None
    steps_to_pt_dev: int | None
    seconds_to_pt_dev: float | None


def transfer_gain(run: dict, ref: PtReference, curve: list | None = None) -> TransferGain:
    """`TransferGain` of one run. Steps-to-reach only for runs that train from a
    source (PT is the reference itself; zero-shot has no curve)."""
    res = run.get("result") or {}
    test = res.get("test_acc")
    delta = test - ref.test if test is not None and ref.test else None
    reach = None
    if run.get("source"):
        reach = steps_to_reach(run_curve(run) if curve is None else curve, ref.dev)
    secs, n_steps = res.get("seconds"), res.get("steps")
    seconds = round(secs * reach / n_steps, 1) if reach is not None and secs and n_steps else None
    return TransferGain(delta, reach, seconds)


def transfer_gains(runs: Sequence[dict], ref: PtReference) -> dict[str, TransferGain]:
    """run id -> `TransferGain`, for every run of a batch."""
    return {r["id"]: transfer_gain(r, ref) for r in runs}


def _table(table: TableFn | None) -> TableFn:
    if table is not None:
        return table
    from .similarity import similarity_table

    return similarity_table


def _tasks_with_prompts(backbone: str, prompt_length: int, prompt_type: str = "input") -> list[str]:
    return list(store.latest_prompts(backbone, "pt", prompt_length, prompt_type=prompt_type))


def predicted_transfer(metric: str, backbone: str, sources: Sequence[str], target: str, prompt_length: int = 20,
                       table: TableFn | None = None, prompt_type: str = "input") -> dict[str, float]:
    """Indicator `metric`'s predicted transfer from each source (with a PT prompt) to
    `target`; empty when the target has no prompt or no source is usable."""
    have = set(_tasks_with_prompts(backbone, prompt_length, prompt_type))
    tasks = [s for s in dict.fromkeys(sources) if s in have and s != target]
    if target not in have or not tasks:
        return {}
    t = _table(table)(metric, backbone, tasks + [target], prompt_length, prompt_type=prompt_type)
    j = t["tasks"].index(target)
    return {s: t["matrix"][t["tasks"].index(s)][j] for s in tasks}


@dataclass
class SourceRanking:
    """SPoT-style source retrieval for one target: per indicator, each candidate
    source's score and rank (1 = predicted best; ties share the better rank),
    next to the transfer measured so far (None where no run exists)."""

    target: str
    sources: list[str]  # ordered by the first indicator's rank
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    ranks: dict[str, dict[str, int]] = field(default_factory=dict)
    measured: dict[str, dict[str, float | None]] = field(default_factory=dict)
    #: measure -> source -> the 95% interval of its measured value (`pair_interval`; None: no items)
    measured_ci: dict[str, dict[str, tuple[float, float] | None]] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)  # indicator -> its top source


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    vals = {s: (-np.inf if np.isnan(v) else v) for s, v in scores.items()}
    return {s: 1 + sum(w > v for w in vals.values()) for s, v in vals.items()}


def rank_sources(backbone: str, target: str, indicators: Sequence[str], prompt_length: int = 20,
                 tasks: Sequence[str] | None = None, table: TableFn | None = None,
                 measures: Sequence[str] | None = None, prompt_type: str = "input") -> SourceRanking:
    """Rank every other task with a PT prompt (or `tasks`) as a source for `target`."""
    tasks = list(tasks) if tasks is not None else _tasks_with_prompts(backbone, prompt_length, prompt_type)
    if target not in tasks or len(tasks) < 3 or not indicators:
        raise PandaError(f"ranking sources for '{target}' needs its trained prompt, at least two candidate "
                         "sources with prompts and one indicator")
    out = SourceRanking(target, [])
    order: list[str] = tasks
    for name in indicators:
        t = _table(table)(name, backbone, tasks, prompt_length, prompt_type=prompt_type)
        order, j = t["tasks"], t["tasks"].index(target)
        out.scores[name] = {s: float(t["matrix"][i][j]) for i, s in enumerate(order) if s != target}
        out.ranks[name] = _ranks(out.scores[name])
        out.best[name] = min(out.scores[name], key=lambda s, n=name: -out.scores[n][s])
    sources = [s for s in order if s != target]
    out.sources = sorted(sources, key=lambda s: out.ranks[indicators[0]][s])
    jj = order.index(target)
    for measure in measures or MEASURES.names():
        found = measurement(backbone, order, measure, prompt_length, prompt_type=prompt_type)
        M = found.matrix
        out.measured[measure] = {s: None if np.isnan(M[order.index(s), jj]) else round(float(M[order.index(s), jj]), 4)
                                 for s in sources}
        out.measured_ci[measure] = {s: pair_interval(found, s, target) if out.measured[measure][s] is not None
                                    else None for s in sources}
    return out
