"""The measuring kit every case shares: the run's sizes (`BenchConfig`), one
result row (`Case`), interleaved timing (`interleaved`, `median`), peak
memory (`PeakRSS`) and what the numbers were measured on (`machine`).

Kept apart from the cases so a case module only says *what* it times; how a
repetition is scheduled, timed and summarised is decided here once.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from panda_core.errors import PandaError

Log = Callable[[str], None]

# tasks for the multi-task and indicator cases, in order of preference
BENCH_TASKS = ["mr", "yelp_uci", "amazon_uci", "imdb_uci", "tweets", "bbc", "spam_assassin", "epistemic",
               "amazon_snippets", "nyt_editorials", "r8", "ng20", "presuppositions", "vitaminc"]
SWEEP_TASKS = ["yelp_uci", "amazon_uci", "imdb_uci", "presuppositions"]


@dataclass
class BenchConfig:
    """Sizes of the benchmark. `quick` is for CI: it checks that every case
    runs and reports, not speed."""

    quick: bool = False
    backbones: tuple[str, ...] = ("minilm", "mpnet")
    task: str = "mr"
    # the step cases (pt_step, panda_step)
    batch_size: int = 16
    prompt_length: int = 20
    max_length: int = 128
    n_batches: int = 3  # distinct batches per timed call (cycled)
    reps: int = 7  # at most; fewer (never under 3) when a repetition is slow, see step_budget
    warmup: int = 1
    # time budgets (None: no limit)
    step_budget: float | None = 90.0  # seconds per step group (per backbone) and for batched_prompts
    indicator_budget: float | None = 60.0  # seconds per indicator case (at least one repetition)
    sweep_budget: float | None = 300.0  # a second round of sweeps only if the first took under half
    # batched_prompts
    k_tasks: int = 8  # K, the prompts trained together
    per_task_batch: int = 16  # rows of each task per step
    batched_steps: int = 1
    # the indicator cases
    n_prompts: int = 12  # K of the K x K matrices
    n_inputs: int = 32  # task inputs per prompt (PANDA metric)
    indicator_reps: int = 3
    panda_reps: int = 2  # the PANDA-metric peer is slow: fewer repetitions
    # the sweep cases
    sweep_size: int = 4  # tasks: a size x size sweep
    sweep_steps: int = 12  # training steps of each transfer
    sweep_eval_limit: int = 32
    sweep_reps: int = 2
    # what a user waits for (floors.py, waits.py); None: every offline task / the whole split
    eval_tasks: int | None = None  # test splits of eval_throughput and int8_inference
    eval_limit: int | None = None  # items per split
    eval_reps: int = 3  # at most; fewer (never under 1) when a repetition is slow, see eval_budget
    eval_budget: float | None = 400.0
    zs_tasks: int | None = None  # K of zero_shot_matrix
    zs_limit: int = 200  # the study's zero-shot test limit
    zs_reps: int = 1
    acc_threshold: float = 0.70  # pt_to_accuracy: dev accuracy to reach (first acc_dev_limit dev examples)
    acc_steps: int = 300  # the step budget (and so the schedule) of both runs
    acc_eval_every: int = 20
    acc_dev_limit: int = 200
    acc_reps: int = 1
    click_pt_steps: int = 50  # click_to_result: the PT prompts of source and target it starts from
    click_pt_eval_limit: int = 200  # dev and test items of those PT runs
    click_quick: dict | None = None  # click_to_result's training sizes instead of the Transfer page's defaults
    click_metric_inputs: int | None = None  # None: TransferConfig's default
    page_prompts: int = 8  # page_render: prompts (one per task) in its private store
    page_timeout: float = 600.0
    seed: int = 0

    @classmethod
    def make(cls, quick: bool = False, backbones: list[str] | None = None) -> BenchConfig:
        cfg = cls()
        if quick:
            cfg = replace(cfg, quick=True, backbones=("minilm",), batch_size=8, n_batches=2, reps=3,
                          per_task_batch=2, n_prompts=6, n_inputs=4, indicator_reps=1, panda_reps=1, sweep_size=2,
                          sweep_steps=2, sweep_eval_limit=16, sweep_reps=1, step_budget=None,
                          indicator_budget=None, sweep_budget=None,
                          eval_tasks=3, eval_limit=64, eval_reps=1, eval_budget=None, zs_tasks=3, zs_limit=32,
                          acc_threshold=0.0, acc_steps=4, acc_eval_every=2, acc_dev_limit=32,
                          click_pt_steps=2, click_pt_eval_limit=16,
                          click_quick={"steps": 4, "eval_every": 2, "dev_limit": 16, "test_limit": 32},
                          click_metric_inputs=8, page_prompts=3)
        if backbones:
            cfg = replace(cfg, backbones=tuple(backbones))
        return cfg


@dataclass
class Case:
    """One row of the results: ours against a peer and (where one exists) a floor."""

    name: str
    ours: float
    peer: float | None
    floor: float | None
    unit: str  # "examples/s" (higher is better) or "s" (lower is better)
    goal: str
    meets_goal: bool | None = None
    rss_mb: float | None = None
    backbone: str | None = None
    ours_is: str = ""
    peer_is: str = ""
    floor_is: str = ""
    detail: dict = field(default_factory=dict)

    def _speedup(self, other: float | None) -> float | None:
        if other is None or not other or not self.ours:
            return None
        return self.ours / other if self.unit != "s" else other / self.ours

    @property
    def ratio_vs_peer(self) -> float | None:
        return self._speedup(self.peer)

    @property
    def ratio_vs_floor(self) -> float | None:
        return self._speedup(self.floor)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratio_vs_peer"] = rounded(self.ratio_vs_peer)
        d["ratio_vs_floor"] = rounded(self.ratio_vs_floor)
        for k in ("ours", "peer", "floor"):
            d[k] = rounded(d[k])
        return d


def rounded(x: float | None, nd: int = 4) -> float | None:
    """`x` rounded for the JSON (None stays None)."""
    return None if x is None else round(float(x), nd)


# ------------------------------------------------------------------ timing
def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1,
                budget: float | None = None, min_reps: int = 1) -> dict[str, list[float]]:
    """Seconds of each variant per repetition: every repetition runs each variant
    once, the order rotating, so slow drifts of a shared machine hit all alike.
    With `budget` (seconds), the warm-up's duration decides how many of the
    `reps` fit (never fewer than `min_reps`), so a slow machine still finishes."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync()
    if budget is not None and warmup:
        per_rep = (time.perf_counter() - t0) / warmup
        reps = max(min_reps, min(reps, int(budget / max(per_rep, 1e-9))))
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    r = 0
    while r < reps:
        if budget is not None and not warmup and r == 1:  # no warm-up: the first repetition sizes the rest
            reps = max(min_reps, min(reps, int(budget / max(sum(v[0] for v in times.values()), 1e-9))))
            if r >= reps:
                break
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            t0 = time.perf_counter()
            fns[k]()
            _sync()
            times[k].append(time.perf_counter() - t0)
        r += 1
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


