"""The prompt store and run registry: round trips, refusals, atomicity."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from panda_core import store
from panda_core.errors import PandaError
from panda_core.prompts import SoftPrompt


def _prompt(**kw) -> SoftPrompt:
    base = dict(tensor=torch.randn(5, 8), backbone="minilm", task="mr", seed=3, scores={"test_acc": 0.8})
    return SoftPrompt(**(base | kw))


def test_save_load_round_trip_keeps_tensor_head_and_metadata(private_cache):
    head = {"weight": torch.randn(2, 8), "bias": torch.zeros(2)}
    pid = store.save_prompt(_prompt(head=head))
    back = store.load_prompt(pid, backbone="minilm", hidden_size=8, length=5)
    assert torch.equal(back.tensor, store.read_prompt_file(store.prompt_path(pid)).tensor)
    assert back.task == "mr" and back.seed == 3 and back.scores["test_acc"] == 0.8
    assert torch.equal(back.head["weight"], head["weight"])
    sidecar = json.loads(store.prompt_path(pid).with_suffix(".json").read_text())
    assert sidecar["sha256"] == store.sha256_file(store.prompt_path(pid))
    assert [r["id"] for r in store.list_prompts(task="mr")] == [pid]


def test_load_refuses_wrong_backbone_hidden_size_and_length(private_cache):
    pid = store.save_prompt(_prompt())
    with pytest.raises(PandaError, match="hidden size 8"):
        store.load_prompt(pid, backbone="mpnet", hidden_size=768)
    with pytest.raises(PandaError, match="trained on backbone 'minilm'"):
        store.load_prompt(pid, backbone="other", hidden_size=8)
    with pytest.raises(PandaError, match="has 5 tokens"):
        store.load_prompt(pid, backbone="minilm", hidden_size=8, length=20)


def test_checksum_mismatch_is_refused(private_cache):
    pid = store.save_prompt(_prompt())
    path = store.prompt_path(pid)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PandaError, match="checksum"):
        store.load_prompt(pid)


def test_pickle_and_garbage_files_are_refused_without_unpickling(private_cache, tmp_path):
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"prompt": [1, 2, 3]}))
    with pytest.raises(PandaError, match="pickle"):
        store.read_prompt_file(evil)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(PandaError, match="not a readable safetensors"):
        store.read_prompt_file(junk)


def test_nan_prompt_cannot_be_saved(private_cache):
    t = torch.randn(3, 4)
    t[1, 1] = float("nan")
    with pytest.raises(PandaError, match="NaN"):
        store.save_prompt(_prompt(tensor=t))


def test_prompt_ids_cannot_escape_the_cache(private_cache):
    with pytest.raises(PandaError, match="not a valid prompt id"):
        store.prompt_path("../../etc/passwd")


def test_runs_and_curves_are_recorded(private_cache):
    rid = store.create_run("train", "pt", "mr", "minilm", {"steps": 3})
    store.add_curve_point(rid, 0, 0.5)
    store.add_curve_point(rid, 10, 0.75)
    store.update_run(rid, status="done", result={"test_acc": 0.7})
    run = store.get_run(rid)
    assert run["status"] == "done" and run["result"]["test_acc"] == 0.7
    assert store.curve(rid) == [(0, 0.5), (10, 0.75)]


def test_background_jobs_are_claimed_in_submission_order(private_cache):
    ids = [store.create_run("train", "pt", t, "minilm", {}, status="queued") for t in ("a", "b", "c")]
    for run_id in ids:
        store.update_run(run_id, pid=os.getpid())
    assert not store.claim_run(ids[2], max_running=2)  # older jobs wait
    assert store.claim_run(ids[0], max_running=2)
    assert store.claim_run(ids[1], max_running=2)
    assert not store.claim_run(ids[2], max_running=2)  # both slots busy
    store.update_run(ids[0], status="done")
    assert store.claim_run(ids[2], max_running=2)


def test_job_queue_imports_no_torch_until_a_job_runs():
    """A queue of waiting workers must cost megabytes, not a torch each."""
    import subprocess
    import sys

    code = "import sys, panda_core.cli, panda_core.ops, panda_core.ops.jobs; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_training_time_estimate_comes_from_recorded_runs(private_cache):
    from panda_core.ops.training import estimate_seconds, seconds_per_step

    assert estimate_seconds("minilm", ["mr"], 100) is None  # nothing recorded yet
    for task, secs in (("mr", 60.0), ("mr", 80.0), ("bbc", 300.0)):
        run_id = store.create_run("train", "pt", task, "minilm", {})
        store.update_run(run_id, status="done", result={"seconds": secs, "steps": 100})
    other = store.create_run("train", "pt", "mr", "mpnet", {})
    store.update_run(other, status="done", result={"seconds": 900.0, "steps": 100})
    rates = seconds_per_step("minilm")
    assert rates["mr"] == pytest.approx(0.7) and rates["bbc"] == pytest.approx(3.0)
    assert estimate_seconds("minilm", ["mr", "bbc"], 10) == pytest.approx(37.0)
    assert estimate_seconds("minilm", ["tweets"], 10) == pytest.approx(rates["*"] * 10)


def test_latest_prompt_is_the_one_rule_for_a_tasks_prompt(private_cache):
    assert store.latest_prompt("mr", "minilm") is None and store.latest_prompt_id("mr", "minilm") is None
    old = store.save_prompt(_prompt(created=100.0))
    short = store.save_prompt(_prompt(tensor=torch.randn(3, 8), created=200.0))
    new = store.save_prompt(_prompt(created=150.0))
    store.save_prompt(_prompt(method="pot", created=300.0))
    store.save_prompt(_prompt(task="subj", created=50.0))
    assert store.latest_prompt("mr", "minilm")["id"] == short  # newest of any length
    assert store.latest_prompt("mr", "minilm", length=5)["id"] == new != old
    assert store.latest_prompt_id("mr", "minilm", "pt", 5) == new
    assert store.latest_prompt("mr", "mpnet") is None
    newest = store.latest_prompts("minilm", length=5)
    assert {t: r["id"] for t, r in newest.items()} == {"mr": new, "subj": store.latest_prompt_id("subj", "minilm")}
    assert list(store.latest_prompts("minilm", tasks=["subj"])) == ["subj"]
    assert newest["mr"]["scores"] == {"test_acc": 0.8} and newest["mr"]["length"] == 5


def test_run_records_are_typed_and_read_like_the_run_dicts(private_cache):
    rid = store.create_run("transfer", "pot", "mr", "minilm", {"train": {"steps": 3}}, source="subj", key="k")
    store.update_run(rid, status="done", result={"test_acc": 0.7}, progress={"step": 3})
    run = store.run_record(rid)
    assert isinstance(run, store.Run) and run.status == "done" and run["status"] == "done"
    assert run.config == {"train": {"steps": 3}} and run.result == {"test_acc": 0.7} and run.get("error") is None
    assert dict(run) == store.get_run(rid)
    assert store.Run.from_row(store.get_run(rid)) == run and not run.active
    assert [r.id for r in store.run_records(kind="transfer")] == [rid]
    assert store.run_record("nope") is None


def test_job_kinds_registry_refuses_unknown_kinds_and_bad_parameters(private_cache):
    from panda_core.ops import jobs
    from panda_core.ops.job_kinds import JOB_KINDS, JobKind

    assert JOB_KINDS.names() == ["train", "transfer", "project"]
    assert all(isinstance(k, JobKind) and k.label for k in JOB_KINDS)
    with pytest.raises(PandaError, match="unknown job kind 'dance'; choose from train, transfer, project"):
        jobs.submit("dance", {}, launch=False)
    with pytest.raises(PandaError, match="needs the parameter 'task'"):
        jobs.submit("train", {"config": {}}, launch=False)
    with pytest.raises(PandaError, match="unknown training setting.*stepz"):
        jobs.submit("train", {"task": "mr", "config": {"stepz": 3}}, launch=False)
    assert store.list_runs() == []  # nothing queued for a refused job
    rid = jobs.submit("transfer", {"source": "subj", "target": "mr", "method": "pot", "backbone": "minilm",
                                   "config": {"train": {"steps": 2}}}, launch=False)
    run = store.get_run(rid)
    assert (run["status"], run["kind"], run["method"], run["source"], run["target"]) == \
        ("queued", "transfer", "pot", "subj", "mr")


def _proc_state(pid: int) -> str | None:
    try:
        text = open(f"/proc/{pid}/status").read()  # noqa: PTH123, SIM115
    except FileNotFoundError:
        return None
    return next((line.split()[1] for line in text.splitlines() if line.startswith("State:")), "?")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_finished_job_workers_are_reaped_not_left_as_zombies(private_cache):
    """A job that fails fast (unknown task) runs in a real worker process; once
    it has exited, no zombie of it remains under this (the app's) process."""
    import time

    from panda_core.ops import jobs

    run_id = jobs.submit("train", {"task": "no_such_task", "config": {"steps": 1}}, launch=True)
    pid = store.get_run(run_id)["pid"]
    run = jobs.wait(run_id, timeout=180, poll=0.2)
    assert run["status"] == "failed" and "no_such_task" in run["error"], run
    deadline = time.time() + 30
    while _proc_state(pid) is not None and time.time() < deadline:
        time.sleep(0.1)
    assert _proc_state(pid) is None, f"worker {pid} is still there in state {_proc_state(pid)} (Z: a zombie)"


def test_a_finished_run_stays_done_when_later_work_of_its_block_fails(private_cache):
    from panda_core.ops.lifecycle import recorded

    with pytest.raises(RuntimeError):
        with recorded("train", "pt", "mr", "minilm", {"steps": 1}) as run:
            run.done({"test_acc": 0.5})
            raise RuntimeError("a later prompt of the batch failed")
    assert store.get_run(run.id)["status"] == "done"


def test_reading_the_store_of_an_empty_cache_creates_nothing(private_cache):
    assert store.list_runs() == [] and store.latest_prompt_id("mr", "minilm", "pt", 20) is None
    assert not (private_cache / "runs.sqlite").exists()
