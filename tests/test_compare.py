"""`ops.compare` and `ops.measure_plan`: what the Transfer and Metric
validation pages show about uncertainty, and the runs that complete a
measurement in one configuration.

Run rows are written directly into a private store, so every rule is checked
without training anything."""

from __future__ import annotations

import math

import pytest

from panda_core import ops, store
from panda_core.ops.compare import BETTER, WITHIN_NOISE, WORSE
from panda_core.ops.measuring import submit_config

A, B, T = "imdb_uci", "yelp_uci", "amazon_uci"
TASKS = [A, B, T]
SMALL = {"steps": 40, "eval_every": 10, "dev_limit": 100, "test_limit": None, "prompt_length": 4}


def run(method: str, source: str | None, target: str, items: str | None = None, acc: float | None = None,
        kind: str = "transfer", result: dict | None = None, **settings) -> dict:
    """A finished run stored as a direct run stores it (a full TransferConfig dict, flat for training)."""
    config = submit_config(SMALL | settings)
    if kind == "train":
        config = config["train"]
    acc = acc if acc is not None else items.count("1") / len(items)
    res = {"test_acc": acc} | ({"test_correct": items} if items is not None else {}) | (result or {})
    rid = store.create_run(kind, method, target, "minilm", config, source=source)
    store.update_run(rid, status="done", result=res, prompt_id=res.get("prompt_id"))
    return store.get_run(rid)


# ----------------------------------------------------------------- verdicts
@pytest.mark.parametrize("low,high,expected", [
    (-0.1, 0.2, WITHIN_NOISE), (0.0, 0.3, WITHIN_NOISE), (-0.3, 0.0, WITHIN_NOISE), (0.0, 0.0, WITHIN_NOISE),
    (0.01, 0.2, BETTER), (-0.2, -0.01, WORSE), (None, 0.2, None), (float("nan"), float("nan"), None),
])
def test_an_interval_covering_zero_is_within_noise(low, high, expected):
    assert ops.verdict(low, high) == expected


# --------------------------------------------------------------- accuracies
def test_accuracy_carries_the_stored_interval_else_one_from_known_items():
    stored = ops.accuracy_of({"test_acc": 0.742, "test_acc_ci": [0.712, 0.770], "n_test": 800,
                              "majority_test_acc": 0.5})
    assert stored == {"acc": 0.742, "low": 0.712, "high": 0.770, "n": 800, "majority": 0.5}
    from panda_core.stats import wilson_interval

    items = ops.accuracy_of({"test_acc": 0.7, "test_correct": "1110111010"})
    assert (items["low"], items["high"]) == pytest.approx(wilson_interval(7, 10)) and items["n"] == 10
    counted = ops.accuracy_of({"test_acc": 0.25, "n_test": 200})
    assert (counted["low"], counted["high"]) == pytest.approx(wilson_interval(50, 200))
    # an old run: the number of items is unknown, so no interval is made up (not even from a test limit)
    old = ops.accuracy_of({"test_acc": 0.6})
    assert old["acc"] == 0.6 and old["low"] is None and old["high"] is None and old["n"] is None
    assert ops.accuracy_of(None)["acc"] is None


def test_dev_interval_counts_the_dev_items_scored():
    from panda_core.stats import wilson_interval

    r = {"result": {"dev_acc": 0.8}, "config": {"train": {"dev_limit": 50}}}
    dev = ops.dev_accuracy_of(r, dev_size=300)
    assert dev["n"] == 50 and (dev["low"], dev["high"]) == pytest.approx(wilson_interval(40, 50))
    assert ops.dev_accuracy_of(r, dev_size=20)["n"] == 20  # a dev split smaller than the limit
    assert ops.dev_accuracy_of(r, dev_size=None)["low"] is None
    assert ops.dev_accuracy_of({"result": {"test_acc": 0.5}}, 300)["acc"] is None  # zero-shot trains nothing


