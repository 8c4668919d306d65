"""The driver: every case in order, on the backbones asked for, into one
JSON document (the table goes to the log)."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import asdict

import torch

from .docs import render_table
from .floors import bench_eval_throughput, bench_int8, bench_zero_shot_matrix
from .harness import BenchConfig, Case, Log, load_average, machine
from .indicators import bench_indicators
from .steps import bench_batched, bench_steps
from .sweeps import bench_sweeps
from .waits import bench_click_to_result, bench_page_render, bench_pt_to_accuracy

# every case the run reports (step cases are suffixed with their backbone, e.g. "pt_step:minilm")
CASE_NAMES = ["pt_step", "panda_step", "panda_step_cold", "batched_prompts", "indicators_on", "indicators_panda",
              "indicators_embedding", "sweep_local", "sweep_ray", "eval_throughput", "pt_to_accuracy",
              "zero_shot_matrix", "click_to_result", "page_render", "int8_inference"]
#: cases a quick run leaves out: int8_inference only decides whether int8 is worth wiring in
QUICK_SKIPPED = ("int8_inference",)
# what a user waits for, in order (floors.py, waits.py); each takes (backbone, config, log)
WAIT_CASES = {"eval_throughput": bench_eval_throughput, "pt_to_accuracy": bench_pt_to_accuracy,
              "zero_shot_matrix": bench_zero_shot_matrix, "click_to_result": bench_click_to_result,
              "page_render": bench_page_render, "int8_inference": bench_int8}


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
    # libraries print (transformers' Trainer logs its evaluations): keep stdout for the JSON document
    with contextlib.redirect_stdout(sys.stderr):
        for name, bench in WAIT_CASES.items():
            if cfg.quick and name in QUICK_SKIPPED:
                continue
            log(f"[bench] {name} on {lead}")
            cases.append(bench(lead, cfg, log))
    info["load_average_end"] = load_average()
    out = {"machine": info, "settings": asdict(cfg), "cases": [c.to_dict() for c in cases],
           "seconds": round(time.perf_counter() - t0, 1)}
    log(render_table(out))
    return out
