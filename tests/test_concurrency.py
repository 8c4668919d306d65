"""Concurrency (issue 6): two writer processes standing in for two app
sessions (saving prompts, recording runs with curves, adding user tasks) and
a CLI sweep, all on the same cache at the same time, while `doctor --fix`
runs over and over in this process. Afterwards: no run lost or duplicated,
every prompt intact, both sessions' user tasks registered, the database
passes its integrity check and doctor finds nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import torch
from reliability_helpers import REPO, child_cmd, child_env, labelled_rows, record, write_csv

from panda_core import data as tasks
from panda_core import store
from panda_core.ops import doctor
from panda_core.prompts import SoftPrompt


@pytest.mark.slow
def test_two_sessions_and_a_sweep_on_one_cache(private_cache, tmp_path):
    tasks.add_user_task("cc_src", write_csv(tmp_path / "src.csv", labelled_rows(60, seed=3)))
    tasks.add_user_task("cc_tgt", write_csv(tmp_path / "tgt.csv", labelled_rows(60, seed=4)))
    store.save_prompt(SoftPrompt(tensor=torch.randn(4, 384) * 0.05, backbone="minilm", task="cc_src", method="pt"))
    env = child_env(private_cache)
    stop = tmp_path / "stop"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "panda_core", "sweep", "--sources", "cc_src", "--targets", "cc_tgt", "--methods",
         "zero-shot", "pot", "pt", "--steps", "4", "--eval-every", "2", "--prompt-len", "4", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    sessions = [subprocess.Popen(child_cmd("store-loop", "--tag", tag, "--seed", str(i), "--count", "400",
                                           "--tasks-every", "7", "--until", str(stop)),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
                for i, tag in enumerate(("a", "b"))]
    doctor_runs, doctor_errors = [0], []
    done = threading.Event()

    def doctor_loop() -> None:  # a third party repairing the cache while everyone writes
        while not done.is_set():
            try:
                report = doctor.check(fix=True)
                bad = [p for p in report["problems"] if "checksum" in p or "missing" in p or "integrity" in p]
                if bad:
                    doctor_errors.append(bad)
            except Exception as err:  # noqa: BLE001 - reported below
                doctor_errors.append(repr(err))
            doctor_runs[0] += 1
            time.sleep(0.2)

    t = threading.Thread(target=doctor_loop, daemon=True)
    t.start()
    t0 = time.time()
    out, err = sweep.communicate(timeout=900)
    stop.touch()
    results = [s.communicate(timeout=300) for s in sessions]
    done.set()
    t.join(timeout=120)
    seconds = time.time() - t0

    assert sweep.returncode == 0, err[-2000:]
    for s, (_sout, serr) in zip(sessions, results, strict=True):
        assert s.returncode == 0, serr[-2000:]
    assert not doctor_errors, doctor_errors

    acked_runs, acked_tasks = [], []
    for sout, _ in results:
        for line in sout.splitlines():
            parts = line.split()
            if parts[:2] == ["ACK", "run"]:
                acked_runs.append((parts[2], parts[3]))
            elif parts[:2] == ["ACK", "task"]:
                acked_tasks.append(parts[2])
    assert acked_runs and acked_tasks
    # no run lost, none duplicated
    runs = store.list_runs(kind="train", limit=1_000_000)
    by_child = Counter((r["config"].get("child"), r["config"].get("i")) for r in runs if "child" in r["config"])
    assert all(n == 1 for n in by_child.values()), [k for k, n in by_child.items() if n > 1]
    ids = {r["id"]: r for r in runs}
    for run_id, prompt_id in acked_runs:
        assert ids[run_id]["status"] == "done" and ids[run_id]["prompt_id"] == prompt_id
        assert store.load_prompt(prompt_id).extra["run_id"] == run_id
        assert [s for s, _ in store.curve(run_id)] == [0, 1]
    assert len(by_child) == len(acked_runs)  # every started run finished (the writers were not killed)
    # both sessions' user tasks survived each other's registry updates
    registered = {t["name"] for t in tasks.list_tasks() if t["source"] == "user" and t["available"]}
    assert set(acked_tasks) <= registered
    # the sweep did its three transfers once each
    sweep_out = json.loads(out)
    assert len(sweep_out["runs"]) == 3 and sweep_out["failed"] == 0, sweep_out
    transfers = store.list_runs(kind="transfer", limit=1000)
    assert sorted(r["status"] for r in transfers) == ["done"] * 3
    assert len({r["key"] for r in transfers}) == 3
    conn = store.connect()
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    report = doctor.check()
    assert report["ok"], report
    record("concurrency", processes=3, doctor_fix_passes=doctor_runs[0], runs_written=len(acked_runs) + 3,
           user_tasks_written=len(acked_tasks), runs_lost=0, runs_duplicated=0, seconds=round(seconds, 1))