# ------------------------------------------------------- paired comparisons
def test_runs_are_compared_on_the_items_both_scored(private_cache):
    a = run("pot", A, T, "1111100000")
    b = run("pt", None, T, "11110000", test_limit=8)
    c = ops.compare_runs(a, b)
    assert c["paired"] and c["n"] == 8
    assert c["a_acc"]["acc"] == pytest.approx(5 / 8) and c["b_acc"]["acc"] == pytest.approx(4 / 8)
    assert c["diff"] == pytest.approx(1 / 8)  # not 0.5 - 0.5 over different items
    assert c["p_value"] == 1.0 and c["verdict"] == WITHIN_NOISE  # one discordant item
    assert c["a_acc"]["low"] < c["a_acc"]["acc"] < c["a_acc"]["high"]


def test_clear_differences_are_better_or_worse(private_cache):
    good, bad = run("panda", A, T, "1" * 150 + "0" * 50), run("pot", A, T, "0" * 150 + "1" * 50)
    up = ops.compare_runs(good, bad)
    assert up["verdict"] == BETTER and up["low"] > 0 and up["p_value"] < 1e-6
    assert ops.compare_runs(bad, good)["verdict"] == WORSE


def test_runs_without_items_are_not_paired(private_cache):
    a, b = run("pot", A, T, acc=0.7, test_limit=100), run("pt", None, T, acc=0.6, test_limit=100)
    c = ops.compare_runs(a, b)
    assert not c["paired"] and c["diff"] == pytest.approx(0.1) and c["verdict"] is None and c["low"] is None
    other = run("pt", None, T, acc=0.6, test_limit=200)
    assert ops.compare_runs(a, other)["diff"] is None  # different items: not even an unpaired difference


def test_a_batch_is_compared_against_pt_and_panda_against_pot(private_cache):
    pt = run("pt", None, T, "1100110011")
    pot, panda = run("pot", A, T, "1111110011"), run("panda", A, T, "1111110111")
    zs = run("zero-shot", B, T, "1000000000")
    rows = ops.comparisons([pt, pot, panda, zs])
    pairs = {(r["a_run"], r["b_run"]) for r in rows}
    assert pairs == {(pot["id"], pt["id"]), (panda["id"], pt["id"]), (zs["id"], pt["id"]), (panda["id"], pot["id"])}
    by = {(r["a_run"], r["b_run"]): r for r in rows}
    assert by[(panda["id"], pot["id"])]["a"] == f"PANDA from {A}" and by[(panda["id"], pot["id"])]["b"] == \
        f"Vanilla PoT from {A}"
    assert by[(panda["id"], pot["id"])]["diff"] == pytest.approx(0.1)


def test_without_a_pt_run_the_stored_prompts_training_run_is_the_reference(private_cache):
    trained = run("pt", None, T, "1100000000", kind="train", result={"prompt_id": "pt-prompt-1"})
    assert ops.reference_run_of_prompt("pt-prompt-1")["id"] == trained["id"]
    assert ops.reference_run_of_prompt("imported-prompt") is None
    pot = run("pot", A, T, "1111111111")
    rows = ops.comparisons([pot], reference=trained)
    assert len(rows) == 1 and rows[0]["b"] == "PT (from scratch) (stored prompt)"
    assert rows[0]["diff"] == pytest.approx(0.8) and rows[0]["verdict"] == BETTER
    assert ops.comparisons([pot], reference=run("pt", None, B, "1", kind="train")) == []  # another target's