# ------------------------------------------------------------------ memory
def rss_kb(pid: int | str = "self", key: str = "VmRSS") -> int:
    """A process's resident memory (or another /proc status field) in kB; 0 where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class PeakRSS:
    """Peak resident memory (MB) of this process - and, with `tree`, of its
    child processes too - while the block runs. Sampled every 20 ms; on Linux
    the kernel's own high-water mark (reset through /proc/self/clear_refs)
    catches what sampling misses."""

    def __init__(self, tree: bool = False) -> None:
        self.tree = tree
        self.peak_kb = 0
        self._stop = threading.Event()

    def _sample(self) -> int:
        total = rss_kb()
        if self.tree:
            try:
                import psutil

                for child in psutil.Process().children(recursive=True):
                    with contextlib.suppress(Exception):
                        total += child.memory_info().rss // 1024
            except ImportError:
                pass
        return total

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_kb = max(self.peak_kb, self._sample())

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self._hwm = False
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
            self._hwm = True
        self.peak_kb = self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        own = rss_kb(key="VmHWM") if self._hwm else 0
        if not self.tree:
            self.peak_kb = max(self.peak_kb, own)

    @property
    def mb(self) -> float:
        return round(self.peak_kb / 1024, 1)


# ------------------------------------------------------------------ machine
def machine() -> dict:
    """What the numbers were measured on."""
    import transformers

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__}
    for pkg in ("peft", "ray"):
        try:
            versions[pkg] = __import__(pkg).__version__
        except ImportError:
            versions[pkg] = None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "usable_cores": affinity, "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}", "device": "cuda" if torch.cuda.is_available() else "cpu",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "versions": versions, "load_average": load_average(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def cores() -> int:
    """CPU cores this process may use (what the sweep's worker sizing sees)."""
    from panda_core.ops.sweep import cores as sweep_cores

    return sweep_cores()


# ------------------------------------------------------------------ tasks
def available(names: list[str], k: int) -> list[str]:
    """The first `k` of `names` whose train and dev splits are prepared (at least two are needed)."""
    from panda_core.data import load_split

    out = []
    for name in names:
        try:
            if load_split(name, "train") and load_split(name, "dev"):
                out.append(name)
        except PandaError:
            continue
        if len(out) == k:
            break
    if len(out) < min(k, 2):
        raise PandaError("the benchmark needs the offline task suite: run `python -m panda_core data prepare`")
    return out
