"""The report: its page is rendered from the JSON alone, the verdict follows
the numbers, and a tiny study runs end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from devtools.report import Design, StudyConfig, render_markdown, rerender, restate
from devtools.study.analysis import record_id, summarize
from devtools.study.config import AA, MAJORITY, PANDA, POT, PT, RANDOM, UNTRAINED
from devtools.study.context import SCHEMA
from devtools.study.page_study import verdict
from panda_core.errors import PandaError
from panda_core.indicators import INDICATORS
from panda_core.paths import REPO_ROOT
from panda_core.stats import encode_items

TARGETS = {"mr": ("yelp_uci", "bbc", "vitaminc"), "tweets": ("mr", "vitaminc", "r8"),
           "r8": ("bbc", "mr", "spam_assassin")}
FAMILIES = {"mr": "sentiment", "tweets": "sentiment", "yelp_uci": "sentiment", "bbc": "topic", "r8": "topic",
            "vitaminc": "nli", "spam_assassin": "spam"}


def synthetic_study(effect: str, seeds: int = 2, n: int = 300, seed: int = 0) -> dict:
    """Runs and items of a study where PANDA is clearly "better", "worse" or the "same"
    as PoT (PANDA flips PoT's items one way, the other, or symmetrically), with
    PT, baselines and an A/A replicate of PoT, summarised by `analysis.summarize`."""
    rng = np.random.default_rng(seed)
    runs, items = [], {}

    def add(arm: str, t: str, s: str | None, k: int, x: np.ndarray, **extra) -> None:
        runs.append({"arm": arm, "target": t, "source": s, "seed": k, "test_acc": float(x.mean()),
                     "seconds": 30.0} | extra)
        items[record_id(arm, t, s, k)] = encode_items(x)

    for t, srcs in TARGETS.items():
        for k in range(seeds):
            add(PT, t, None, k, rng.random(n) < 0.65)
            add(MAJORITY, t, None, k, np.arange(n) < n // 2)
            add(UNTRAINED, t, None, k, rng.random(n) < 0.55)
            add(RANDOM, t, None, k, rng.random(n) < 0.5)
            for s in srcs:
                pot = rng.random(n) < 0.7
                flip = rng.random(n)
                panda = {"better": pot | (flip < 0.3), "worse": pot & (flip > 0.3),
                         "same": flip < 0.7}[effect]
                add(POT, t, s, k, pot)
                add(PANDA, t, s, k, panda, kd_weight=0.4, transferability=0.4)
                add(AA, t, s, k, rng.random(n) < 0.7)
    stats = summarize(runs, items, TARGETS, {t: s[1] for t, s in TARGETS.items()})
    config = StudyConfig(design=Design(sources=dict(TARGETS), subset={"mr": ("yelp_uci", "bbc")})).to_dict()
    return {"schema": SCHEMA, "config": config, "tasks": sorted(FAMILIES), "families": FAMILIES, "seconds": 60,
            "test_sizes": {t: 1000 for t in FAMILIES},
            "panda_vs_pot": {"seeds": list(range(seeds)), "runs": runs, "stats": stats,
                             "deep": {"requested": True, "ran": False, "skipped_because": "no deep prompts here"}}}


@pytest.mark.parametrize(("effect", "words"), [
    ("better", "**Verdict: PANDA beat vanilla PoT.**"),
    ("worse", "**Verdict: PANDA lost to vanilla PoT.**"),
    ("same", "**Verdict: PANDA and vanilla PoT are within noise of each other.**"),
])
def test_the_verdict_follows_the_numbers(effect, words):
    d = synthetic_study(effect)
    o = d["panda_vs_pot"]["stats"]["comparisons"]["panda_vs_pot"]["overall"]
    assert o["n_cells"] == 9 and o["n_runs"] == 18
    if effect == "better":
        assert o["low"] > 0 and o["p_value"] < 0.05
    elif effect == "worse":
        assert o["high"] < 0 and o["p_value"] < 0.05
    else:
        assert o["low"] <= 0 <= o["high"]
    md = render_markdown(d)
    top = md.split("## How the study is sized")[0]  # the verdict comes before everything else
    assert words in top and f"[{o['low']:+.3f}, {o['high']:+.3f}]" in top
    assert "A/A control" in top and "covers 0, as it must" in top


def test_a_failed_aa_control_is_a_warning_and_too_few_cells_cannot_decide():
    d = synthetic_study("better")
    stats = d["panda_vs_pot"]["stats"]
    stats["comparisons"]["aa"]["overall"] |= {"low": 0.01, "high": 0.05}
    assert "**Warning: the A/A control" in verdict(stats)[0]
    stats["comparisons"]["panda_vs_pot"]["overall"] |= {"p_value": 0.25, "n_cells": 2, "min_p": 0.5}
    assert "**Verdict: not decided.**" in verdict(stats)[0]
    assert "no paired runs" in verdict(None)[0]


def test_a_test_that_rejects_inside_a_covering_interval_is_not_decided_and_says_which_way():
    """The two criteria can disagree (the study's interim: -0.012 [-0.029, +0.000], p 0.02):
    the page must say so, not call it plainly within noise, and must say PANDA did not win."""
    d = synthetic_study("same")
    stats = d["panda_vs_pot"]["stats"]
    stats["comparisons"]["panda_vs_pot"]["overall"] |= {"diff": -0.012, "low": -0.029, "high": 0.0002,
                                                        "p_value": 0.023}
    text = verdict(stats)[0]
    assert "**Verdict: not decided; PANDA leans below vanilla PoT.**" in text
    assert "**On our data, PANDA did not beat vanilla PoT.**" in text
    assert "did not beat" not in verdict(synthetic_study("better")["panda_vs_pot"]["stats"])[0]


def test_a_target_with_one_cell_gets_the_mcnemar_p_of_its_items():
    """Model tuning - PT has one cell per target (no source): a sign-flip over one
    cell can only give p = 1, so the target's p is its cell's exact McNemar p."""
    comps = synthetic_study("better")["panda_vs_pot"]["stats"]["comparisons"]
    one = comps["pt_vs_random"]
    for row in one["per_target"]:
        cell = next(c for c in one["cells"] if c["target"] == row["target"])
        assert row["test"] == "mcnemar" and row["p_value"] == cell["p_value"] < 0.05
    assert all("test" not in row and row["min_p"] == 0.25 for row in comps["panda_vs_pot"]["per_target"])


def test_the_study_section_shows_baselines_intervals_and_every_comparison():
    md = render_markdown(synthetic_study("same"))
    section = md.split("## PANDA vs vanilla PoT")[1]
    assert ("| target | majority class | untrained prompt | random prompt | PT | PoT | PANDA | PoT (A/A replicate) |"
            in section)
    assert "| mr | 0.500 [" in section  # the majority class, with its interval
    for question in ("PANDA - PoT (primary)", "PoT - PT (is transfer positive?)", "A/A: PoT - PoT (independent seeds)",
                     "PANDA - PoT on the negative-transfer sources", "PT - random prompt"):
        assert f"| {question} |" in section
    assert "| mr | bbc (topic) |" in section and "lambda (mean)" in section
    assert "The deep-prompt arm was skipped: no deep prompts here." in section
    assert "same family" in section  # why each source was chosen


def _other_sections() -> dict:
    acc = {"acc": 0.6, "low": 0.55, "high": 0.65, "n": 300}
    diff = {"diff": 0.1, "low": 0.05, "high": 0.15, "p_value": 0.001, "n": 300}
    none = {"diff": 0.0, "low": -0.05, "high": 0.05, "p_value": 1.0, "n": 300}
    corr = {"rho": 0.5, "low": 0.2, "high": 0.7, "p_value": 0.01, "n": 6}
    ind = {"spearman_ci": corr, "kendall_ci": corr, "spearman_mean": 0.4, "spearman_mean_ci": [0.1, 0.6],
           "ndcg_at_3": 0.8, "top_beats_median_rate": 0.75, "n_pairs": 6}
    return {
        "pt": [{"task": "mr", "family": "sentiment", "n_test": 1000, "majority": acc, "untrained": acc,
                "random_prompt": acc, "dev_acc": 0.8, "test_acc": 0.77, "test_acc_ci": [0.74, 0.8],
                "pt_vs_random": diff, "pt_vs_majority": diff, "seconds": 100.0}],
        "nli": {"config": {"train_limit": 256, "steps": 40, "seed": 0, "test_limit": None},
                "rows": [{"task": "vitaminc", "n_test": 1000, "majority": acc, "untrained": acc, "random_prompt": acc,
                          "pt": acc, "model_tuning": acc, "pt_vs_majority": none, "mt_vs_majority": none,
                          "pt_vs_mt": none}]},
        "zero_shot": {"relative": [[1.0, 0.9], [0.8, 1.0]],
                      "within_family_mean": {"mean": 0.9, "low": 0.8, "high": 1.0, "n": 2}, "cross_family_mean": None,
                      "targets": [{"target": t, "own": {"acc": 0.8, "ci": [0.7, 0.9]}, "random_prompt": acc,
                                   "random_relative": 0.75, "sources_mean_relative": 0.85,
                                   "sources_above_random": [1, 1]} for t in ("mr", "yelp_uci")]},
        "indicator_measures": {"zero-shot": "zero-shot transfer"},
        "indicators": {name: {"zero-shot": ind} for name in INDICATORS.names()},
        "projectors": [{"source_backbone": "minilm", "target_backbone": "mpnet", "method": "task", "train_task": "mr",
                        "task": "mr", "family": "sentiment", "n_test": 200, "majority": 0.5, "test_acc": 0.7,
                        "test_acc_ci": [0.63, 0.76], "random_prompt_acc": 0.6, "random_prompt_acc_ci": [0.53, 0.67],
                        "target_pt_acc": None}],
    }


def test_every_table_carries_its_baselines_and_intervals():
    d = synthetic_study("same") | _other_sections()
    d["tasks"] = ["mr", "yelp_uci"]
    md = render_markdown(d)
    assert "| mr | sentiment | 1000 | 0.600 [0.550, 0.650] | 0.600 [0.550, 0.650] | 0.600 [0.550, 0.650] |" in md
    assert "**+0.100 [+0.050, +0.150] p 0.001**" in md  # a difference outside noise is bold
    nli = md.split("## Sentence pairs (NLI)")[1].split("##")[0]
    assert "model tuning itself stays at chance" in nli and "PT not above the majority class" in nli
    assert "| **random prompt** | 0.75 | 0.75 |" in md  # the random prompt's relative performance per target
    section = md.split("## Which indicator predicts transfer?")[1]
    for label in INDICATORS.labels().values():  # every registered indicator, under its label
        assert f"| {label} | 0.50 [0.20, 0.70] | 0.50 [0.20, 0.70] | 0.40 [0.10, 0.60] | 0.800 | 0.750 | 6 |" in section
    assert "| minilm -> mpnet | task | mr | mr | sentiment | 200 | 0.500 | 0.700 [0.630, 0.760] |" in md


def test_the_design_is_fixed_in_advance_and_checked():
    d = Design()
    assert all(len(s) == 3 for s in d.sources.values()) and set(d.subset) <= set(d.sources)
    assert d.negative == {"mr": "bbc", "tweets": "vitaminc", "nyt_editorials": "spam_assassin", "r8": "mr"}
    assert len(d.cells()) == 12 and len(d.cells(subset=True)) == 4
    assert d.deep_subset == {"mr": ("yelp_uci",), "nyt_editorials": ("yelp_uci",)}  # same-family source
    assert all(d.train.to_dict()[k] == v for k, v in {"train_limit": 256, "test_limit": None, "dev_limit": 200}.items())
    with pytest.raises(PandaError, match="contain the target"):
        Design(sources={"mr": ("mr", "bbc")})
    with pytest.raises(PandaError, match="not in the design"):
        Design(subset={"mr": ("tweets",)})


def test_the_committed_page_is_the_rendering_of_the_committed_results():
    data = json.loads((REPO_ROOT / "docs" / "results" / "results.json").read_text())
    if data.get("schema", 1) < SCHEMA:
        pytest.skip("docs/results/results.json predates the issue-11 study; `report` regenerates both")
    assert render_markdown(data) == (REPO_ROOT / "docs" / "results.md").read_text()


def test_the_committed_statistics_follow_from_the_committed_items():
    """`restate` (run by --render-only) recomputes the study's statistics from
    the runs' per-item records: on the committed study it reproduces them exactly."""
    folder = REPO_ROOT / "docs" / "results"
    data = json.loads((folder / "results.json").read_text())
    if data.get("schema", 1) < SCHEMA or not (folder / "items.json").is_file():
        pytest.skip("no committed study with per-item records")
    committed = data["panda_vs_pot"]["stats"]
    data["panda_vs_pot"]["stats"] = None
    assert restate(data, folder / "items.json")
    assert json.loads(json.dumps(data["panda_vs_pot"]["stats"])) == committed


def test_rerender_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(PandaError, match="run `python -m panda_core report` first"):
        rerender(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(PandaError, match="before issue 11"):
        rerender(tmp_path)


@pytest.mark.slow
def test_a_tiny_report_runs_every_stage_and_resumes(private_cache, tmp_path, monkeypatch):
    """The study on 1 target x 1 source x 2 seeds (steps 2, 20 test items), with
    every other stage on three tasks; a second report reuses every run."""
    from devtools import report
    from panda_core.training import TrainConfig

    monkeypatch.setattr(report, "REPO_ROOT", tmp_path)  # docs/results.md goes to the test's folder
    tiny = dict(steps=2, eval_every=2, dev_limit=16, test_limit=20, prompt_length=4, batch_size=4)
    design = Design(sources={"mr": ("yelp_uci",)}, subset={"mr": ("yelp_uci",)}, seeds=2,
                    train=TrainConfig(**tiny | {"train_limit": 16}))
    cfg = StudyConfig(tasks=("mr", "yelp_uci", "presuppositions"), pt=TrainConfig(**tiny), design=design,
                      zero_shot_test_limit=16, projector_pairs=(("minilm", "smollm2"),), projector_train_task="yelp_uci",
                      projector_eval_tasks=("yelp_uci", "presuppositions"), projector_steps=2, projector_test_limit=8,
                      n_inputs=4)
    out = report.run_study(cfg, log=lambda _: None, out_dir=tmp_path / "results")
    data = json.loads((tmp_path / "results" / "results.json").read_text())
    pvp = data["panda_vs_pot"]
    arms = [r["arm"] for r in pvp["runs"]]
    deep = ("deep-pt", "deep-pot", "deep-panda") if pvp["deep"]["ran"] else ()
    assert {a: arms.count(a) for a in set(arms)} == {a: 2 for a in (
        "pt", "untrained", "random-prompt", "majority", "pot", "panda", "model-tuning", "panda-random-init", "pot-aa",
        *deep)}
    assert all(r["n"] == 20 for r in pvp["runs"])  # every arm on the same 20 test items
    assert {r["run_seed"] for r in pvp["runs"] if r["arm"] == "pot-aa"} == {2, 3}  # independent seeds
    comps = pvp["stats"]["comparisons"]
    assert comps["panda_vs_pot"]["overall"]["n_runs"] == 2 and comps["aa"]["overall"]["n_cells"] == 1
    assert pvp["deep"]["ran"] or pvp["deep"]["skipped_because"]
    if deep:  # deep vs input-level, paired on the same items
        assert comps["deep_panda_vs_panda"]["overall"]["n_runs"] == 2
    assert [r["task"] for r in data["nli"]["rows"]] == ["presuppositions"]
    assert len(data["zero_shot"]["targets"]) == 3 and len(data["indicators"]) == len(INDICATORS)
    assert {r["method"] for r in data["projectors"]} == {"task"}  # no smollm2 PT prompt: distance is skipped
    md = (tmp_path / "docs" / "results.md").read_text()
    assert "| deep PANDA - input-level PANDA |" in md if deep else "The deep-prompt arm was skipped" in md
    for section in ("**Verdict:", "## PANDA vs vanilla PoT", "## Sentence pairs (NLI)", "## Prompt tuning per task",
                    "## Zero-shot cross-task transfer", "| **random prompt** |", "## Which indicator predicts transfer?",
                    "### Measure: vanilla PoT", "## Cross-model transfer through a projector"):
        assert section in md
    assert all(label in md for label in INDICATORS.labels().values())  # a new indicator needs no report edit
    items = json.loads((tmp_path / "results" / "items.json").read_text())
    assert all(len(items[f"{r['arm']}/mr/{r['source'] or '-'}/{r['seed']}"]) == 20 for r in pvp["runs"])
    assert any(p.endswith("study_runs.csv") for p in out["outputs"])
    again = report.run_study(cfg, stages=["transfers"], log=lambda _: None, out_dir=tmp_path / "results")
    rerun = json.loads((tmp_path / "results" / "results.json").read_text())["panda_vs_pot"]["runs"]
    assert all(r["reused"] for r in rerun if r.get("run_id"))  # a second report reuses every run by its key
    assert again["outputs"] and "## Prompt tuning per task" in (tmp_path / "docs" / "results.md").read_text()
