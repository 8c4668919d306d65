"""The performance harness: its quick mode runs end to end and reports every
case (speed is not checked here), and its pieces behave."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devtools.bench import CASE_NAMES, QUICK_SKIPPED, Case, PeakRSS, interleaved, render_results, write_docs
from devtools.bench.docs import describe_machine
from panda_core.paths import REPO_ROOT

FIELDS = {"name", "ours", "peer", "floor", "ratio_vs_peer", "ratio_vs_floor", "unit", "goal", "meets_goal", "rss_mb"}
# what a user waits for (devtools/bench/floors.py, waits.py): each must report in a quick run
WAIT_CASES = ["eval_throughput", "pt_to_accuracy", "zero_shot_matrix", "click_to_result", "page_render"]


def test_ratios_are_speedups_whatever_the_unit():
    rate = Case("x", ours=200.0, peer=100.0, floor=400.0, unit="examples/s", goal="")
    assert rate.ratio_vs_peer == 2.0 and rate.ratio_vs_floor == 0.5
    secs = Case("y", ours=2.0, peer=6.0, floor=None, unit="s", goal="")
    assert secs.ratio_vs_peer == 3.0 and secs.ratio_vs_floor is None
    assert FIELDS <= set(rate.to_dict())


def test_interleaved_runs_every_variant_each_rep_in_rotating_order():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def test_a_time_budget_trims_repetitions_but_keeps_the_minimum():
    import time

    slow = {"a": lambda: time.sleep(0.02), "b": lambda: time.sleep(0.02)}
    assert len(interleaved(slow, reps=7, warmup=1, budget=0.001, min_reps=3)["a"]) == 3
    assert len(interleaved(slow, reps=7, warmup=0, budget=0.001)["a"]) == 1
    assert len(interleaved(slow, reps=4, warmup=0, budget=100.0)["b"]) == 4


def test_peak_rss_sees_an_allocation():
    import numpy as np

    with PeakRSS() as small:
        pass
    with PeakRSS() as big:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        block.sum()
    del block
    assert big.mb >= small.mb + 40 or big.mb >= 64


@pytest.mark.slow
def test_quick_bench_reports_every_case_and_renders_the_docs(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-m", "panda_core", "bench", "--quick", "--json"], cwd=str(REPO_ROOT),
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    names = [c["name"] for c in out["cases"]]
    for case in CASE_NAMES:
        if case in QUICK_SKIPPED:
            assert case not in names, case
            continue
        assert any(n == case or n.startswith(case + ":") for n in names), (case, names)
    for c in out["cases"]:
        assert FIELDS <= set(c), c
        assert c["ours"] is not None and c["ours"] > 0, c
        assert c["rss_mb"] is None or c["rss_mb"] > 0
    _check_wait_cases({c["name"]: c for c in out["cases"]})
    assert {"cpu", "usable_cores", "torch_threads", "versions", "load_average"} <= set(out["machine"])
    assert "| case |" in proc.stderr  # the table went to stderr
    # the same document renders the generated block of docs/performance.md
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nhand-written intro\n")
    write_docs(out, doc)
    text = doc.read_text()
    assert "hand-written intro" in text and "pt_step:minilm" in text and "**Machine.**" in text
    write_docs(out, doc)  # idempotent: one generated block
    assert doc.read_text().count("bench:begin") == 1
    assert render_results(out) in doc.read_text()


def _check_wait_cases(by_name: dict) -> None:
    """The evaluation and waiting cases: numbers, goals and the details they are read by."""
    for name in WAIT_CASES:
        c = by_name[name]
        assert isinstance(c["ours"], float) and c["ours"] > 0, c
        assert isinstance(c["goal"], str) and c["goal"], c
        assert c["meets_goal"] in (True, False, None), c
        assert isinstance(c["rss_mb"], float) and c["rss_mb"] > 0, c
    ev = by_name["eval_throughput"]
    assert ev["unit"] == "tokens/s" and ev["peer"] > 0 and ev["floor"] > 0 and ev["meets_goal"] in (True, False)
    d = ev["detail"]
    assert 0 < d["real_fraction_unsorted"] <= d["real_fraction_sorted"] <= 1
    assert 0 < d["train_real_fraction"]["random"] <= 1 and 0 < d["train_real_fraction"]["length"] <= 1
    assert d["same_predictions"] in (True, False) and len(d["tasks"]) == 3
    zs = by_name["zero_shot_matrix"]
    assert zs["unit"] == "s" and zs["peer"] > 0 and zs["floor"] > 0
    assert zs["detail"]["same_predictions"] in (True, False)
    assert len(zs["detail"]["accuracy_matrix"]) == len(zs["detail"]["tasks"]) == 3
    pt = by_name["pt_to_accuracy"]
    assert pt["unit"] == "s" and pt["peer"] > 0 and pt["meets_goal"] in (True, False)
    assert pt["detail"]["ours"]["reached"] and pt["detail"]["peer"]["reached"]  # the quick threshold is 0.0
    assert pt["detail"]["ours"]["step"] >= 1 and pt["detail"]["peer"]["step"] >= 1
    click = by_name["click_to_result"]
    assert set(click["detail"]["phases"]) == {"teacher", "metric", "training", "test", "other"}
    assert all(click["detail"]["phases"][k] > 0 for k in ("teacher", "training", "test"))
    assert 0 <= click["detail"]["test_acc"] <= 1
    pages = by_name["page_render"]["detail"]
    assert set(pages["cold_seconds"]) == set(pages["warm_seconds"]) == {"similarity", "clusters", "transfer"}
    assert pages["prompts"] == 3


def test_the_click_case_reads_the_transfer_page_defaults():
    from devtools.bench.waits import transfer_page_defaults
    from panda_core.training import TrainConfig

    page = transfer_page_defaults()
    assert set(page) == {"steps", "eval_every", "dev_limit", "test_limit"}
    assert page["test_limit"] is None or page["test_limit"] > 0  # the page's 0 means the whole test split
    TrainConfig(**page)  # valid training settings


def test_cases_without_a_peer_render_without_a_ratio():
    case = Case("click_to_result", ours=12.5, peer=None, floor=None, unit="s", goal="report only",
                detail={"phases": {"teacher": 5.0, "metric": 0.5, "training": 6.0, "test": 0.8, "other": 0.2}})
    result = {"machine": {"cpu": "x", "usable_cores": 2, "torch_threads": 2, "memory_gb": 1.0, "os": "Linux",
                          "device": "cpu", "versions": {"python": "3", "torch": "2", "transformers": "5"},
                          "load_average": [0.1], "load_average_end": [0.1], "date": "today"},
              "settings": {"quick": True, "backbones": ["minilm"], "batch_size": 8, "prompt_length": 20, "reps": 3},
              "cases": [case.to_dict()], "seconds": 1.0}
    text = render_results(result)
    assert "`click_to_result`: 12.50 s (teacher 5.0 s, metric 0.5 s, training 6.0 s, test 0.8 s" in text
    assert "-x" not in text


def test_the_pair_by_pair_peers_define_the_same_embedding_metrics():
    import torch

    from devtools.bench.indicators import NAIVE_EMBEDDING, pairwise
    from panda_core.indicators import EMBEDDING_FUNCS

    assert set(NAIVE_EMBEDDING) == set(EMBEDDING_FUNCS)
    P = torch.randn(4, 3, 8, generator=torch.Generator().manual_seed(0))
    for name, f in EMBEDDING_FUNCS.items():
        naive = pairwise(4, lambda s, t, g=NAIVE_EMBEDDING[name]: g(P[s].double(), P[t].double()))
        assert torch.allclose(f(P), naive, atol=1e-9), name


def test_a_resumed_run_keeps_the_finished_groups_and_runs_the_rest(tmp_path, monkeypatch):
    """`bench --resume`: groups an interrupted run finished are not run again,
    the others are; without --resume everything runs (no model here: each
    case function is replaced by a counter)."""
    from devtools.bench import run as bench_run

    monkeypatch.setenv("PANDA_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []

    def fake(name: str):
        def make(*args, **kwargs):
            calls.append(name)
            case = Case(name=name, ours=1.0, peer=2.0, floor=None, unit="s", goal="report only")
            return [case] if name in ("steps", "indicators", "sweeps") else case
        return make

    for attr in ("bench_steps", "bench_batched", "bench_indicators", "bench_sweeps"):
        monkeypatch.setattr(bench_run, attr, fake(attr.removeprefix("bench_")))
    monkeypatch.setattr(bench_run, "WAIT_CASES", {"eval_throughput": fake("eval_throughput"),
                                                  "page_render": fake("page_render")})
    first = bench_run.run_bench(quick=True, backbones=["minilm"], log=lambda m: None)
    assert len(calls) == 6 and len(first["cases"]) == 6
    progress = bench_run.progress_file(bench_run.BenchConfig.make(True, ["minilm"]))
    saved = json.loads(progress.read_text())
    del saved["groups"]["page_render on minilm"]  # as if killed during the last group
    progress.write_text(json.dumps(saved))
    calls.clear()
    resumed = bench_run.run_bench(quick=True, backbones=["minilm"], log=lambda m: None, resume=True)
    assert calls == ["page_render"]
    assert [c["name"] for c in resumed["cases"]] == [c["name"] for c in first["cases"]]
    assert "page_render on minilm" not in resumed["resumed"] and len(resumed["resumed"]) == 5
    sessions = resumed["machine"]["sessions"]  # the resumed session's machine facts are kept too
    assert len(sessions) == 1 and set(sessions[0]) == set(bench_run.SESSION_FACTS)
    saved = json.loads(progress.read_text())["groups"]
    assert saved["page_render on minilm"]["session"] == 1 and saved["indicators on minilm"]["session"] == 0
    assert "Resumed on " in describe_machine(resumed["machine"])
    assert "Resumed on " not in describe_machine(first["machine"])
    calls.clear()
    bench_run.run_bench(quick=True, backbones=["minilm"], log=lambda m: None)
    assert len(calls) == 6
