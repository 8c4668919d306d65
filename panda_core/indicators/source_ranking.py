"""The science the Transfer page shows, on top of `validation`'s measured
transfer: the PT reference of a target (`pt_reference`), each run's gain over
it and the steps it took to reach it (`transfer_gains`, `steps_to_reach`),
the predicted transfer of chosen sources (`predicted_transfer`) and
SPoT-style source retrieval (`rank_sources`), whose measured values carry
their paired intervals. The PT reference falls back to the target's newest
PT prompt (`store.latest_prompt`, the store's one rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import store
from ..errors import PandaError
from .validation import MEASURES, measurement, pair_interval

#: (metric, backbone, tasks, prompt_length, prompt_type=...) -> similarity_table dict; pages pass their cached version
TableFn = Callable[..., dict]


def steps_to_reach(curve: list, threshold: float | None) -> int | None:
    """First evaluated step whose dev accuracy reaches `threshold` (how fast a
    transfer gets to what prompt tuning reached), or None."""
    if threshold is None:
        return None
    for step, acc in curve:
        if acc >= threshold - 5e-5:  # stored scores are rounded to 4 decimals
            return int(step)
    return None


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
