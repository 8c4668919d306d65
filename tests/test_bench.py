"""The performance harness: its quick mode runs end to end and reports every
case (speed is not checked here), and its pieces behave."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devtools.bench import CASE_NAMES, Case, PeakRSS, interleaved, render_results, write_docs
from panda_core.paths import REPO_ROOT

FIELDS = {"name", "ours", "peer", "floor", "ratio_vs_peer", "ratio_vs_floor", "unit", "goal", "meets_goal", "rss_mb"}


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
        assert any(n == case or n.startswith(case + ":") for n in names), (case, names)
    for c in out["cases"]:
        assert FIELDS <= set(c), c
        assert c["ours"] is not None and c["ours"] > 0, c
        assert c["rss_mb"] is None or c["rss_mb"] > 0
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


def test_the_pair_by_pair_peers_define_the_same_embedding_metrics():
    import torch

    from devtools.bench.indicators import NAIVE_EMBEDDING, pairwise
    from panda_core.indicators import EMBEDDING_FUNCS

    assert set(NAIVE_EMBEDDING) == set(EMBEDDING_FUNCS)
    P = torch.randn(4, 3, 8, generator=torch.Generator().manual_seed(0))
    for name, f in EMBEDDING_FUNCS.items():
        naive = pairwise(4, lambda s, t, g=NAIVE_EMBEDDING[name]: g(P[s].double(), P[t].double()))
        assert torch.allclose(f(P), naive, atol=1e-9), name