def test_a_stored_prompts_accuracies_carry_intervals_from_its_run_else_its_item_count(private_cache):
    made = run("pt", None, T, "1" * 80 + "0" * 20, kind="train", result={"prompt_id": "p-run", "dev_acc": 0.9})
    rows = [
        {"id": "p-run", "task": T, "scores": {"test_acc": 0.8, "dev_acc": 0.9, "init_test_acc": 0.5}},
        {"id": "p-zoo", "task": T, "scores": {"test_acc": 0.7, "dev_acc": 0.75, "init_test_acc": 0.4, "n_test": 200}},
        {"id": "p-imported", "task": T, "scores": {"test_acc": 0.6}},
    ]
    by_run, by_count, bare = ops.prompt_accuracies(rows, {T: 50})
    assert by_run["test"] == ops.accuracy_of(made["result"]) and by_run["test"]["n"] == 100
    assert by_run["dev"]["n"] == 50  # dev_limit 100 of a 50-item dev split
    assert by_run["untrained"]["n"] == 100 and by_run["untrained"]["low"] < 0.5 < by_run["untrained"]["high"]
    assert by_count["test"]["n"] == 200 and by_count["test"]["low"] < 0.7 < by_count["test"]["high"]
    assert by_count["dev"]["low"] is None  # no run: the dev items are unknown
    assert bare["test"]["acc"] == 0.6 and bare["test"]["low"] is None  # never guessed


