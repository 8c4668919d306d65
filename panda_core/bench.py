"""The performance harness: `python -m panda_core bench [--quick] [--json]
[--backbones ...] [--write-docs]`.

Every case measures our code against a *peer* (another way to do the same
work) and, where one exists, a *floor* (the least the hardware must do), in
one process, on the same backbone, batch, sequence and prompt length, with
interleaved repetitions (each repetition runs every variant once, in rotating
order) and the median reported:

| case               | ours                              | peer                          | floor |
|--------------------|-----------------------------------|-------------------------------|-------|
| pt_step:B          | our prompt-tuning step            | PEFT PromptTuningConfig step  | bare forward+backward to the input embeddings |
| panda_step:B       | PANDA step, teacher cache warm    | PoT step                      | as pt_step |
| panda_step_cold:B  | PANDA step, teacher cache cold    | PoT step                      | as pt_step |
| batched_prompts    | K=8 prompts in mixed batches      | K sequential runs             | forward+backward of the mixed batch |
| indicators_on      | ON matrix, 12 prompts             | pair-by-pair loop             | - |
| indicators_panda   | PANDA-metric matrix, 12 prompts   | pair-by-pair loop             | - |
| indicators_embedding | the 5 embedding metrics         | pair-by-pair loop             | - |
| sweep_local        | 4x4 sweep, local, 2 workers       | the same, 1 worker            | - |
| sweep_ray          | 4x4 sweep, Ray, 2 workers         | local, 1 worker               | - |

Units are examples/s (higher is better) or seconds (lower is better); every
ratio is a speed-up, > 1 meaning ours is faster. Each case also reports the
peak resident memory (RSS) while it ran (for sweeps: of the whole process
tree, Ray's daemons included). The JSON (one document on stdout) is
``{"machine": {...}, "settings": {...}, "cases": [{"name", "ours", "peer",
"floor", "ratio_vs_peer", "ratio_vs_floor", "unit", "goal", "meets_goal",
"rss_mb", ...}]}``; a table goes to stderr; `--write-docs` renders
docs/performance.md from the run.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import PandaError
from .paths import REPO_ROOT

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
    batch_size: int = 16
    prompt_length: int = 20
    max_length: int = 128
    n_batches: int = 3  # distinct batches per timed call (cycled)
    reps: int = 7  # at most; fewer (never under 3) when a repetition is slow, see step_budget
    warmup: int = 1
    step_budget: float | None = 90.0  # seconds per step group (per backbone) and for batched_prompts
    indicator_budget: float | None = 60.0  # seconds per indicator case (at least one repetition)
    sweep_budget: float | None = 300.0  # a second round of sweeps only if the first took under half
    k_tasks: int = 8
    per_task_batch: int = 16
    batched_steps: int = 1
    n_prompts: int = 12
    n_inputs: int = 32
    indicator_reps: int = 3
    panda_reps: int = 2
    sweep_size: int = 4
    sweep_steps: int = 12
    sweep_eval_limit: int = 32
    sweep_reps: int = 2
    seed: int = 0

    @classmethod
    def make(cls, quick: bool = False, backbones: list[str] | None = None) -> BenchConfig:
        cfg = cls()
        if quick:
            cfg = replace(cfg, quick=True, backbones=("minilm",), batch_size=8, n_batches=2, reps=3,
                          per_task_batch=2, n_prompts=6, n_inputs=4, indicator_reps=1, panda_reps=1, sweep_size=2,
                          sweep_steps=2, sweep_eval_limit=16, sweep_reps=1, step_budget=None,
                          indicator_budget=None, sweep_budget=None)
        if backbones:
            cfg = replace(cfg, backbones=tuple(backbones))
        return cfg


@dataclass
class Case:
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
        d["ratio_vs_peer"] = _r(self.ratio_vs_peer)
        d["ratio_vs_floor"] = _r(self.ratio_vs_floor)
        for k in ("ours", "peer", "floor"):
            d[k] = _r(d[k])
        return d


def _r(x, nd: int = 4):
    return None if x is None else round(float(x), nd)


# ------------------------------------------------------------------ timing
def _sync(device: torch.device | None = None) -> None:
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
def _rss_kb(pid: int | str = "self", key: str = "VmRSS") -> int:
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
        total = _rss_kb()
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
        own = _rss_kb(key="VmHWM") if self._hwm else 0
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
        "versions": versions, "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


# ------------------------------------------------------------------ helpers
def _available(names: list[str], k: int) -> list[str]:
    from .tasks import load_split

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


def _outputs_from_embeds(scorer, embeds: torch.Tensor, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """`scoring_outputs` from ready input embeddings (the floor has no splice)."""
    if scorer.kind == "encoder":
        return scorer._pool(scorer._trunk(embeds, mask), mask, start, n).float()
    logits = scorer.model(inputs_embeds=embeds, attention_mask=mask).logits
    if scorer.kind == "mlm":
        return logits[:, start + n].float()
    return logits[torch.arange(logits.shape[0]), mask.sum(1) - 1].float()


class _PeftStep:
    """The peer: PEFT's prompt tuning (PromptTuningConfig) on a copy of the same
    frozen backbone, trained with the same loss (same pooling and label scoring)
    and the same optimiser, clipping and schedule."""

    def __init__(self, bb, scorer, init: torch.Tensor, lr: float) -> None:
        from peft import PromptTuningConfig, TaskType, get_peft_model

        self.scorer, self.n = scorer, init.shape[0]
        task_type = TaskType.FEATURE_EXTRACTION if bb.kind == "encoder" else TaskType.CAUSAL_LM
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = get_peft_model(copy.deepcopy(bb.model),
                                        PromptTuningConfig(task_type=task_type, num_virtual_tokens=self.n))
        self.model.eval()
        with torch.no_grad():
            self.model.prompt_encoder["default"].embedding.weight.copy_(init)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optim = torch.optim.AdamW(self.params, lr=lr, weight_decay=1e-5)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.optim, lambda s: 1.0)

    def step(self, batch) -> torch.Tensor:
        out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        mask = torch.cat([torch.ones(batch.attention_mask.shape[0], self.n, dtype=batch.attention_mask.dtype),
                          batch.attention_mask], 1)
        if self.scorer.kind == "encoder":
            feats = self.scorer._pool(out.last_hidden_state, mask, 0, self.n).float()
        else:
            logits = out.logits
            feats = logits[torch.arange(logits.shape[0]), mask.sum(1) - 1].float()
        loss = F.cross_entropy(self.scorer.class_scores(feats), batch.labels)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optim.step()
        self.sched.step()
        return loss.detach()


# ------------------------------------------------------------------ cases
def bench_steps(bb_name: str, cfg: BenchConfig, log: Log) -> list[Case]:
    """pt_step (ours vs PEFT vs floor) and panda_step (warm and cold teacher
    cache vs PoT), interleaved in one group on the same batches."""
    from .backbones import get_backbone
    from .prompts import init_prompt
    from .scoring import PromptScorer
    from .tasks import get_task, load_split
    from .train import TeacherCache, prompt_step

    with PeakRSS() as mem:
        bb = get_backbone(bb_name)
        scorer = PromptScorer(bb, get_task(cfg.task), cfg.prompt_length, cfg.max_length)
        B, n = cfg.batch_size, cfg.prompt_length
        enc = scorer.encode(load_split(cfg.task, "train")[: B * cfg.n_batches])
        index = [torch.arange(i * B, (i + 1) * B) for i in range(cfg.n_batches)]
        lr = getattr(bb, "default_lr", 0.01)
        init = init_prompt(bb.embeddings(), n, "vocab", seed=cfg.seed)
        teacher = init_prompt(bb.embeddings(), n, "vocab", seed=cfg.seed + 1)

        def trainer():
            p = torch.nn.Parameter(init.clone())
            opt = torch.optim.AdamW([p], lr=lr, weight_decay=1e-5)
            return p, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)

        p_ours, o_ours, s_ours = trainer()
        p_kd, o_kd, s_kd = trainer()
        warm = TeacherCache(scorer, enc, teacher)
        for idx in index:
            warm(scorer.collate(enc, idx))

        def ours():  # the training loop's step: gather a pre-tokenised batch, step, read the loss
            for idx in index:
                float(prompt_step(scorer, scorer.collate(enc, idx), p_ours, o_ours, s_ours))

        def panda_warm():
            for idx in index:
                float(prompt_step(scorer, scorer.collate(enc, idx), p_kd, o_kd, s_kd, None, warm, 1.0))

        def panda_cold():
            cold = TeacherCache(scorer, enc, teacher)
            for idx in index:
                float(prompt_step(scorer, scorer.collate(enc, idx), p_kd, o_kd, s_kd, None, cold, 1.0))

        floor_data = []
        with torch.no_grad():
            for idx in index:
                batch = scorer.collate(enc, idx)
                embeds, mask, start = scorer._splice(batch, init)
                floor_data.append((embeds.detach(), mask, start, batch.labels))

        def floor():
            for embeds, mask, start, labels in floor_data:
                x = embeds.clone().requires_grad_(True)
                loss = F.cross_entropy(scorer.class_scores(_outputs_from_embeds(scorer, x, mask, start, n)), labels)
                loss.backward()
                float(loss.detach())

        fns = {"ours": ours, "floor": floor, "panda_warm": panda_warm, "panda_cold": panda_cold}
        threads = torch.get_num_threads()
        if threads > 1:  # how much the second core buys one step: bounds what parallel sweeps can gain

            def ours_1thread():
                torch.set_num_threads(1)
                try:
                    ours()
                finally:
                    torch.set_num_threads(threads)

            fns["ours_1thread"] = ours_1thread
        if bb.kind != "mlm":  # PEFT has no <mask> slot after its virtual tokens
            peft_step = _PeftStep(bb, scorer, init, lr)
            fns["peft"] = lambda: [float(peft_step.step(scorer.collate(enc, idx))) for idx in index]
        log(f"  steps on {bb_name}: {len(fns)} variants x {cfg.reps} reps of {cfg.n_batches} batches of {B}")
        times = interleaved(fns, cfg.reps, cfg.warmup, cfg.step_budget, min_reps=3)
    examples = B * cfg.n_batches
    rate = {k: examples / median(v) for k, v in times.items()}
    width = int(enc.lengths.float().mean()) + n + 1
    detail = {"batch": B, "prompt_length": n, "mean_total_length": width, "task": cfg.task,
              "reps": len(times["ours"]), "threads": torch.get_num_threads(),
              "thread_speedup": _r(rate["ours"] / rate["ours_1thread"]) if "ours_1thread" in rate else None,
              "rates": {k: _r(v, 2) for k, v in rate.items()},
              "seconds_per_rep": {k: [round(x, 4) for x in v] for k, v in times.items()}}
    pt = Case(f"pt_step:{bb_name}", rate["ours"], rate.get("peft"), rate["floor"], "examples/s",
              "ratio_vs_peer >= 1.0 and ratio_vs_floor >= 0.85", backbone=bb_name,
              ours_is="our prompt-tuning step", peer_is="PEFT PromptTuningConfig, same loss",
              floor_is="bare forward+backward to input embeddings", rss_mb=mem.mb, detail=detail)
    if pt.ratio_vs_peer is not None:
        pt.meets_goal = pt.ratio_vs_peer >= 1.0 and pt.ratio_vs_floor >= 0.85
    warm_case = Case(f"panda_step:{bb_name}", rate["panda_warm"], rate["ours"], rate["floor"], "examples/s",
                     "PANDA step time <= 1.15 x PoT (ratio_vs_peer >= 0.87)", backbone=bb_name,
                     ours_is="PANDA step, teacher logits cached", peer_is="PoT step", floor_is="as pt_step",
                     rss_mb=mem.mb, detail={"time_ratio_vs_pot": _r(rate["ours"] / rate["panda_warm"])})
    warm_case.meets_goal = rate["ours"] / rate["panda_warm"] <= 1.15
    cold_case = Case(f"panda_step_cold:{bb_name}", rate["panda_cold"], rate["ours"], rate["floor"], "examples/s",
                     "report only: the first epoch runs one teacher forward per new example", backbone=bb_name,
                     ours_is="PANDA step, teacher cache empty", peer_is="PoT step", floor_is="as pt_step",
                     rss_mb=mem.mb, detail={"time_ratio_vs_pot": _r(rate["ours"] / rate["panda_cold"])})
    return [pt, warm_case, cold_case]


def bench_batched(bb_name: str, cfg: BenchConfig, log: Log) -> Case:
    """K prompts in mixed batches through one frozen backbone vs K separate
    runs (same examples, same per-prompt updates), with two floors: the
    forward+backward of the per-task batches and of the mixed batch."""
    from .backbones import get_backbone
    from .multitask import DEFAULT_TOKEN_BUDGET, MultiTaskBatcher, build_slots, multitask_step
    from .train import TrainConfig, prompt_step

    with PeakRSS() as mem:
        bb = get_backbone(bb_name)
        tasks = _available(BENCH_TASKS, cfg.k_tasks)
        b, steps = cfg.per_task_batch, cfg.batched_steps
        tc = TrainConfig(prompt_length=cfg.prompt_length, max_length=cfg.max_length, batch_size=b, seed=cfg.seed)
        slots = build_slots(bb, tasks, tc)
        lr = getattr(bb, "default_lr", 0.01)
        rows = [{k: torch.arange(s * b, (s + 1) * b) % slots[k].n_train for k in range(len(slots))}
                for s in range(steps)]
        variants = {"whole": MultiTaskBatcher(slots), "bucketed": MultiTaskBatcher(slots, DEFAULT_TOKEN_BUDGET)}
        optim = torch.optim.AdamW([s.prompt for s in slots], lr=lr, weight_decay=1e-5)

        def batched(batcher):
            def run():
                for r in rows:
                    float(multitask_step(batcher, r, optim))
            return run

        seq = []
        for s in slots:
            p = torch.nn.Parameter(s.prompt.detach().clone())
            seq.append((s, p, torch.optim.AdamW([p], lr=lr, weight_decay=1e-5)))

        def sequential():  # K runs one after another, each its own prompt and optimiser
            for s, p, opt in seq:
                for r in rows:
                    idx = r[slots.index(s)]
                    float(prompt_step(s.scorer, s.scorer.collate(s.train, idx), p, opt))

        lead = slots[0].scorer
        n = cfg.prompt_length

        def floor_of(batches):
            def run():
                for batch, prompt in batches:
                    with torch.no_grad():
                        embeds, mask, start = lead._splice(batch, prompt)
                    x = embeds.detach().requires_grad_(True)
                    out = _outputs_from_embeds(lead, x, mask, start, n)
                    out.float().pow(2).mean().backward()
            return run

        per_task = [(s.scorer.collate(s.train, r[k]), s.prompt.detach()) for r in rows for k, s in enumerate(slots)]
        used = variants["bucketed"]  # the default of train_multitask: its forward passes are the floor's
        mixed = []
        for r in rows:
            index = torch.cat([r[k] + slots[k].offset for k in r])
            stacked = used.stacked().detach()
            for chunk in used.chunks(index):
                mixed.append((lead.collate(used.combined, chunk), stacked[used.task_of[chunk]]))
        fns = {"sequential": sequential, "batched_whole": batched(variants["whole"]),
               "batched_bucketed": batched(variants["bucketed"]),
               "floor_per_task": floor_of(per_task), "floor_mixed": floor_of(mixed)}
        log(f"  batched prompts: K={len(tasks)}, {b} rows per task, {steps} step(s), {cfg.reps} reps")
        times = interleaved(fns, cfg.reps, cfg.warmup, cfg.step_budget, min_reps=3)
    examples = len(tasks) * b * steps
    rate = {k: examples / median(v) for k, v in times.items()}
    best = "batched_bucketed"
    ceiling = rate["floor_mixed"] / rate["floor_per_task"]
    widths = [int(batch.input_ids.shape[1]) for batch, _ in per_task]
    case = Case("batched_prompts", rate[best], rate["sequential"], rate["floor_mixed"], "examples/s",
                ">= 2x sequential for K=8, or a measured reason", backbone=bb_name,
                ours_is=f"K={len(tasks)} prompts, mixed batches (length-bucketed passes)",
                peer_is=f"{len(tasks)} sequential runs", floor_is="forward+backward of the same passes",
                rss_mb=mem.mb)
    case.meets_goal = case.ratio_vs_peer >= 2.0
    case.detail = {
        "tasks": tasks, "rows_per_task": b, "steps": steps, "reps": len(times["sequential"]),
        "rates": {k: _r(v, 2) for k, v in rate.items()},
        "hardware_ceiling": _r(ceiling),
        "per_task_widths": widths, "mixed_passes": [list(batch.input_ids.shape) for batch, _ in mixed],
        "whole_batch_vs_sequential": _r(rate["batched_whole"] / rate["sequential"]),
        "why": (f"the frozen trunk does the same work per example batched or not: a bare forward+backward "
                f"of the mixed batch runs at {ceiling:.2f}x the per-task batches' throughput on this machine, "
                "which bounds any batching gain" if ceiling < 2 else ""),
    }
    return case


def _bench_prompts(bb, cfg: BenchConfig):
    from .prompts import SoftPrompt, init_prompt

    tasks = _available(BENCH_TASKS, cfg.n_prompts)
    prompts = []
    for i in range(cfg.n_prompts):
        t = init_prompt(bb.embeddings(), cfg.prompt_length, "vocab", seed=100 + i)
        t = t + 0.1 * t.std() * torch.randn(t.shape, generator=torch.Generator().manual_seed(i))  # trained-like drift
        prompts.append(SoftPrompt(tensor=t, backbone=bb.name, task=tasks[i % len(tasks)], prompt_id=f"bench{i}"))
    return prompts


def bench_indicators(bb_name: str, cfg: BenchConfig, log: Log) -> list[Case]:
    """ON, PANDA-metric and embedding-metric matrices over 12 in-memory prompts
    (vocab-initialised, as a trained prompt starts) against a pair-by-pair loop."""
    from .backbones import get_backbone
    from .metrics import (
        EMBEDDING_FUNCS,
        _stack,
        binary_cosine,
        ffn_activations,
        on_matrix,
        panda_matrix,
        panda_pair,
    )

    cases = []
    bb = get_backbone(bb_name)
    prompts = _bench_prompts(bb, cfg)
    K = len(prompts)
    tasks = [p.task for p in prompts]
    got: dict = {}

    def naive_on():
        M = torch.zeros(K, K, dtype=torch.float64)
        for s in range(K):
            for t in range(K):
                a = ffn_activations(bb, prompts[s].tensor).reshape(-1)
                b = ffn_activations(bb, prompts[t].tensor).reshape(-1)
                M[s, t] = binary_cosine(torch.stack([a, b]))[0, 1]
        return M

    with PeakRSS() as mem:
        log(f"  ON matrix: {K} prompts, {cfg.indicator_reps} reps")
        times = interleaved({"ours": lambda: got.__setitem__("ours", on_matrix(bb, prompts)),
                             "naive": lambda: got.__setitem__("naive", naive_on())}, cfg.indicator_reps, 0,
                            cfg.indicator_budget)
    c = Case("indicators_on", median(times["ours"]), median(times["naive"]), None, "s",
             f"ON matrix over {K} prompts on minilm < 5 s", backbone=bb_name, ours_is="one forward per prompt, "
             "one matrix product", peer_is="pair-by-pair loop", rss_mb=mem.mb,
             detail={"prompts": K, "forwards": {"ours": K, "naive": 2 * K * K}})
    c.meets_goal = c.ours < 5.0 if bb_name == "minilm" else None
    c.detail["same_matrix"] = bool(torch.allclose(got["ours"], got["naive"], atol=1e-9))
    cases.append(c)

    def naive_panda():
        M = torch.zeros(K, K, dtype=torch.float64)
        for s in range(K):
            for t in range(K):
                M[s, t] = panda_pair(bb, prompts[s].tensor, prompts[t].tensor, tasks[t], cfg.n_inputs)
        return M

    with PeakRSS() as mem:
        log(f"  PANDA matrix: {K} prompts x {cfg.n_inputs} inputs, {cfg.panda_reps} reps")
        times = interleaved({"ours": lambda: panda_matrix(bb, prompts, tasks, cfg.n_inputs), "naive": naive_panda},
                            cfg.panda_reps, 0, cfg.indicator_budget)
    c = Case("indicators_panda", median(times["ours"]), median(times["naive"]), None, "s",
             "faster than the pair-by-pair loop", backbone=bb_name, ours_is="K task embeddings per target",
             peer_is="pair-by-pair loop (2 task embeddings per pair)", rss_mb=mem.mb,
             detail={"prompts": K, "n_inputs": cfg.n_inputs})
    c.meets_goal = c.ratio_vs_peer > 1.0
    cases.append(c)

    def naive_embedding():
        out = {}
        for name in EMBEDDING_FUNCS:
            M = torch.zeros(K, K, dtype=torch.float64)
            for s in range(K):
                for t in range(K):
                    a, b = prompts[s].tensor.double(), prompts[t].tensor.double()
                    if name == "e_concat":
                        M[s, t] = 1 / (1 + torch.linalg.norm(a.flatten() - b.flatten()))
                    elif name == "e_avg":
                        M[s, t] = 1 / (1 + torch.stack([torch.linalg.norm(x - y) for x in a for y in b]).mean())
                    elif name == "c_concat":
                        M[s, t] = F.cosine_similarity(a.flatten(), b.flatten(), dim=0)
                    elif name == "c_avg":
                        M[s, t] = torch.stack([F.cosine_similarity(x, y, dim=0) for x in a for y in b]).mean()
                    else:
                        M[s, t] = F.cosine_similarity(a.mean(0), b.mean(0), dim=0)
            out[name] = M
        return out

    def ours_embedding():
        P = _stack(prompts)
        return {name: f(P) for name, f in EMBEDDING_FUNCS.items()}

    with PeakRSS() as mem:
        log(f"  embedding metrics: {K} prompts, {cfg.indicator_reps} reps")
        times = interleaved({"ours": ours_embedding, "naive": naive_embedding}, cfg.indicator_reps, 0,
                            cfg.indicator_budget)
    c = Case("indicators_embedding", median(times["ours"]), median(times["naive"]), None, "s",
             "faster than the pair-by-pair loop", backbone=bb_name, ours_is="5 metrics as matrix products",
             peer_is="pair-by-pair loop", rss_mb=mem.mb, detail={"prompts": K, "metrics": list(EMBEDDING_FUNCS)})
    c.meets_goal = c.ratio_vs_peer > 1.0
    a, b = ours_embedding(), naive_embedding()
    c.detail["max_abs_difference"] = max(float((a[k] - b[k]).abs().max()) for k in a)
    cases.append(c)
    return cases


# ------------------------------------------------------------------ sweeps
_SWEEP_SCRIPT = r"""
import json, sys, time
t_start = time.perf_counter()
from safetensors.torch import load_file
from panda_core import store
from panda_core.prompts import SoftPrompt
from panda_core.sweep import run_sweep
from panda_core.train import TrainConfig
from panda_core.transfer import TransferConfig
spec = json.loads(sys.argv[1])
for task, t in load_file(spec["prompts"]).items():
    store.save_prompt(SoftPrompt(tensor=t, backbone=spec["backbone"], task=task, method="pt", seed=0))
