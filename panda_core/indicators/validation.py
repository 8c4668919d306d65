"""Does an indicator predict real transfer? Measured transfer comes from the
runs in the store; each indicator is scored by rank correlation with it
(Spearman and Kendall, per target over sources, and pooled), as PANDA does.

Measures of transfer for a (source s, target t) pair (`MEASURES`):
- ``zero-shot``: relative performance acc(t | P_s) / acc(t | P_t) (Su et al.);
- ``pot-gain`` / ``panda-gain``: test accuracy of PoT / PANDA on t from s minus
  plain PT on t.

Also the science the Transfer and Metric-validation pages show: the PT
reference of a target (`pt_reference`), each run's gain over it and the steps
it took to reach it (`transfer_gains`), the predicted transfer of chosen
sources (`predicted_transfer`) and SPoT-style source retrieval (`rank_sources`).
The PT accuracy of a task always comes from its newest PT prompt
(`store.latest_prompts`, the store's one rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import store
from ..errors import PandaError
from ..registry import Registry
from .base import INDICATORS
from .correlation import rank_correlation

#: (metric, backbone, tasks, prompt_length) -> similarity_table dict; pages pass their cached version
TableFn = Callable[[str, str, list[str], int], dict]


@dataclass(frozen=True)
class Measure:
    """A measured transfer of (source, target) from `method`'s runs: the run's test
    accuracy divided by (`relative`) or minus the target's PT test accuracy."""

    name: str
    method: str
    relative: bool
    label: str

    def of(self, acc: float, pt: float) -> float:
        return acc / pt if self.relative else acc - pt


MEASURES: Registry[Measure] = Registry("measure")
MEASURES.register(Measure("zero-shot", "zero-shot", True, "zero-shot transfer, relative to the target's PT accuracy"))
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
def pt_scores(backbone: str, prompt_length: int | None = None) -> dict[str, float]:
    """Test accuracy of each task's newest PT prompt (of `prompt_length` tokens when given)."""
    rows = store.latest_prompts(backbone, "pt", prompt_length)
    return {t: r["scores"]["test_acc"] for t, r in rows.items() if r["scores"].get("test_acc") is not None}


def transfer_results(backbone: str, method: str) -> dict[tuple[str, str], float]:
    """Newest test accuracy of each (source, target) transfer run of `method`."""
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for run in store.list_runs(kind="transfer", status="done", limit=100000):
        if run["backbone"] != backbone or run["method"] != method or not run["result"]:
            continue
        key = (run["source"], run["target"])
        if key not in out or run["updated"] > out[key][0]:
            out[key] = (run["updated"], run["result"]["test_acc"])
    return {k: v for k, (_, v) in out.items()}


def measured_matrix(backbone: str, tasks: list[str], measure: str = "zero-shot",
                    prompt_length: int | None = None) -> np.ndarray:
    """(sources, targets) matrix of measured transfer; NaN where no run exists."""
    m = MEASURES.get(measure)
    pt = pt_scores(backbone, prompt_length)
    runs = transfer_results(backbone, m.method)
    M = np.full((len(tasks), len(tasks)), np.nan)
    for i, s in enumerate(tasks):
        for j, t in enumerate(tasks):
            if (s, t) in runs and t in pt:
                M[i, j] = m.of(runs[(s, t)], pt[t])
    return M


def missing_pairs(backbone: str, tasks: list[str], measure: str) -> list[tuple[str, str]]:
    """Ordered (source, target) pairs of distinct tasks with no measured transfer yet."""
    M = measured_matrix(backbone, tasks, measure)
    return [(s, t) for i, s in enumerate(tasks) for j, t in enumerate(tasks) if i != j and np.isnan(M[i, j])]