def test_prompts_list_json_carries_each_prompts_accuracies(private_cache, capsys):
    import json

    import torch

    from panda_core.cli import main
    from panda_core.prompts import SoftPrompt

    pid = store.save_prompt(SoftPrompt(tensor=torch.zeros(4, 384), backbone="minilm", task=T,
                                       scores={"test_acc": 0.7, "n_test": 100, "init_test_acc": 0.5}))
    assert main(["prompts", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == pid and row["accuracy"]["test"]["n"] == 100
    assert row["accuracy"]["test"]["low"] < 0.7 < row["accuracy"]["test"]["high"]


# ------------------------------------------------------ indicator validation
def test_indicator_summary_marks_correlations_within_noise():
    out = {"indicators": {
        "spot": {"spearman_pooled": 0.1, "spearman_pooled_ci": [-0.4, 0.6], "spearman_pooled_p": 0.7,
                 "kendall_pooled": 0.05, "kendall_pooled_ci": [-0.3, 0.4], "spearman_mean": 0.2,
                 "spearman_mean_ci": [-0.5, 0.8], "kendall_mean": 0.1, "kendall_mean_ci": [float("nan")] * 2,
                 "ndcg_at_3": 0.8, "top_beats_median_per_target": [True, None, False], "n_pairs": 6},
        "panda": {"spearman_pooled": 0.8, "spearman_pooled_ci": [0.5, 0.95], "spearman_pooled_p": 0.001,
                  "kendall_pooled": 0.6, "kendall_pooled_ci": [0.3, 0.8], "spearman_mean": 0.7,
                  "spearman_mean_ci": [0.4, 0.9], "kendall_mean": 0.5, "kendall_mean_ci": [0.2, 0.7],
                  "ndcg_at_3": float("nan"), "top_beats_median_per_target": [True, True], "n_pairs": 6},
        "on": {"spearman_pooled": float("nan"), "spearman_pooled_ci": [float("nan")] * 2,
               "spearman_mean": float("nan"), "spearman_mean_ci": [float("nan")] * 2,
               "top_beats_median_per_target": [], "n_pairs": 2},
    }}
    rows = ops.indicator_summary(out)
    assert [r["indicator"] for r in rows] == ["panda", "spot", "on"]  # by mean Spearman, undefined last
    panda, spot, on = rows
    assert panda["verdict"] == BETTER and spot["verdict"] == WITHIN_NOISE and on["verdict"] is None
    assert spot["spearman_mean"] == {"value": 0.2, "low": -0.5, "high": 0.8, "p_value": None,
                                     "verdict": WITHIN_NOISE}
    assert spot["kendall_mean"]["verdict"] is None and spot["top_beats_median"] == [1, 2]
    assert panda["ndcg_at_3"] is None and spot["ndcg_at_3"] == 0.8 and on["top_beats_median"] == [0, 0]


# -------------------------------------------------------- measurement plans
def test_nothing_measured_yet_plans_every_pair_and_each_targets_reference(private_cache):
    plan = ops.measure_plan("minilm", TASKS, "pot-gain", 4, {"steps": 12, "test_limit": 50})
    assert not plan.measured and plan.values == 0
    assert plan.config["train"]["steps"] == 12 and plan.config["train"]["prompt_length"] == 4
    assert len(plan.pairs) == 6 and {p["method"] for p in plan.pairs} == {"pot"}
    assert plan.references == [{"source": None, "target": t, "method": "pt"} for t in TASKS]
    jobs = plan.jobs(1)  # the first pair (A -> B) and the PT reference of its target only
    assert jobs == [{"source": None, "target": B, "method": "pt"}, {"source": A, "target": B, "method": "pot"}]


def test_new_runs_join_the_measured_configuration_and_its_missing_references(private_cache):
    run("pot", A, T, "1111111000", steps=33, seed=2)
    plan = ops.measure_plan("minilm", TASKS, "pot-gain", 4, {"steps": 500})
    assert plan.measured and plan.values == 0 and plan.waiting == [T]
    assert plan.config["train"]["steps"] == 33 and plan.config["train"]["seed"] == 2  # not the given 500
    assert (A, T) not in {(p["source"], p["target"]) for p in plan.pairs} and len(plan.pairs) == 5
    assert plan.jobs(0) == [{"source": None, "target": T, "method": "pt"}]  # the waiting run's reference
    run("pt", None, T, "1111100000", steps=33, seed=2, test_limit=5)  # same settings, other test limit: fine
    plan = ops.measure_plan("minilm", TASKS, "pot-gain", 4)
    assert plan.values == 1 and plan.waiting == [] and T not in {r["target"] for r in plan.references}
    run("pt", None, A, "1111100000", steps=34, seed=2)  # another budget is no reference for A
    assert A in {r["target"] for r in ops.measure_plan("minilm", TASKS, "pot-gain", 4).references}


def test_the_plan_keeps_to_the_prompt_length(private_cache):
    run("pot", A, T, "1111111000")  # 4-token prompts
    assert not ops.measure_plan("minilm", TASKS, "pot-gain", 20).measured
    assert ops.measure_plan("minilm", TASKS, "pot-gain", 4).measured


def test_zero_shot_references_are_the_targets_own_prompt(private_cache):
    run("pt", None, B, "1111100000", kind="train")  # B's PT training run scores as zero-shot does
    run("zero-shot", A, T, "1100000000", test_limit=10)
    plan = ops.measure_plan("minilm", TASKS, "zero-shot", 4)
    refs = {r["target"]: r for r in plan.references}
    assert refs[T] == {"source": T, "target": T, "method": "zero-shot"} and B not in refs


def test_a_run_started_as_a_job_is_measured_like_a_direct_one(private_cache):
    """A queued job's row held only the job's parameters, so validation (which reads
    a run's settings) never found runs launched from the app once it kept to a prompt length."""
    from panda_core.ops.lifecycle import recorded
    from panda_core.training import TrainConfig
    from panda_core.transfer import TransferConfig

    cfg = TransferConfig(train=TrainConfig(**SMALL))
    ids = {}
    for method, source in (("pot", A), ("pt", None)):
        params = {"source": source, "target": T, "method": method, "backbone": "minilm",
                  "config": {"train": dict(SMALL)}}
        ids[method] = ops.submit("transfer", params, launch=False)
        items = "1111111000" if method == "pot" else "1111100000"
        with recorded("transfer", method, T, "minilm", cfg.to_dict(), source=source, run_id=ids[method]) as handle:
            handle.done({"test_acc": items.count("1") / 10, "test_correct": items})
    row = store.get_run(ids["pot"])
    assert row["config"]["train"]["prompt_length"] == 4 and row["config"]["job"]["method"] == "pot"  # retry keeps
    from panda_core.indicators.validation import measurement

    found = measurement("minilm", TASKS, "pot-gain", prompt_length=4)
    assert found.runs == {(A, T): ids["pot"]} and found.references == {(A, T): ids["pt"]}
    assert found.matrix[0, 2] == pytest.approx(0.2) and not math.isnan(found.matrix[0, 2])
