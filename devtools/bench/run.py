"""The driver: every case in order, on the backbones asked for, into one
JSON document (the table goes to the log)."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict

import torch

from .docs import render_table
from .harness import BenchConfig, Case, Log, load_average, machine
from .indicators import bench_indicators
from .steps import bench_batched, bench_steps
from .sweeps import bench_sweeps

# every case the run reports (step cases are suffixed with their backbone, e.g. "pt_step:minilm")
CASE_NAMES = ["pt_step", "panda_step", "panda_step_cold", "batched_prompts", "indicators_on", "indicators_panda",
              "indicators_embedding", "sweep_local", "sweep_ray"]


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
    info["load_average_end"] = load_average()
    out = {"machine": info, "settings": asdict(cfg), "cases": [c.to_dict() for c in cases],
           "seconds": round(time.perf_counter() - t0, 1)}
    log(render_table(out))
    return out
