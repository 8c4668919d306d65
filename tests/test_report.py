"""The study's markdown is rendered from its JSON alone (no computation)."""

from __future__ import annotations

import json

import pytest

from devtools.report import StudyConfig, render_markdown, rerender
from panda_core.errors import PandaError
from panda_core.indicators import INDICATORS
from panda_core.paths import REPO_ROOT


def _data() -> dict:
    rows = [
        {"source": "mr", "target": "yelp_uci", "source_family": "sentiment", "target_family": "sentiment",
         "pt": 0.70, "pot": 0.80, "panda": 0.82, "kd_weight": 0.9, "model_tuning": 0.75},
        {"source": "bbc", "target": "yelp_uci", "source_family": "topic", "target_family": "sentiment",
         "pt": 0.70, "pot": 0.66, "panda": 0.66, "kd_weight": 0.2, "model_tuning": 0.75},
    ]
    return {"config": StudyConfig().to_dict(), "tasks": ["mr", "yelp_uci", "bbc"], "seconds": 60,
            "test_sizes": {"yelp_uci": 199, "mr": 1000, "bbc": 424}, "transfers": rows}


def test_transfer_section_splits_gains_by_source_family_and_states_the_noise():
    md = render_markdown(_data())
    assert "| same family as the target | 1 | 0.100 | 0.120 |" in md
    assert "| other families | 1 | -0.040 | -0.040 |" in md
    assert "PANDA beats PoT on 1 of 2 pairs (1 ties)" in md
    assert "test set of 199 examples" in md and "0.035" in md  # sqrt(0.25 / 199)


def test_the_methods_compared_come_from_the_registry_with_their_labels():
    d = _data()
    assert list(d["config"]["methods"]) == ["pot", "panda"]  # the registered one-source methods that train a prompt
    md = render_markdown(d)
    assert "## PT vs vanilla PoT vs PANDA vs model tuning" in md
    assert "| source | target | PT | PoT | PANDA | PANDA - PoT | lambda | model tuning |" in md
    d["config"]["methods"] = ["pot", "multi-source"]  # any registered method renders, under its label
    for r in d["transfers"]:
        r["multi-source"] = r.pop("panda")
    md = render_markdown(d)
    assert "| source | target | PT | PoT | multi-source PoT | model tuning |" in md
    assert "multi-source PoT - PT (mean)" in md
    assert "lambda" not in md.split("## PT vs")[1].split("Averages")[0]  # no PANDA: no teacher columns


def test_an_unknown_study_method_is_refused():
    with pytest.raises(PandaError, match="unknown transfer method 'nope'"):
        StudyConfig(methods=("pot", "nope"))


def test_every_indicator_in_the_results_is_listed_under_its_registry_label():
    d = _data() | {"indicators": {name: {"zero_shot": {"spearman_mean": 0.5, "spearman_pooled": 0.4,
                                                       "kendall_mean": 0.3}} for name in INDICATORS.names()}}
    md = render_markdown(d)
    section = md.split("## Which indicator predicts transfer?")[1]
    for label in INDICATORS.labels().values():
        assert f"| {label} | 0.500 | 0.400 | 0.300 | – | – |" in section
    assert "| PoT gain: Spearman | PANDA gain: Spearman |" in section


def test_the_committed_page_is_the_rendering_of_the_committed_results():
    data = json.loads((REPO_ROOT / "docs" / "results" / "results.json").read_text())
    assert render_markdown(data) == (REPO_ROOT / "docs" / "results.md").read_text()


def test_rerender_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(PandaError, match="run `python -m panda_core report` first"):
        rerender(tmp_path)


@pytest.mark.slow
def test_a_tiny_study_runs_every_stage_and_writes_its_outputs(private_cache, tmp_path, monkeypatch):
    from devtools import report
    from panda_core.training import TrainConfig

    monkeypatch.setattr(report, "REPO_ROOT", tmp_path)  # docs/results.md goes to the test's folder
    tiny = dict(steps=2, eval_every=2, dev_limit=16, test_limit=16, prompt_length=4, batch_size=4)
    cfg = StudyConfig(
        tasks=("yelp_uci", "amazon_uci", "presuppositions"), pt=TrainConfig(**tiny), zero_shot_test_limit=16,
        transfer_tasks=("yelp_uci", "amazon_uci", "presuppositions"), targets=("yelp_uci", "presuppositions"),
        transfer=TrainConfig(**tiny | {"train_limit": 16}), projector_pairs=(("minilm", "smollm2"),),
        projector_train_task="yelp_uci", projector_eval_tasks=("yelp_uci", "presuppositions"),
        projector_steps=2, projector_test_limit=8, n_inputs=4)
    out = report.run_study(cfg, log=lambda _: None, out_dir=tmp_path / "results")
    md = (tmp_path / "docs" / "results.md").read_text()
    for section in ("Prompt tuning per task", "Zero-shot cross-task transfer", "PT vs vanilla PoT vs PANDA",
                    "Gain over PT by the source's family", "Which indicator predicts transfer",
                    "Cross-model transfer through a projector"):
        assert section in md
    data = json.loads((tmp_path / "results" / "results.json").read_text())
    assert len(data["transfers"]) == 4 and {r["target"] for r in data["transfers"]} == {"yelp_uci", "presuppositions"}
    assert len(data["zero_shot"]["acc"]) == 3 and len(data["indicators"]) == len(INDICATORS)
    assert all(label in md for label in INDICATORS.labels().values())  # a new indicator needs no report edit
    assert {r["method"] for r in data["projectors"]} == {"task"}  # no smollm2 PT prompt: distance is skipped
    assert any(p.endswith("transfers.csv") for p in out["outputs"])
