"""The driver: every case in order, on the backbones asked for, into one
JSON document (the table goes to the log)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from panda_core.atomic import write_text

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


def progress_file(cfg: BenchConfig) -> Path:
    """Where a full run keeps its finished case groups (the cache, never git):
    one file per settings, so `--resume` only continues a run of the same settings."""
    from panda_core.paths import cache_dir

    name = "quick" if cfg.quick else "full"
    return cache_dir() / "bench" / f"progress-{name}-{'-'.join(cfg.backbones)}.json"


SESSION_FACTS = ("date", "cpu", "usable_cores", "torch_threads", "load_average")  # kept for each resumed session


def run_bench(quick: bool = False, backbones: list[str] | None = None, log: Log | None = None,
              resume: bool = False) -> dict:
    """Run every case; returns {"machine", "settings", "cases", "seconds"}.

    The cases run in groups (each interleaves its own arms, so every ratio
    still comes from one group's run); each finished group is saved, and with
    `resume` a group saved by an earlier run of the same settings is kept
    instead of run again (a killed run of an hour loses one group, not all)."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    cfg = BenchConfig.make(quick, backbones)
    path = progress_file(cfg)
    saved = json.loads(path.read_text()) if resume and path.is_file() else {}
    if saved.get("settings") != json.loads(json.dumps(asdict(cfg))):
        saved = {}
    info = saved.get("machine") or machine()
    if saved.get("machine"):  # a resumed run: the groups run now are measured on this session's machine
        now = machine()
        info.setdefault("sessions", []).append({k: now[k] for k in SESSION_FACTS})
    session = len(info.get("sessions", []))  # 0 = the first run's facts (`info` itself)
    groups: dict[str, dict] = dict(saved.get("groups", {}))
    kept = sorted(groups)
    torch.manual_seed(cfg.seed)

    def group(name: str, make: Callable[[], list[Case]]) -> list[dict]:
        if name in groups:
            log(f"[bench] {name}: kept from the saved run ({path})")
        else:
            log(f"[bench] {name}")
            g0 = time.perf_counter()
            groups[name] = {"cases": [c.to_dict() for c in make()], "seconds": round(time.perf_counter() - g0, 1),
                            "session": session}
            for c in groups[name]["cases"]:
                log(f"  {c['name']}: ours {c['ours']} {c['unit']}, peer {c['peer']}, floor {c['floor']}, "
                    f"met {c['meets_goal']}")
            path.parent.mkdir(parents=True, exist_ok=True)  # atomic: a kill mid-write leaves the previous file
            write_text(path, json.dumps({"settings": asdict(cfg), "machine": info, "groups": groups}, default=str))
        return groups[name]["cases"]

    cases: list[dict] = []
    for bb in cfg.backbones:
        cases += group(f"pt_step / panda_step on {bb}", lambda bb=bb: bench_steps(bb, cfg, log))
    lead = cfg.backbones[0] if "minilm" not in cfg.backbones else "minilm"
    cases += group(f"batched_prompts on {lead}", lambda: [bench_batched(lead, cfg, log)])
    cases += group(f"indicators on {lead}", lambda: bench_indicators(lead, cfg, log))
    speedup = next((c["detail"].get("thread_speedup") for c in cases if c["name"] == f"pt_step:{lead}"), None)
    cases += group(f"sweeps on {lead}", lambda: bench_sweeps(lead, cfg, log, speedup))
    # libraries print (transformers' Trainer logs its evaluations): keep stdout for the JSON document
    with contextlib.redirect_stdout(sys.stderr):
        for name, bench in WAIT_CASES.items():
            if cfg.quick and name in QUICK_SKIPPED:
                continue
            cases += group(f"{name} on {lead}", lambda bench=bench: [bench(lead, cfg, log)])
    info["load_average_end"] = load_average()
    out = {"machine": info, "settings": asdict(cfg), "cases": cases,
           "seconds": round(sum(g["seconds"] for g in groups.values()), 1),
           "resumed": kept}
    log(render_table(out))
    return out
