"""`validation.measurement` / `measured_matrix` keep to ONE configuration and
compare on the SAME test items (issue 11, item 7), and indicator validation
carries intervals and the retrieval view (item 5).

Each test builds run rows directly in a private store, so the rules are
checked without training anything. The first two tests fail on the old
`measured_matrix`, which divided a zero-shot accuracy on a test subset by the
PT accuracy on the full split and took the newest run of a pair whatever its
settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from panda_core import store
from panda_core.errors import PandaError
from panda_core.indicators.validation import measured_matrix, measurement, missing_pairs, validate_indicators
from panda_core.prompts import SoftPrompt

A, B, T = "imdb_uci", "yelp_uci", "amazon_uci"  # small offline tasks; T is the target
TASKS = [A, B, T]
EVAL = {"prompt_length": 4, "max_length": 128, "temperature": 20.0, "head": False}


def train_cfg(**kw) -> dict:
    """A training config as a run stores it (flat for `train` runs)."""
    return {"steps": 40, "batch_size": 16, "seed": 0, "dev_limit": 100, "test_limit": None, "train_limit": 256} \
        | EVAL | kw


def save_prompt(task: str, test_acc: float) -> str:
    g = torch.Generator().manual_seed(len(task))
    return store.save_prompt(SoftPrompt(tensor=torch.randn(4, 8, generator=g) * 0.05, backbone="minilm",
                                        task=task, scores={"dev_acc": test_acc, "test_acc": test_acc}))


def pt_train(task: str, items: str | None, acc: float | None = None, **cfg) -> str:
    """A finished PT training run of `task` (its prompt saved too, with the run's accuracy as its score)."""
    acc = acc if acc is not None else items.count("1") / len(items)
    pid = save_prompt(task, acc)
    rid = store.create_run("train", "pt", task, "minilm", train_cfg(**cfg))
    store.update_run(rid, status="done", result={"test_acc": acc, "prompt_id": pid}
                     | ({"test_correct": items} if items is not None else {}))
    return rid


def transfer(method: str, source: str | None, target: str, items: str | None, acc: float | None = None,
             knobs: dict | None = None, **cfg) -> str:
    """A finished transfer run whose stored config is a TransferConfig dict."""
    acc = acc if acc is not None else items.count("1") / len(items)
    config = {"train": train_cfg(**cfg), "lambda_max": 1.0, "kd_form": "scaled"} | (knobs or {})
    rid = store.create_run("transfer", method, target, "minilm", config, source=source)
    store.update_run(rid, status="done", result={"test_acc": acc}
                     | ({"test_correct": items} if items is not None else {}))
    return rid


def test_a_ratio_is_taken_on_the_same_test_items(private_cache):
    """Zero-shot on the first 4 items against PT on the full split: PT's accuracy on
    those 4 items is the denominator, not its accuracy on all 10."""
    pt_train(T, "1111100000")  # 0.5 on the full split, 1.0 on its first 4 items
    transfer("zero-shot", A, T, "1100", test_limit=4)
    transfer("zero-shot", B, T, "1000", test_limit=4)
    M = measured_matrix("minilm", TASKS, "zero-shot")
    assert M[0, 2] == pytest.approx(0.5 / 1.0)  # the old rule gave 0.5 / 0.5 = 1.0
    assert M[1, 2] == pytest.approx(0.25 / 1.0)


def test_runs_of_other_settings_are_never_mixed_in(private_cache):
    pt_train(T, "1111111111")
    older = transfer("zero-shot", A, T, "1111000000", test_limit=10)
    transfer("zero-shot", B, T, "1100000000", test_limit=10)
    newer = transfer("zero-shot", A, T, "10", test_limit=2, temperature=5.0)  # other settings, newest
    M = measured_matrix("minilm", TASKS, "zero-shot")
    assert np.isnan(M[1, 2])  # B ran only with the older settings: never mixed into the newest configuration
    found = measurement("minilm", TASKS, "zero-shot")
    # the newest run fixes the configuration: only (A, T) ran with it; B's run of other settings stays out
    assert found.config["temperature"] == 5.0 and found.config["test_limit"] == 2
    assert found.runs == {(A, T): newer} and np.isnan(found.matrix[1, 2])
    # asking for the other configuration explicitly gives both of its runs and never the newer one
    M = measured_matrix("minilm", TASKS, "zero-shot", config={"temperature": 20.0, "test_limit": 10})
    assert M[0, 2] == pytest.approx(0.4) and M[1, 2] == pytest.approx(0.2)
    assert measurement("minilm", TASKS, "zero-shot", config={"test_limit": 10}).runs[(A, T)] == older
    # a PT reference scored with another temperature is not a reference for the temperature-5 runs
    assert found.missing_references() == [T]


def test_runs_and_references_of_another_prompt_type_are_never_used(private_cache):
    """Deep-prompt runs (stored with prompt_type "deep") make their own measurement;
    input-prompt runs store no prompt type and make the default one."""
    pt_train(T, "1111111111")
    pt_train(T, "1100000000", prompt_type="deep")
    transfer("pot", A, T, "1111100000")
    transfer("pot", B, T, "1111111111", prompt_type="deep")
    M = measured_matrix("minilm", TASKS, "pot-gain")
    assert M[0, 2] == pytest.approx(0.5 - 1.0) and np.isnan(M[1, 2])
    D = measured_matrix("minilm", TASKS, "pot-gain", prompt_type="deep")
    assert D[1, 2] == pytest.approx(1.0 - 0.2) and np.isnan(D[0, 2])
    assert missing_pairs("minilm", TASKS, "pot-gain", prompt_type="deep") == [
        (s, t) for s in TASKS for t in TASKS if s != t and (s, t) != (B, T)]


def test_a_measured_value_has_a_paired_interval_on_its_common_items(private_cache):
    from panda_core.indicators.validation import pair_interval

    pt_train(T, "1111111111" * 20)
    transfer("pot", A, T, "1111111110" * 20)  # -0.1
    found = measurement("minilm", TASKS, "pot-gain")
    low, high = pair_interval(found, A, T)
    assert low <= -0.1 <= high < 0  # every discordant item favours PT: clearly worse
    assert pair_interval(found, B, T) is None  # no run


def test_measure_plan_submits_the_prompt_type_it_measures(private_cache):
    from panda_core.ops import measure_plan

    plan = measure_plan("minilm", TASKS, "pot-gain", 4, {"steps": 40}, prompt_type="deep")
    assert plan.config["train"]["prompt_type"] == "deep" and not plan.measured
    assert "prompt_type" not in measure_plan("minilm", TASKS, "pot-gain", 4, {"steps": 40}).config["train"]


def test_without_stored_items_only_an_equal_test_limit_is_comparable(private_cache):
    pt_train(T, None, acc=0.8, test_limit=None)
    transfer("zero-shot", A, T, None, acc=0.4, test_limit=200)
    assert np.isnan(measured_matrix("minilm", TASKS, "zero-shot")[0, 2])  # subset vs full: refused
    pt_train(T, None, acc=0.5, test_limit=200)
    assert measured_matrix("minilm", TASKS, "zero-shot")[0, 2] == pytest.approx(0.4 / 0.5)


def test_the_zero_shot_diagonal_is_the_preferred_reference(private_cache):
    pt_train(T, "1111111111", head=True)  # scored through a head: not how zero-shot scores
    pt_train(T, "1111111111")  # a matching PT run, but the diagonal below scores exactly as zero-shot does
    transfer("zero-shot", T, T, "1110000000", test_limit=10)  # the target's own prompt, zero-shot
    transfer("zero-shot", A, T, "1100000000", test_limit=10)
    found = measurement("minilm", TASKS, "zero-shot")
    assert found.matrix[0, 2] == pytest.approx(0.2 / 0.3) and found.matrix[2, 2] == pytest.approx(1.0)


def test_a_gain_needs_a_pt_reference_of_the_same_budget(private_cache):
    pt_train(T, "1111100000", steps=300)  # the task's PT prompt: another budget
    transfer("pot", A, T, "1111111000")
    gain = measurement("minilm", TASKS, "pot-gain")
    assert np.isnan(gain.matrix[0, 2]) and gain.missing_references() == [T]
    assert missing_pairs("minilm", TASKS, "pot-gain") == [(A, B), (B, A), (B, T), (T, A), (T, B)]
    transfer("pt", None, T, "1111110000")  # PT from scratch with PoT's settings
    transfer("pt", None, T, "1111111111", seed=1)  # another seed: another configuration
    assert measured_matrix("minilm", TASKS, "pot-gain")[0, 2] == pytest.approx(0.7 - 0.6)


def test_differences_use_the_common_prefix_of_items_and_one_set_of_knobs(private_cache):
    transfer("pt", None, T, "11110000", test_limit=8)  # the reference scored the first 8 items only
    transfer("panda", B, T, "0000000011", test_limit=None, knobs={"lambda_max": 0.5})  # other knobs
    transfer("panda", A, T, "1111111111", test_limit=None)
    transfer("panda", B, T, "0000000011", test_limit=None)
    found = measurement("minilm", TASKS, "panda-gain")
    assert found.config["lambda_max"] == 1.0 and found.config["test_limit"] is None
    assert found.matrix[0, 2] == pytest.approx(1.0 - 0.5)  # on the 8 shared items, not 1.0 - 0.5 by chance
    assert found.matrix[1, 2] == pytest.approx(0.0 - 0.5)  # all 10 items would give 0.2 - 0.5
    half = measured_matrix("minilm", TASKS, "panda-gain", config={"lambda_max": 0.5})
    assert np.isnan(half[0, 2]) and half[1, 2] == pytest.approx(-0.5)


def test_validation_reports_intervals_retrieval_and_its_configuration(private_cache):
    # three tasks with prompts; zero-shot of every ordered pair and of each task on itself
    for task in TASKS:
        save_prompt(task, 0.8)
    items = {(A, B): "1100000000", (T, B): "1111100000", (B, A): "1110000000", (T, A): "1000000000",
             (A, T): "1111110000", (B, T): "1100000000"}
    for t in TASKS:
        transfer("zero-shot", t, t, "1111111100", test_limit=10)
    for (s, t), bits in items.items():
        transfer("zero-shot", s, t, bits, test_limit=10)
    out = validate_indicators("minilm", TASKS, "zero-shot", ["spot", "c_avg"], prompt_length=4)
    assert out["config"]["test_limit"] == 10 and out["missing_references"] == []
    res = out["indicators"]["spot"]
    for name in ("spearman", "kendall"):
        low, high = res[f"{name}_pooled_ci"]
        assert math.isnan(res[f"{name}_pooled"]) or low <= res[f"{name}_pooled"] <= high
        assert f"{name}_pooled_p" in res and len(res[f"{name}_mean_ci"]) == 2
    assert 0.0 <= res["ndcg_at_3"] <= 1.0 and len(res["ndcg_at_3_per_target"]) == 3
    assert res["top_beats_median_rate"] in (0.0, 1 / 3, 2 / 3, 1.0)
    i = {t: out["tasks"].index(t) for t in TASKS}
    assert out["measured"][i[A]][i[T]] == pytest.approx(0.6 / 0.8)


def test_validation_says_when_runs_lack_a_reference(private_cache):
    for task in TASKS:
        save_prompt(task, 0.8)
    transfer("zero-shot", A, T, None, acc=0.4, test_limit=200)
    with pytest.raises(PandaError, match="no reference on the same test items for amazon_uci"):
        validate_indicators("minilm", TASKS, "zero-shot", ["spot"], prompt_length=4)