def validate_indicators(
    backbone: str, tasks: list[str] | None = None, measure: str = "zero-shot",
    metrics: list[str] | None = None, prompt_length: int = 20, n_inputs: int = 32,
) -> dict:
    """Rank correlation of every indicator (every registered one by default) with the measured transfer.

    Returns {"tasks", "measure", "measured", "indicators": {metric: {"matrix", correlations...}}, "best"}."""
    from .similarity import similarity_table, task_prompts

    metrics = list(metrics or INDICATORS.names())
    for name in metrics:
        INDICATORS.get(name)  # refuse unknown names before any work
    MEASURES.get(measure)
    prompts = task_prompts(backbone, tasks, prompt_length)
    tasks = [p.task for p in prompts]
    measured = measured_matrix(backbone, tasks, measure)
    off_diag = ~np.eye(len(tasks), dtype=bool)
    if np.isnan(measured[off_diag]).all():
        raise PandaError(
            f"no {measure} transfer runs among these tasks on '{backbone}' yet; run transfers first "
            "(Transfer page, `python -m panda_core sweep`, or `report`)"
        )
    out = {}
    for metric in metrics:
        table = similarity_table(metric, backbone, tasks, prompt_length, n_inputs=n_inputs)
        pred = np.array(table["matrix"])
        out[metric] = {"matrix": table["matrix"]} | rank_correlation(pred, measured)
    ranked = sorted(out, key=lambda m: -np.nan_to_num(out[m]["spearman_mean"], nan=-9))
    return {"tasks": tasks, "measure": measure, "backbone": backbone,
            "measured": [[None if np.isnan(x) else round(float(x), 4) for x in row] for row in measured],
            "indicators": out, "best": ranked[0] if ranked else None}


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


def pt_reference(runs: Iterable[dict], backbone: str, target: str | None, prompt_length: int) -> PtReference:
    """The PT reference of a batch of runs on `target`: a finished PT run among `runs`
    (its best dev accuracy over the curve, its test accuracy), else the target's newest PT prompt."""
    pt_run = next((r for r in runs if r["method"] == "pt" and r["status"] == "done" and r.get("result")), None)
    if pt_run is not None:
        res = pt_run["result"]
        dev = max((acc for _, acc in run_curve(pt_run)), default=res.get("dev_acc"))
        return PtReference(dev, res.get("test_acc"), "run", pt_run["id"])
    row = store.latest_prompt(target, backbone, "pt", prompt_length) if target else None
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


def _tasks_with_prompts(backbone: str, prompt_length: int) -> list[str]:
    return list(store.latest_prompts(backbone, "pt", prompt_length))


def predicted_transfer(metric: str, backbone: str, sources: Sequence[str], target: str, prompt_length: int = 20,
                       table: TableFn | None = None) -> dict[str, float]:
    """Indicator `metric`'s predicted transfer from each source (with a PT prompt) to
    `target`; empty when the target has no prompt or no source is usable."""
    have = set(_tasks_with_prompts(backbone, prompt_length))
    tasks = [s for s in dict.fromkeys(sources) if s in have and s != target]
    if target not in have or not tasks:
        return {}
    t = _table(table)(metric, backbone, tasks + [target], prompt_length)
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
    best: dict[str, str] = field(default_factory=dict)  # indicator -> its top source


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    vals = {s: (-np.inf if np.isnan(v) else v) for s, v in scores.items()}
    return {s: 1 + sum(w > v for w in vals.values()) for s, v in vals.items()}


def rank_sources(backbone: str, target: str, indicators: Sequence[str], prompt_length: int = 20,
                 tasks: Sequence[str] | None = None, table: TableFn | None = None,
                 measures: Sequence[str] | None = None) -> SourceRanking:
    """Rank every other task with a PT prompt (or `tasks`) as a source for `target`."""
    tasks = list(tasks) if tasks is not None else _tasks_with_prompts(backbone, prompt_length)
    if target not in tasks or len(tasks) < 3 or not indicators:
        raise PandaError(f"ranking sources for '{target}' needs its trained prompt, at least two candidate "
                         "sources with prompts and one indicator")
    out = SourceRanking(target, [])
    order: list[str] = tasks
    for name in indicators:
        t = _table(table)(name, backbone, tasks, prompt_length)
        order, j = t["tasks"], t["tasks"].index(target)
        out.scores[name] = {s: float(t["matrix"][i][j]) for i, s in enumerate(order) if s != target}
        out.ranks[name] = _ranks(out.scores[name])
        out.best[name] = min(out.scores[name], key=lambda s, n=name: -out.scores[n][s])
    sources = [s for s in order if s != target]
    out.sources = sorted(sources, key=lambda s: out.ranks[indicators[0]][s])
    jj = order.index(target)
    for measure in measures or MEASURES.names():
        M = measured_matrix(backbone, order, measure)
        out.measured[measure] = {s: None if np.isnan(M[order.index(s), jj]) else round(float(M[order.index(s), jj]), 4)
                                 for s in sources}
    return out
