"""Sweeps: the plan, the executors (threads per worker, Ray), same seeds same
scores, training the missing prompts, and resuming a killed sweep without
repeating a finished run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from panda_core import store
from panda_core.backbones import get_backbone
from panda_core.ops.sweep import cores, needed_prompts, plan, run_sweep
from panda_core.paths import REPO_ROOT
from panda_core.prompts import SoftPrompt, init_prompt
from panda_core.training import TrainConfig
from panda_core.transfer import TransferConfig

TASKS = ["yelp_uci", "amazon_uci", "imdb_uci"]


def _tiny(**kw) -> TransferConfig:
    base = dict(steps=3, eval_every=3, batch_size=8, dev_limit=16, test_limit=16, train_limit=64, prompt_length=4,
                seed=0)
    return TransferConfig(train=TrainConfig(**(base | kw)))


def _seed_prompts(tasks, length=4):
    bb = get_backbone("minilm")
    for i, t in enumerate(tasks):
        store.save_prompt(SoftPrompt(tensor=init_prompt(bb.embeddings(), length, "vocab", seed=50 + i),
                                     backbone="minilm", task=t, method="pt"))


def test_plan_orders_pot_before_panda_and_skips_self_pairs():
    jobs = plan(["a", "b"], ["a", "b"], ["panda", "pot", "pt"])
    methods = [j["method"] for j in jobs]
    assert methods == sorted(methods, key=["pt", "pot", "panda"].index)
    assert {(j["source"], j["target"]) for j in jobs if j["method"] == "pot"} == {("a", "b"), ("b", "a")}
    assert [j for j in jobs if j["method"] == "pt"] == [{"source": None, "target": "a", "method": "pt"},
                                                         {"source": None, "target": "b", "method": "pt"}]
    assert needed_prompts(jobs) == ["a", "b"] and needed_prompts(jobs, ["b", "a"]) == ["b", "a"]
    assert needed_prompts(plan(["a"], ["b"], ["pot"])) == ["a"]


def test_plan_reads_the_method_registry():
    """Sources per method, self pairs and the run order come from METHODS: no
    method name is typed out in the planner."""
    from panda_core.errors import PandaError
    from panda_core.transfer import METHODS, Sources

    many = next(m.name for m in METHODS if m.sources is Sources.MANY)
    jobs = plan(["a", "b", "c"], ["a"], [many, "zero-shot", "pot"], include_self=True)
    assert {"source": "a", "target": "a", "method": "zero-shot"} in jobs  # zero-shot allows its diagonal
    assert [j["source"] for j in jobs if j["method"] == "pot"] == ["b", "c"]  # PoT does not
    assert [j["source"] for j in jobs if j["method"] == many] == ["b,c"]  # one run reads every other source
    assert needed_prompts(plan(["a", "b"], ["c"], [many])) == ["a", "b"]
    assert needed_prompts(plan(["a"], ["c"], ["panda"])) == ["a", "c"]  # PANDA reads the target's own prompt
    with pytest.raises(PandaError, match="unknown transfer method 'nope'; choose from"):
        plan(["a"], ["b"], ["nope"])


def test_bad_executor_and_workers_are_refused(private_cache):
    from panda_core.errors import PandaError

    with pytest.raises(PandaError, match="executor"):
        run_sweep(["yelp_uci"], ["amazon_uci"], ["pot"], executor="dask")
    with pytest.raises(PandaError, match="workers"):
        run_sweep(["yelp_uci"], ["amazon_uci"], ["pot"], workers=0)


def test_missing_source_prompts_are_trained_in_one_batched_run_then_reused(private_cache):
    out = run_sweep(TASKS[:2], TASKS[:2], ["zero-shot"], config=_tiny())
    assert [r["task"] for r in out["trained"]] == TASKS[:2]
    assert all(r.get("batched_with") == TASKS[:2] for r in out["trained"])
    assert out["failed"] == 0 and len(out["runs"]) == 2
    again = run_sweep(TASKS[:2], TASKS[:2], ["zero-shot"], config=_tiny())
    assert again["trained"] == [] and all(r["reused"] for r in again["runs"])
    assert [r["test_acc"] for r in again["runs"]] == [r["test_acc"] for r in out["runs"]]


@pytest.mark.slow
def test_two_local_workers_and_ray_give_the_same_scores(private_cache, monkeypatch):
    """Same seeds, same threads per run: the process pool and Ray agree exactly;
    each worker gets cores // workers torch threads."""
    pytest.importorskip("ray")
    scores = {}
    for executor in ("local", "ray"):
        cache = private_cache.parent / f"cache-{executor}"
        cache.mkdir()
        for name in ("models", "downloads", "tasks"):
            (cache / name).symlink_to(private_cache / name, target_is_directory=True)
        monkeypatch.setenv("PANDA_CACHE", str(cache))
        _seed_prompts(TASKS[:2])
        out = run_sweep(TASKS[:2], TASKS[:2], ["pot"], config=_tiny(), executor=executor, workers=2)
        assert out["failed"] == 0, out
        assert out["threads_per_worker"] == max(1, cores() // 2)
        assert all(r["threads"] == out["threads_per_worker"] for r in out["runs"])
        assert len({r["pid"] for r in out["runs"]} - {os.getpid()}) >= 1  # ran outside this process
        scores[executor] = {(r["source"], r["target"]): r["test_acc"] for r in out["runs"]}
        assert all(store.get_run(r["run_id"])["status"] == "done" for r in out["runs"])
    assert scores["local"] == scores["ray"]
    assert len(scores["local"]) == 2


_SCRIPT = r"""
import json, sys
from panda_core.ops.sweep import run_sweep
from panda_core.training import TrainConfig
from panda_core.transfer import TransferConfig
spec = json.loads(sys.argv[1])
out = run_sweep(spec["tasks"], spec["tasks"], ["pot"], config=TransferConfig(train=TrainConfig(**spec["train"])),
                workers=spec["workers"])
print(json.dumps({"failed": out["failed"]}))
"""


def _done_by_key() -> Counter:
    runs = store.list_runs(kind="transfer", limit=10000)
    return Counter(r["key"] for r in runs if r["status"] == "done")


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_runs_each_transfer_exactly_once(private_cache):
    """kill -9 the sweep (2 pool workers) after its first recorded run; the pool
    workers die with it; the restarted sweep skips finished keys and finishes
    the rest: every (source, target, method) has exactly one done run."""
    _seed_prompts(TASKS)
    train = dict(steps=24, eval_every=24, batch_size=8, dev_limit=16, test_limit=16, train_limit=64,
                 prompt_length=4, seed=0)
    env = dict(os.environ, PANDA_CACHE=str(private_cache), PYTHONPATH=str(REPO_ROOT))
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, json.dumps({"tasks": TASKS, "train": train, "workers": 2})],
                            cwd=str(REPO_ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    try:
        while not _done_by_key():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no run finished in time"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the sweep process only: its workers must follow it
        proc.wait()
    first = _done_by_key()
    planned = len(plan(TASKS, TASKS, ["pot"]))
    assert 1 <= sum(first.values()) < planned, "kill came too late to test resuming"
    time.sleep(1.0)  # give orphans (if any survived) the chance to record a duplicate

    out = run_sweep(TASKS, TASKS, ["pot"], config=TransferConfig(train=TrainConfig(**train)), workers=1)
    assert out["failed"] == 0
    assert sum(r["reused"] for r in out["runs"]) >= sum(first.values())
    done = _done_by_key()
    assert len(done) == planned
    assert all(count == 1 for count in done.values()), done
    # runs the kill interrupted are no longer shown as running
    assert not [r for r in store.list_runs(kind="transfer", limit=10000) if r["status"] == "running"]
