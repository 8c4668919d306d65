"""The zoo and the study bundle in the app (issue 13, items 1 and 2), headless
with streamlit.testing.AppTest: on a cache that holds only zoo prompts (a
fresh clone after `make setup`) Similarity, Clusters and the Transfer page's
source ranking show the bundled values at once and say so; once the user has
a prompt of their own, or asks to recompute, they are computed here.

The zoo here is synthetic (random 20 x 384 MiniLM prompts, a made-up bundle
over them), so no model is run on the bundled paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_app import figures, ok, page, values
from test_zoo import fake_entry
from test_zoo_bundle import _bundle

from panda_core import store
from panda_core.prompts import SoftPrompt
from panda_core.zoo import files as zoo_files

TASKS = ["imdb_uci", "yelp_uci", "r8"]  # in the pages' order: by family, then name


@pytest.fixture
def fresh_clone(private_cache, tmp_path, monkeypatch) -> dict:
    """A cache with only the (synthetic) zoo's prompts installed, and a bundle over them."""
    from panda_core.data import available_tasks
    from panda_core.zoo.install import install

    if not set(TASKS) <= set(available_tasks()):
        pytest.skip("task data missing: run `make setup` first")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    monkeypatch.setenv(zoo_files.ENV, str(zoo))
    monkeypatch.setenv("PANDA_WARM_UMAP", "0")
    torch.manual_seed(0)
    entries = [fake_entry(zoo, t) for t in TASKS]
    assert not install()["problems"]
    data = _bundle(zoo, [e["id"] for e in entries], TASKS, ["sentiment", "sentiment", "topic"])
    return {"zoo": zoo, "entries": entries, "bundle": data}


def _captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def test_similarity_shows_the_bundled_matrix_of_the_zoo_prompts(fresh_clone):
    at = page("similarity", sim_metric_a="on").run()  # a model indicator: no backbone is run for it
    ok(at)
    heat = figures(at)[0]["data"][0]
    assert heat["x"] == TASKS and values(heat["z"]) == fresh_clone["bundle"]["indicators"]["on"]["matrix"]
    text = _captions(at)
    assert "Showing 3 zoo prompts (shipped with the tool)" in text
    assert "Matrices bundled with the tool" in text and "abcdef1234" in text
    assert any(b.label == "Recompute here" for b in at.button)


def test_similarity_computes_here_once_you_have_your_own_prompt(fresh_clone):
    from panda_core.indicators.similarity import similarity_table

    store.save_prompt(SoftPrompt(tensor=torch.randn(20, 384), backbone="minilm", task="r8", created=1.0))
    at = page("similarity", sim_metric_a="c_avg").run()
    ok(at)
    heat = figures(at)[0]["data"][0]
    assert values(heat["z"]) == similarity_table("c_avg", "minilm", TASKS)["matrix"]
    text = _captions(at)
    assert "Showing 2 zoo prompts (shipped with the tool) and 1 of your own." in text
    assert "Matrices computed here from the prompts in your cache" in text


def test_recompute_here_switches_the_bundle_off_for_the_session(fresh_clone):
    at = page("similarity", sim_metric_a="c_avg").run()
    assert "Matrices bundled with the tool" in _captions(at)
    next(b for b in at.button if b.label == "Recompute here").click().run()
    ok(at)
    assert "Matrices computed here (the bundled values are switched off" in _captions(at)
    assert values(figures(at)[0]["data"][0]["z"]) != fresh_clone["bundle"]["indicators"]["c_avg"]["matrix"]


def test_clusters_show_the_bundled_umap_without_computing_it(fresh_clone):
    at = page("clusters").run()
    ok(at)
    points = fresh_clone["bundle"]["layouts"][0]["points"]
    fig = figures(at)[0]
    xs = sorted(x for trace in fig["data"] for x in values(trace["x"]))
    assert xs == sorted(p["x"] for p in points)
    text = _captions(at)
    assert "UMAP coordinates bundled with the tool" in text and "Showing 3 zoo prompts" in text


def test_transfer_ranking_uses_the_bundled_indicators(fresh_clone):
    at = page("transfer").run()
    ok(at)
    ranking = next(df.value for df in at.dataframe if any(c.startswith("rank ") for c in df.value.columns))
    assert set(ranking.index) == set(TASKS) - {at.selectbox(key="tr_target").value}
    text = _captions(at)
    assert "Indicator scores bundled with the tool" in text and "Showing 3 zoo prompts" in text


def test_home_says_which_prompts_come_from_the_zoo(fresh_clone):
    at = page("home").run()
    ok(at)
    tasks = next(df.value for df in at.dataframe if "origin" in df.value.columns)
    assert set(tasks.loc[tasks["origin"] == "zoo (shipped)", "task"]) == set(TASKS)
    assert "3 of these prompts come from the zoo" in _captions(at)


def test_the_bundle_file_is_read_once_per_version(fresh_clone):
    from panda_core.ops import bundle

    first = bundle.load()
    assert bundle.load() is first
    path: Path = fresh_clone["zoo"] / zoo_files.BUNDLE
    path.write_text(json.dumps(first | {"tasks": ["x", "y", "z"], "pad": "changed size"}))
    assert bundle.load()["tasks"] == ["x", "y", "z"]


def test_metric_validation_shows_the_bundled_table_on_a_fresh_clone(fresh_clone):
    """No run measured here: the page validates the bundled indicator matrices against the
    bundled zero-shot transfer of the zoo prompts, and says where the numbers come from."""
    import numpy as np

    from panda_core.indicators import rank_correlation
    from panda_core.ops import bundle

    data = fresh_clone["bundle"]
    relative = np.round(np.random.default_rng(1).random((3, 3)) + np.eye(3), 4)
    data["zero_shot"] |= {"measure": "zero-shot", "test_limit": 200, "relative": relative.tolist()}
    (fresh_clone["zoo"] / zoo_files.BUNDLE).write_text(json.dumps(data))
    ids = [e["id"] for e in fresh_clone["entries"]]
    table = bundle.validation_table("minilm", ids, ["spot", "c_avg"])
    expected = rank_correlation(np.array(data["indicators"]["spot"]["matrix"]), relative)
    assert table["origin"] == "bundled"
    assert table["indicators"]["spot"]["spearman_pooled"] == pytest.approx(expected["spearman_pooled"])
    assert bundle.validation_table("minilm", ids[:2], ["spot"]) is None  # fewer than 3 tasks
    assert bundle.validation_table("minilm", [*ids[:2], "mine"], ["spot"]) is None  # a prompt of your own
    at = page("validation", mv_measure="zero-shot").run()
    ok(at)
    assert "Measured transfer: bundled with the tool" in _captions(at)
    assert any("verdict" in "".join(t.value.columns) for t in at.table)
