"""End to end through the command line, on tiny budgets: train, transfer with
every method, indicators, projector, export/import, doctor."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from panda_core import store
from panda_core.cli import main

STEPS = ["--steps", "6", "--prompt-len", "4", "--dev-limit", "32", "--test-limit", "48", "--train-limit", "64"]


def cli(capsys, *args) -> dict:
    code = main([*args, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def _cli_once(*args) -> dict:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        code = main([*args, "--json"])
    assert code == 0
    return json.loads(buf.getvalue())


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    from conftest import link_project_data

    root = tmp_path_factory.mktemp("cache")
    link_project_data(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("PANDA_CACHE", str(root))
    prompts = tuple(_cli_once("train", "--task", t, *STEPS, "--eval-every", "3")
                    for t in ("yelp_uci", "amazon_uci", "bbc"))
    yield root, prompts
    mp.undo()


@pytest.fixture
def two_prompts(module_cache, monkeypatch):
    monkeypatch.setenv("PANDA_CACHE", str(module_cache[0]))
    return module_cache[1]


def test_train_reports_the_design_fields(two_prompts):
    a = two_prompts[0]
    for key in ("prompt_id", "task", "backbone", "init_test_acc", "dev_acc", "test_acc", "steps", "seconds"):
        assert key in a
    assert a["backbone"] == "minilm" and a["steps"] == 6
    assert store.load_prompt(a["prompt_id"]).length == 4


@pytest.mark.parametrize("method", ["zero-shot", "pt", "pot", "panda", "model-tuning"])
def test_every_transfer_method_runs_and_is_recorded(two_prompts, capsys, method):
    out = cli(capsys, "transfer", "--source", "amazon_uci", "--target", "yelp_uci", "--method", method,
              *STEPS, "--eval-every", "3")
    assert out["method"] == method and 0.0 <= out["test_acc"] <= 1.0
    run = store.get_run(out["run_id"])
    assert run["status"] == "done" and run["result"]["test_acc"] == out["test_acc"]
    if method == "panda":
        assert 0.0 <= out["kd_weight"] <= 1.0 and out["transferability"] is not None
    if method not in ("zero-shot",):
        assert out["dev_curve"][0][0] == 0 and len(out["dev_curve"]) >= 2


def test_identical_transfer_is_reused_not_rerun(two_prompts, capsys):
    args = ["transfer", "--source", "amazon_uci", "--target", "yelp_uci", "--method", "pot", *STEPS]
    first = cli(capsys, *args)
    second = cli(capsys, *args)
    assert second["reused"] and second["run_id"] == first["run_id"]


def test_transfer_across_label_sets(two_prompts, capsys):
    out = cli(capsys, "transfer", "--source", "bbc", "--target", "yelp_uci", "--method", "pot", *STEPS)
    assert out["test_acc"] > 0


@pytest.mark.parametrize("metric", ["e_concat", "e_avg", "c_concat", "c_avg", "spot", "on", "panda"])
def test_similarity_matrix_over_cached_prompts(two_prompts, capsys, metric):
    out = cli(capsys, "similarity", "--metric", metric, "--prompt-len", "4", "--n-inputs", "8")
    k = len(out["tasks"])
    assert k == 3 and len(out["matrix"]) == k and all(len(r) == k for r in out["matrix"])
    if metric in ("on", "e_concat", "c_concat", "spot", "panda"):
        assert all(abs(out["matrix"][i][i] - 1.0) < 1e-6 for i in range(k))


def test_on_layer_window(two_prompts, capsys):
    out = cli(capsys, "similarity", "--metric", "on", "--prompt-len", "4", "--layers", "4:6")
    assert len(out["matrix"]) == 3


def test_projector_maps_shapes_and_round_trips(two_prompts, capsys):
    from panda_core.projector import PromptProjector, load_projector

    proj = PromptProjector(4, 384, 768, hidden=16)
    assert proj(torch.randn(4, 384)).shape == (4, 768)
    assert proj(torch.randn(3, 4, 384)).shape == (3, 4, 768)
    out = cli(capsys, "project", "--target-backbone", "smollm2", "--train-task", "yelp_uci", "--steps", "2",
              "--prompt-len", "4", "--eval-tasks", "yelp_uci", "amazon_uci")
    assert [r["task"] for r in out["results"]] == ["yelp_uci", "amazon_uci"]
    loaded, meta = load_projector(out["projector_id"])
    assert meta["d_source"] == 384 and meta["d_target"] == 576
    assert loaded(torch.randn(4, 384)).shape == (4, 576)


def test_projector_training_stops_when_cancelled(two_prompts):
    from panda_core.projector import train_projector
    from panda_core.train import Cancelled

    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(Cancelled, match="step 2/50"):
        train_projector("minilm", "minilm", "yelp_uci", "distance", steps=50, prompt_length=4, hidden=8,
                        should_stop=stop)


def test_peft_export_loads_in_peft_and_imports_back(two_prompts, capsys, tmp_path):
    from peft import PeftModel
    from transformers import AutoModel

    from panda_core.backbones import get_backbone

    pid = two_prompts[0]["prompt_id"]
    out = cli(capsys, "prompts", "export", pid, "--format", "peft", "--out", str(tmp_path))
    folder = tmp_path / pid
    base = AutoModel.from_pretrained(str(get_backbone("minilm").path), local_files_only=True)
    peft_model = PeftModel.from_pretrained(base, str(folder))
    weights = peft_model.prompt_encoder["default"].embedding.weight.detach()
    assert torch.allclose(weights, store.load_prompt(pid).tensor)
    back = cli(capsys, "prompts", "import", str(folder), "--backbone", "minilm", "--task", "yelp_uci")
    assert torch.equal(store.load_prompt(back["prompt_id"]).tensor, store.load_prompt(pid).tensor)
    assert len(out["files"]) == 2


def test_bad_input_is_one_line_error_and_nonzero_exit(private_cache, tmp_path):  # noqa: C901
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a tensor file at all")
    cases = [
        ["train", "--task", "no_such_task"],
        ["transfer", "--source", "mr", "--target", "yelp_uci", "--method", "pot", "--prompt-len", "7"],
        ["prompts", "import", str(bad), "--backbone", "minilm", "--task", "mr"],
        ["similarity", "--metric", "on", "--prompt-len", "9"],
    ]
    for args in cases:
        proc = subprocess.run([sys.executable, "-m", "panda_core", *args, "--json"], capture_output=True, text=True,
                              env={**__import__("os").environ, "PANDA_CACHE": str(private_cache)}, timeout=120)
        assert proc.returncode != 0, args
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert proc.stdout == ""


def test_doctor_finds_orphans_and_checksum_mismatches(two_prompts, capsys):
    from panda_core import doctor, paths

    assert doctor.check()["ok"], doctor.check()["problems"]
    stray = paths.prompts_dir() / "stray.safetensors"
    stray.write_bytes(b"x")
    path = store.prompt_path(two_prompts[0]["prompt_id"])
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    try:
        problems = doctor.check()["problems"]
        assert any("orphan" in p for p in problems) and any("checksum" in p for p in problems)
    finally:
        path.write_bytes(original)
        stray.unlink()
