"""End to end through the command line, on tiny budgets: train, transfer with
every method, indicators, projector, export/import, doctor."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from panda_core import store, training
from panda_core.cli import main
from panda_core.errors import PandaError
from panda_core.prompts import SoftPrompt
from panda_core.training import TrainConfig, TrainResult
from panda_core.transfer import (
    METHODS,
    KdForm,
    Method,
    Need,
    Sources,
    Teacher,
    TransferConfig,
    TransferMethod,
    execution_order,
    kd_weight,
    run_transfer,
)

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
    _assert_interval_and_baseline(a, "yelp_uci")
    from panda_core.prompts import task_seed

    seeds = [store.load_prompt(p["prompt_id"]).extra["init_seed"] for p in two_prompts]
    assert seeds == [task_seed(t, 0) for t in ("yelp_uci", "amazon_uci", "bbc")]  # one start per task


def _assert_interval_and_baseline(result: dict, task: str) -> None:
    """test_acc carries its Wilson interval, the majority baseline and the scored items (the first n_test)."""
    from collections import Counter

    from panda_core.data import load_split
    from panda_core.stats import decode_items, wilson_interval

    items = decode_items(result["test_correct"])
    assert len(items) == result["n_test"] == 48  # --test-limit
    assert result["test_acc"] == pytest.approx(items.mean(), abs=1e-4)
    low, high = result["test_acc_ci"]
    assert low <= result["test_acc"] <= high and (low, high) == pytest.approx(wilson_interval(int(items.sum()), 48), abs=1e-4)
    labels = [ex.label for ex in load_split(task, "test")[:48]]
    assert result["majority_test_acc"] == pytest.approx(max(Counter(labels).values()) / 48, abs=1e-4)


@pytest.mark.parametrize("method", ["zero-shot", "pt", "pot", "panda", "model-tuning"])
def test_every_transfer_method_runs_and_is_recorded(two_prompts, capsys, method):
    source = [] if METHODS.get(method).sources is Sources.OPTIONAL else ["--source", "amazon_uci"]
    out = cli(capsys, "transfer", *source, "--target", "yelp_uci", "--method", method,
              *STEPS, "--eval-every", "3")
    assert out["method"] == method and 0.0 <= out["test_acc"] <= 1.0
    run = store.get_run(out["run_id"])
    assert run["status"] == "done" and run["result"]["test_acc"] == out["test_acc"]
    _assert_interval_and_baseline(out, "yelp_uci")
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
    from panda_core.crossmodel import PromptProjector, load_projector

    proj = PromptProjector(4, 384, 768, hidden=16)
    assert proj(torch.randn(4, 384)).shape == (4, 768)
    assert proj(torch.randn(3, 4, 384)).shape == (3, 4, 768)
    out = cli(capsys, "project", "--target-backbone", "smollm2", "--train-task", "yelp_uci", "--steps", "2",
              "--prompt-len", "4", "--eval-tasks", "yelp_uci", "amazon_uci", "--test-limit", "40")
    assert [r["task"] for r in out["results"]] == ["yelp_uci", "amazon_uci"]
    loaded, meta = load_projector(out["projector_id"])
    assert meta["d_source"] == 384 and meta["d_target"] == 576
    assert loaded(torch.randn(4, 384)).shape == (4, 576)


def test_projector_training_stops_when_cancelled(two_prompts):
    from panda_core.crossmodel import train_projector
    from panda_core.training import Cancelled

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
    assert {Path(f).name for f in out["files"]} >= {"adapter_config.json", "adapter_model.safetensors", "panda.json"}
    assert out["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_bad_input_is_one_line_error_and_nonzero_exit(private_cache, tmp_path):  # noqa: C901
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a tensor file at all")
    cases = [
        ["train", "--task", "no_such_task"],
        ["transfer", "--source", "mr", "--target", "yelp_uci", "--method", "pot", "--prompt-len", "7"],
        ["transfer", "--source", "mr", "--target", "mr", "--method", "panda"],
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


TINY = TrainConfig(steps=6, prompt_length=4, dev_limit=32, test_limit=48, train_limit=64, eval_every=3)


def _pot_runs(source: str, target: str) -> list[dict]:
    return [r for r in store.list_runs(kind="transfer", limit=10000)
            if r["method"] == "pot" and r["source"] == source and r["target"] == target]


def test_panda_reuses_the_pot_run_as_its_teacher(two_prompts):
    cfg = TransferConfig(train=TINY)
    pot = run_transfer("bbc", "amazon_uci", "pot", config=cfg)
    panda = run_transfer("bbc", "amazon_uci", "panda", config=TransferConfig(train=TINY, lambda_max=0.5))
    assert panda["method"] == "panda" and 0.0 <= panda["kd_weight"] <= 0.5
    runs = _pot_runs("bbc", "amazon_uci")
    assert [r["id"] for r in runs] == [pot["run_id"]]  # PT + PoT + PANDA: 3 runs, the teacher trained once


def test_pot_after_panda_reuses_the_teacher_run(two_prompts):
    panda = run_transfer("yelp_uci", "bbc", "panda", config=TransferConfig(train=TINY))
    teacher = _pot_runs("yelp_uci", "bbc")
    assert len(teacher) == 1 and teacher[0]["status"] == "done" and teacher[0]["id"] != panda["run_id"]
    pot = run_transfer("yelp_uci", "bbc", "pot", config=TransferConfig(train=TINY))
    assert pot["reused"] and pot["run_id"] == teacher[0]["id"] and len(_pot_runs("yelp_uci", "bbc")) == 1


def test_queued_jobs_of_one_batch_train_the_teacher_once(two_prompts):
    """The Transfer page queues PoT and PANDA as jobs whose runs are adopted by id."""
    earlier = {r["id"] for r in _pot_runs("bbc", "yelp_uci")}  # other tests of this module, other settings
    ids = {m: store.create_run("transfer", m, "yelp_uci", "minilm", {"job": {}}, source="bbc", status="queued")
           for m in ("pot", "panda")}
    run_transfer("bbc", "yelp_uci", "pot", config=TransferConfig(train=TINY), run_id=ids["pot"])
    run_transfer("bbc", "yelp_uci", "panda", config=TransferConfig(train=TINY), run_id=ids["panda"])
    assert [r["id"] for r in _pot_runs("bbc", "yelp_uci") if r["id"] not in earlier] == [ids["pot"]]
    assert store.get_run(ids["panda"])["status"] == "done"


def test_multi_source_trains_from_the_mean_of_the_source_prompts(two_prompts):
    names = ("amazon_uci", "bbc")
    out = run_transfer(",".join(names), "yelp_uci", "multi-source", config=TransferConfig(train=TINY))
    ids = [store.latest_prompt_id(t, "minilm", "pt", 4) for t in names]
    assert out["source"] == "amazon_uci,bbc" and out["source_prompt"] == ",".join(ids)
    assert out["dev_curve"][0][0] == 0 and store.load_prompt(out["prompt_id"]).method == "multi_source"


def test_multi_source_initial_prompt_is_the_mean(private_cache, monkeypatch):
    tensors = [torch.randn(4, 384) for _ in range(3)]
    for task, t in zip(("mr", "tweets", "bbc"), tensors, strict=True):
        store.save_prompt(SoftPrompt(tensor=t, backbone="minilm", task=task, method="pt"))
    seen = {}

    def fake_train(backbone, task, config, init=None, **kw):
        seen["init"] = init
        return TrainResult(prompt=init, head=None, best_dev=0.5, best_step=0, test_acc=0.5, steps=config.steps)

    monkeypatch.setattr(training, "train", fake_train)  # train_target imports it from the package on use
    out = run_transfer("mr, tweets,bbc", "yelp_uci", "multi-source", config=TransferConfig(train=TINY))
    assert torch.allclose(seen["init"], torch.stack(tensors).mean(0))
    assert out["source"] == "mr,tweets,bbc" and out["test_acc"] == 0.5
    one = run_transfer("mr", "yelp_uci", "multi-source", config=TransferConfig(train=TINY))  # one source: PoT
    assert torch.equal(seen["init"], tensors[0]) and one["source"] == "mr"


def test_prompt_ids_are_resolved_once_and_name_what_is_loaded(private_cache, monkeypatch):
    """A prompt saved while PANDA's teacher trains changes neither the prompts
    PANDA loads nor its key; the teacher's key is a plain PoT run's key."""
    from panda_core import indicators

    first = {t: store.save_prompt(SoftPrompt(tensor=torch.randn(4, 384), backbone="minilm", task=t, method="pt"))
             for t in ("mr", "yelp_uci")}
    inits, lookups = [], []
    real_lookup = store.latest_prompt_id

    def counting_lookup(*args, **kw):
        lookups.append(args[0])
        return real_lookup(*args, **kw)

    def fake_train(backbone, task, config, init=None, **kw):
        inits.append(init.clone())
        time.sleep(0.01)  # the newer prompt gets a later timestamp
        store.save_prompt(SoftPrompt(tensor=torch.randn(4, 384), backbone="minilm", task="mr", method="pt"))
        return TrainResult(prompt=init, head=None, best_dev=0.5, best_step=0, test_acc=0.5, steps=config.steps)

    monkeypatch.setattr(store, "latest_prompt_id", counting_lookup)
    monkeypatch.setattr(training, "train", fake_train)  # train_target imports it from the package on use
    monkeypatch.setattr(indicators, "panda_pair", lambda *a, **k: 0.5)  # PANDA imports it on use
    cfg = TransferConfig(train=TINY)
    out = run_transfer("mr", "yelp_uci", "panda", config=cfg)
    assert sorted(lookups) == ["mr", "yelp_uci"]
    src = store.load_prompt(first["mr"]).tensor
    assert all(torch.equal(i, src) for i in inits) and len(inits) == 2  # the teacher (PoT), then the student
    used = (first["mr"], first["yelp_uci"])
    assert store.get_run(out["run_id"])["key"] == cfg.key("panda", "mr", "yelp_uci", "minilm", used)
    teacher = _pot_runs("mr", "yelp_uci")
    plain_pot_key = TransferConfig(train=TINY).key("pot", "mr", "yelp_uci", "minilm", (first["mr"],))
    assert len(teacher) == 1 and teacher[0]["key"] == plain_pot_key and out["kd_weight"] == 0.5


def _cache_state(root: Path) -> dict[str, str]:
    """Every regular file of the cache (not the linked tasks and models) with its hash."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and not any(p.is_symlink() for p in path.parents) \
                and not path.name.endswith("-shm"):
            state[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


BAD_TRANSFERS = [
    (("mr", "yelp_uci", "no-such-method"), "unknown transfer method"),
    (("mr", "no_such_task", "pot"), "unknown task"),
    (("no_such_task", "yelp_uci", "pot"), "unknown task"),
    ((None, "yelp_uci", "pot"), "needs a source"),
    (("", "yelp_uci", "panda"), "needs a source"),
    (("mr", "mr", "panda"), "is the target"),
    (("mr", "mr", "pot"), "is the target"),
    (("tweets,mr", "mr", "multi-source"), "is the target"),
    (("mr,tweets", "yelp_uci", "pot"), "takes one source"),
    (("mr,mr", "yelp_uci", "multi-source"), "listed twice"),
    (("mr,", "yelp_uci", "multi-source"), "empty task name"),
    (("mr", "yelp_uci", "pot"), "panda_core train --task mr"),  # no stored PT prompt in a fresh cache
    (("mr", "yelp_uci", "zero-shot"), "panda_core train --task mr"),
    (("mr", "yelp_uci", "panda"), "panda_core train --task mr"),
]


def test_bad_transfers_are_refused_fast_without_touching_the_cache(private_cache):
    store.list_runs()  # the database exists before the snapshot
    before, runs = _cache_state(private_cache), len(store.list_runs(limit=10000))
    for args, message in BAD_TRANSFERS:
        t0 = time.perf_counter()
        with pytest.raises(PandaError, match=message) as err:
            run_transfer(*args)
        assert time.perf_counter() - t0 < 2.0, args
        assert "\n" not in str(err.value), args
    assert _cache_state(private_cache) == before and len(store.list_runs(limit=10000)) == runs


@pytest.mark.parametrize("knobs, message", [
    ({"lambda_max": -1.0}, "lambda_max"), ({"lambda_max": float("nan")}, "lambda_max"),
    ({"lambda_max": float("inf")}, "lambda_max"), ({"lambda_max": "1"}, "lambda_max"),
    ({"fixed_lambda": -0.1}, "fixed_lambda"), ({"kd_form": "raw"}, "kd_form"), ({"teacher": "pt"}, "teacher"),
    ({"student_init": "zeros"}, "student_init"), ({"metric_inputs": 0}, "metric_inputs"),
    ({"metric_inputs": 2.5}, "metric_inputs"), ({"train": 3}, "TrainConfig"),
])
def test_transfer_config_refuses_bad_knobs(knobs, message):
    with pytest.raises(PandaError, match=message):
        TransferConfig(**knobs)


def test_transfer_config_accepts_enums_and_keeps_strings():
    cfg = TransferConfig(kd_form=KdForm.CODE, teacher=Teacher.SOURCE, fixed_lambda=0, train={"steps": 5})
    assert cfg.kd_form == "code" and cfg.teacher == "source" and cfg.train.steps == 5
    assert cfg.key("pot", "mr", "t", "minilm") == TransferConfig(train=TrainConfig(steps=5)).key("pot", "mr", "t", "minilm")
    assert cfg.key("panda", "mr", "t", "minilm") != TransferConfig(train=TrainConfig(steps=5)).key("panda", "mr", "t", "minilm")


def test_every_registered_method_declares_its_contract():
    assert METHODS.names()[:5] == ["zero-shot", "pt", "pot", "panda", "model-tuning"]
    assert "multi-source" in METHODS
    for m in METHODS:
        assert isinstance(m, TransferMethod) and m.name and m.label and m.help, m
        assert isinstance(m.sources, Sources) and all(isinstance(n, Need) for n in m.needs), m.name
        assert Method(m.name).value == m.name and type(m).run is not TransferMethod.run, m.name
        assert set(m.requires(TransferConfig())) <= set(m.needs), m.name
    assert Need.POT_TEACHER in METHODS.get("panda").needs
    assert Need.POT_TEACHER not in METHODS.get("panda").requires(TransferConfig(teacher="source"))
    assert execution_order(["panda", "pot"]) == ["pot", "panda"]


def test_kd_weight_forms():
    assert kd_weight(TransferConfig(lambda_max=0.5), 0.8) == pytest.approx(0.4)
    assert kd_weight(TransferConfig(lambda_max=0.5), -0.3) == 0.0
    assert kd_weight(TransferConfig(fixed_lambda=0.0), 0.9) == 0.0
    code = TransferConfig(kd_form="code", train=TrainConfig(batch_size=16))
    assert kd_weight(code, 0.8) == pytest.approx(0.1 * 0.8 / 16)


@pytest.mark.parametrize("form", ["scaled", "code"])
@pytest.mark.parametrize("transferability", [-1.0, -0.3, -1e-9, 0.0, 0.4, 1.0, 1.7])
def test_kd_weight_is_never_negative_and_clipped_in_both_forms(form, transferability):
    cfg = TransferConfig(kd_form=form, lambda_max=0.5, train=TrainConfig(batch_size=8))
    top = kd_weight(cfg, 1.0)
    lam = kd_weight(cfg, transferability)
    assert 0.0 <= lam <= top
    if transferability <= 0:
        assert lam == 0.0
    if transferability >= 1:
        assert lam == top


def test_model_tuning_reads_no_source_and_starts_from_pts_fresh_prompt(two_prompts, monkeypatch):
    from panda_core.backbones import get_backbone
    from panda_core.ops import plan_transfer
    from panda_core.prompts import init_prompt, task_seed
    from panda_core.transfer.base import TransferContext

    cfg = TransferConfig(train=TrainConfig(prompt_length=4, steps=1))
    plan = plan_transfer(None, "yelp_uci", "model-tuning", "minilm", cfg)
    assert plan.source_ids == () and Need.SOURCE_PROMPTS not in plan.method.requires(cfg)
    with pytest.raises(PandaError, match="reads no source.*--from-source"):
        plan_transfer("amazon_uci", "yelp_uci", "model-tuning", "minilm", cfg)
    asked = TransferConfig(train=cfg.train, from_source=True)
    assert plan_transfer("amazon_uci", "yelp_uci", "model-tuning", "minilm", asked).source_ids  # reads it when asked
    assert asked.key("model-tuning", "amazon_uci", "yelp_uci", "minilm") != cfg.key("model-tuning", None, "yelp_uci", "minilm")

    seen = []
    monkeypatch.setattr(TransferMethod, "train_target", lambda self, ctx, init, **kw: seen.append(init))
    bb = get_backbone("minilm")
    src = store.load_prompt(two_prompts[1]["prompt_id"])
    fresh = init_prompt(bb.embeddings(), 4, cfg.train.init, seed=task_seed("yelp_uci", cfg.train.seed))
    for sources in ((), (src,)):  # a source handed in by mistake changes nothing
        METHODS.get("model-tuning").run(TransferContext(bb, "yelp_uci", cfg, source_prompts=sources))
    METHODS.get("model-tuning").run(TransferContext(bb, "yelp_uci", asked, source_prompts=(src,)))
    assert torch.equal(seen[0], fresh) and torch.equal(seen[1], fresh) and torch.equal(seen[2], src.tensor)


def test_transfer_keys_of_stored_runs_do_not_change_with_the_new_knob():
    cfg = TransferConfig(train=TrainConfig(steps=5))
    assert "from_source" not in json.dumps(cfg.key("panda", "mr", "t", "minilm"))
    base = {"train": cfg.to_dict()["train"]}
    blob = json.dumps(["pot", "mr", "t", "minilm", base, []], sort_keys=True, default=str)
    assert cfg.key("pot", "mr", "t", "minilm") == hashlib.sha256(blob.encode()).hexdigest()[:20]


def test_doctor_finds_orphans_and_checksum_mismatches(two_prompts, capsys):
    from panda_core import paths
    from panda_core.ops import doctor

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


def test_seeds_repeat_a_transfer_and_aggregate_with_a_t_interval(two_prompts, capsys):
    from scipy import stats

    out = cli(capsys, "transfer", "--source", "amazon_uci", "--target", "yelp_uci", "--method", "pot", *STEPS,
              "--seeds", "2", "--seed", "3")
    assert out["seeds"] == [3, 4] and len(out["runs"]) == 2 and out["ci_over"] == "seeds"
    accs = [r["test_acc"] for r in out["runs"]]
    assert out["runs"][0]["run_id"] != out["runs"][1]["run_id"]
    assert out["test_acc"] == pytest.approx(sum(accs) / 2, abs=1e-4)
    low, high = out["test_acc_ci"]
    if accs[0] != accs[1]:
        ref = stats.t.interval(0.95, 1, loc=sum(accs) / 2, scale=stats.sem(accs))
        assert (low, high) == pytest.approx(ref, abs=1e-4)
    assert low <= out["test_acc"] <= high
    assert {store.get_run(r["run_id"])["config"]["train"]["seed"] for r in out["runs"]} == {3, 4}
    assert main(["transfer", "--source", "amazon_uci", "--target", "yelp_uci", "--method", "pot",
                 "--seeds", "101"]) == 2