cfg = TransferConfig(train=TrainConfig(**spec["train"]))
t0 = time.perf_counter()
out = run_sweep(spec["sources"], spec["targets"], spec["methods"], spec["backbone"], cfg,
                executor=spec["executor"], workers=spec["workers"])
out["seconds"] = time.perf_counter() - t0
out["import_seconds"] = t0 - t_start
print(json.dumps(out, default=str))
"""


def _private_cache(root: Path) -> Path:
    """A throw-away cache that shares the project's models and prepared tasks."""
    from .paths import cache_dir

    project = cache_dir()
    root.mkdir(parents=True)
    for name in ("models", "downloads", "tasks"):
        src = project / name
        if src.exists():
            (root / name).symlink_to(src, target_is_directory=True)
    return root


def _sweep_once(executor: str, workers: int, spec: dict, tmp: Path, tag: str) -> dict:
    cache = _private_cache(tmp / tag)
    env = dict(os.environ, PANDA_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("OMP_NUM_THREADS", None)
    args = json.dumps(spec | {"executor": executor, "workers": workers})
    t0 = time.perf_counter()
    with PeakRSS(tree=True) as mem:
        proc = subprocess.run([sys.executable, "-c", _SWEEP_SCRIPT, args], cwd=str(REPO_ROOT), env=env,
                              capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise PandaError(f"sweep ({executor}, {workers} workers) failed: {' | '.join(tail)[:400]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out.get("failed"):
        errors = [r.get("error") for r in out["runs"] if not r["ok"]]
        raise PandaError(f"sweep ({executor}, {workers} workers): {out['failed']} runs failed: {errors[:2]}")
    rss = mem.peak_kb / 1024
    # the subprocess tree includes this process (sampled as well): report the tree minus our own RSS
    rss -= _rss_kb() / 1024
    return {"seconds": out["seconds"], "wall": wall, "import_seconds": out["import_seconds"], "rss_mb": rss,
            "scores": {f"{r['method']}:{r['source']}->{r['target']}": r["test_acc"] for r in out["runs"]},
            "runs": len(out["runs"])}


def bench_sweeps(bb_name: str, cfg: BenchConfig, log: Log, thread_speedup: float | None = None) -> list[Case]:
    """A size x size PoT sweep (every source to every other target) through
    `run_sweep` in a fresh process and a fresh private cache each time: local
    at 1 and 2 workers, and on a local Ray instance with 2 workers."""
    from safetensors.torch import save_file

    from .backbones import get_backbone
    from .prompts import init_prompt

    bb = get_backbone(bb_name)
    tasks = _available(SWEEP_TASKS + BENCH_TASKS, cfg.sweep_size)
    train = {"steps": cfg.sweep_steps, "eval_every": cfg.sweep_steps, "batch_size": 16,
             "prompt_length": cfg.prompt_length, "max_length": cfg.max_length, "dev_limit": cfg.sweep_eval_limit,
             "test_limit": cfg.sweep_eval_limit, "train_limit": 256, "seed": cfg.seed}
    variants = [("local", 1), ("local", 2)]
    try:
        import ray  # noqa: F401

        variants.append(("ray", 2))
    except ImportError:
        log("  ray is not installed: the sweep_ray case is skipped")
    with tempfile.TemporaryDirectory(prefix="panda-bench-") as tmp_s:
        tmp = Path(tmp_s)
        prompts = {t: init_prompt(bb.embeddings(), cfg.prompt_length, "vocab", seed=200 + i).contiguous()
                   for i, t in enumerate(tasks)}
        save_file(prompts, str(tmp / "prompts.safetensors"))
        spec = {"prompts": str(tmp / "prompts.safetensors"), "backbone": bb_name, "sources": tasks,
                "targets": tasks, "methods": ["pot"], "train": train}
        results: dict[tuple, list[dict]] = {v: [] for v in variants}
        started = time.perf_counter()
        for r in range(cfg.sweep_reps):
            if r and cfg.sweep_budget and time.perf_counter() - started > cfg.sweep_budget / (r + 1):
                log(f"  one sweep round took {time.perf_counter() - started:.0f} s: no further repetition")
                break
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for ex, w in order:
                log(f"  sweep {len(tasks)}x{len(tasks)} pot, {ex} with {w} worker(s), rep {r + 1}/{cfg.sweep_reps}")
                results[(ex, w)].append(_sweep_once(ex, w, spec, tmp, f"{ex}{w}-{r}"))

    def summary(v):
        rs = results[v]
        return median([x["seconds"] for x in rs]), max(x["rss_mb"] for x in rs)

    one, rss1 = summary(("local", 1))
    two, rss2 = summary(("local", 2))
    n_runs = results[("local", 1)][0]["runs"]
    base = {"tasks": tasks, "runs": n_runs, "steps_per_run": cfg.sweep_steps,
            "seconds_1_worker": [round(x["seconds"], 2) for x in results[("local", 1)]],
            "seconds_2_workers": [round(x["seconds"], 2) for x in results[("local", 2)]],
            "process_start_seconds": _r(median([x["import_seconds"] for x in results[("local", 1)]]), 2),
            "wall_seconds_1_worker": [round(x["wall"], 2) for x in results[("local", 1)]],
            "wall_seconds_2_workers": [round(x["wall"], 2) for x in results[("local", 2)]]}
    if thread_speedup:
        # 1 worker runs each transfer on all cores; 2 workers run two at once on one core each
        base["two_thread_speedup_of_a_step"] = thread_speedup
        base["ceiling"] = _r(_cores() / thread_speedup) if _cores() == 2 else None
    local = Case("sweep_local", two, one, None, "s", "2 workers >= 1.6x of 1 worker", backbone=bb_name,
                 ours_is=f"{n_runs} transfers, local, 2 workers x {max(1, _cores() // 2)} thread(s)",
                 peer_is=f"local, 1 worker x {_cores()} threads", rss_mb=round(max(rss1, rss2), 1), detail=base)
    local.meets_goal = local.ratio_vs_peer >= 1.6
    cases = [local]
    if ("ray", 2) in results:
        ray_s, rss_r = summary(("ray", 2))
        same = all(x["scores"] == results[("local", 2)][0]["scores"] for x in results[("ray", 2)])
        c = Case("sweep_ray", ray_s, one, None, "s", "same scores as the local executor (same seeds)",
                 backbone=bb_name, ours_is=f"{n_runs} transfers, local Ray instance, 2 workers",
                 peer_is="local, 1 worker", rss_mb=round(rss_r, 1),
                 detail={"seconds_ray": [round(x["seconds"], 2) for x in results[("ray", 2)]],
                         "scores_equal_to_local_2_workers": same,
                         "speedup_vs_local_2_workers": _r(two / ray_s)})
        c.meets_goal = same
        cases.append(c)
    else:
        cases.append(Case("sweep_ray", 0.0, one, None, "s", "ray not installed", backbone=bb_name,
                          detail={"skipped": "ray is not installed"}))
    return cases


def _cores() -> int:
    from .sweep import cores

    return cores()


# ------------------------------------------------------------------ driver
def run_bench(quick: bool = False, backbones: list[str] | None = None, log: Log | None = None) -> dict:
    """Run every case; returns {"machine", "settings", "cases", "seconds"}."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    cfg = BenchConfig.make(quick, backbones)
    t0 = time.perf_counter()
    info = machine()
    torch.manual_seed(cfg.seed)
    cases: list[Case] = []
    for bb in cfg.backbones:
        log(f"[bench] pt_step / panda_step on {bb}")
        cases += bench_steps(bb, cfg, log)
    lead = cfg.backbones[0] if "minilm" not in cfg.backbones else "minilm"
    log(f"[bench] batched_prompts on {lead}")
    cases.append(bench_batched(lead, cfg, log))
    log(f"[bench] indicators on {lead}")
    cases += bench_indicators(lead, cfg, log)
    log(f"[bench] sweeps on {lead}")
    speedup = next((c.detail.get("thread_speedup") for c in cases if c.name == f"pt_step:{lead}"), None)
    cases += bench_sweeps(lead, cfg, log, speedup)
    info["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out = {"machine": info, "settings": asdict(cfg), "cases": [c.to_dict() for c in cases],
           "seconds": round(time.perf_counter() - t0, 1)}
    log(render_table(out))
    return out


CASE_NAMES = ["pt_step", "panda_step", "panda_step_cold", "batched_prompts", "indicators_on", "indicators_panda",
              "indicators_embedding", "sweep_local", "sweep_ray"]


def _fmt(x, unit: str = "") -> str:
    if x is None:
        return "-"
    if unit == "s":
        return f"{x:.2f} s"
    if unit == "examples/s":
        return f"{x:.1f} ex/s"
    return f"{x:.2f}"


def render_table(result: dict) -> str:
    """The results as a Markdown table (also what goes to stderr)."""
    lines = ["| case | ours | peer | floor | ours / peer | ours / floor | goal | met | peak RSS |",
             "|---|---:|---:|---:|---:|---:|---|:---:|---:|"]
    for c in result["cases"]:
        met = {True: "yes", False: "**no**", None: "-"}[c["meets_goal"]]
        lines.append(
            f"| {c['name']} | {_fmt(c['ours'], c['unit'])} | {_fmt(c['peer'], c['unit'])} | "
            f"{_fmt(c['floor'], c['unit'])} | {_fmt(c['ratio_vs_peer'])} | {_fmt(c['ratio_vs_floor'])} | "
            f"{c['goal']} | {met} | {c['rss_mb'] if c['rss_mb'] is not None else '-'} MB |")
    return "\n".join(lines)


def describe_machine(m: dict) -> str:
    v = m["versions"]
    load = m.get("load_average") or [None]
    end = m.get("load_average_end") or [None]
    quiet = load[0] is not None and max(load[0], end[0] or 0) < 0.5 * (m.get("usable_cores") or 1) + 0.5
    return (f"{m['cpu']}, {m['usable_cores']} usable cores ({m['torch_threads']} torch threads), "
            f"{m['memory_gb']} GB RAM, {m['os']}, device {m['device']}"
            f"{' (' + m['gpu'] + ')' if m.get('gpu') else ''}; Python {v['python']}, torch {v['torch']}, "
            f"transformers {v['transformers']}, peft {v.get('peft')}, ray {v.get('ray')}. "
            f"Load average (1 min) {load[0]:.2f} at the start and {end[0] if end[0] is not None else float('nan'):.2f} "
            f"at the end: the machine was {'quiet' if quiet else 'busy (other work ran at the same time)'}. "
            f"Run on {m['date']}.")


DOC_START = "<!-- bench:begin (generated by `python -m panda_core bench --write-docs`; do not edit) -->"
DOC_END = "<!-- bench:end -->"


def render_results(result: dict) -> str:
    """The generated block of docs/performance.md: machine, table, each ratio against its goal."""
    lines = [DOC_START, "", "**Machine.** " + describe_machine(result["machine"]), "",
             f"Settings: {'quick' if result['settings']['quick'] else 'full'} run, "
             f"backbones {', '.join(result['settings']['backbones'])}, batch {result['settings']['batch_size']}, "
             f"prompt length {result['settings']['prompt_length']}, {result['settings']['reps']} interleaved "
             f"repetitions (median); the whole run took {result['seconds']:.0f} s.", "",
             render_table(result), "", "Against the goals:", ""]
    for c in result["cases"]:
        ratio = c["ratio_vs_peer"]
        met = {True: "met", False: "NOT met", None: "no target"}[c["meets_goal"]]
        extra = ""
        if c["name"].startswith("pt_step") and c["ratio_vs_floor"] is not None:
            extra = f", {c['ratio_vs_floor']:.2f} of the floor"
        if c["name"] == "batched_prompts":
            extra = f"; hardware ceiling {c['detail'].get('hardware_ceiling')}x. {c['detail'].get('why', '')}"
        if c["name"].startswith("panda_step"):
            extra = f" (PANDA step time {c['detail'].get('time_ratio_vs_pot')}x PoT)"
        if c["name"] == "sweep_ray":
            extra = f"; scores equal to local: {c['detail'].get('scores_equal_to_local_2_workers')}"
        lines.append(f"- `{c['name']}`: {_fmt(c['ours'], c['unit'])}, {_fmt(ratio)}x {c.get('peer_is') or 'the peer'}"
                     f"{extra} - goal {c['goal']}: **{met}**.")
    lines += ["", DOC_END]
    return "\n".join(lines)


def write_docs(result: dict, path: Path | None = None) -> Path:
    """Put the generated block into docs/performance.md (between the markers;
    the hand-written text around it is kept)."""
    path = path or REPO_ROOT / "docs" / "performance.md"
    block = render_results(result)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n\n" + DOC_START + "\n" + DOC_END + "\n"
    if DOC_START in text and DOC_END in text:
        head, rest = text.split(DOC_START, 1)
        tail = rest.split(DOC_END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    from .atomic import write_text

    write_text(path, text)
    (path.parent / "performance.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path
