"""The study bundle's lookups (issue 13, item 2): bundled values apply only to
exactly the zoo prompts they were computed from (a sub-matrix for a pairwise
indicator, the exact set for a layout, the same options), and the similarity
tables say which prompts are the zoo's. The bundle built from a real (tiny)
zoo is tested in test_zoo.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from test_zoo import _prompt

from panda_core import store
from panda_core.prompts import SoftPrompt
from panda_core.zoo import files as zoo_files


def _bundle(folder: Path, ids: list[str], tasks: list[str], families: list[str]) -> dict:
    """A made-up bundle over `ids` (random matrices with each indicator's default options, one UMAP layout)."""
    from panda_core.indicators import INDICATORS
    from panda_core.indicators.similarity import effective_options
    from panda_core.zoo.bundle_build import TABLE_DEFAULTS

    k = len(ids)
    rng = np.random.default_rng(0)
    data = {
        "schema": 1, "backbone": "minilm", "prompt_type": "input", "prompt_length": 20, "tasks": tasks,
        "families": families, "prompt_ids": ids, "provenance": {"commit": "abcdef1234567", "built": "2026-12-01T00"},
        "indicators": {m: {"options": effective_options(m, TABLE_DEFAULTS),
                           "matrix": np.round(rng.random((k, k)), 4).tolist()} for m in INDICATORS.names()},
        "zero_shot": {"acc": np.full((k, k), 0.5).tolist()}, "correlations": {}, "study": None,
        "layouts": [{"layout": "umap", "mode": "prompt", "seed": 0, "methods": ["pt"],
                     "points": [{"x": float(i), "y": -float(i), "task": t, "family": f, "token": -1, "prompt_id": p,
                                 "method": "pt", "seed": 0, "origin": "zoo"}
                                for i, (t, f, p) in enumerate(zip(tasks, families, ids, strict=True))]}],
    }
    (folder / zoo_files.BUNDLE).write_text(json.dumps(data))
    return data


def test_bundled_values_apply_only_to_the_exact_zoo_prompts(zoo, monkeypatch):
    from panda_core.indicators import INDICATORS
    from panda_core.ops import bundle

    data = _bundle(zoo, ["z.a", "z.b", "z.c"], ["mr", "yelp_uci", "bbc"], ["sentiment", "sentiment", "topic"])
    M = data["indicators"]["on"]["matrix"]
    full = bundle.matrix("on", "minilm", ["z.a", "z.b", "z.c"])
    assert full["matrix"] == M and full["prompt_origins"] == ["zoo"] * 3 and "abcdef1234" in full["bundle"]
    sub = bundle.matrix("on", "minilm", ["z.c", "z.a"])  # a pairwise indicator: the sub-matrix, in that order
    assert sub["tasks"] == ["bbc", "mr"] and sub["matrix"] == [[M[2][2], M[2][0]], [M[0][2], M[0][0]]]
    assert bundle.matrix("on", "minilm", ["z.a", "mine"]) is None  # a prompt of your own: computed
    assert bundle.matrix("on", "minilm", ["z.a", "z.b"], {"n_inputs": 8}) is None  # other options
    assert bundle.matrix("on", "minilm", ["z.a", "z.b"], {"n_inputs": 32, "layers": None})["matrix"]
    assert bundle.matrix("on", "mpnet", ["z.a", "z.b"]) is None
    assert bundle.matrix("on", "minilm", ["z.a", "z.b"], prompt_type="deep") is None
    assert bundle.matrix("no-such-indicator", "minilm", ["z.a", "z.b"]) is None
    monkeypatch.setattr(type(INDICATORS.get("on")), "pairwise", False)
    assert bundle.matrix("on", "minilm", ["z.a", "z.b"]) is None and bundle.matrix("on", "minilm",
                                                                                   ["z.a", "z.b", "z.c"])
    pts = bundle.points("minilm", ["z.c", "z.b", "z.a"], "umap", "prompt", 0)
    assert [p["prompt_id"] for p in pts] == ["z.a", "z.b", "z.c"]
    assert bundle.points("minilm", ["z.a", "z.b"], "umap", "prompt", 0) is None  # a layout needs every point
    assert bundle.points("minilm", ["z.a", "z.b", "z.c"], "umap", "prompt", 1) is None
    assert bundle.validation()["zero_shot"]["acc"][0][0] == 0.5
    (zoo / zoo_files.BUNDLE).write_text("[1, 2]")
    assert bundle.load() is None and bundle.matrix("on", "minilm", ["z.a"]) is None and bundle.validation() is None


def test_every_pairwise_indicator_gives_the_sub_matrix_of_a_subset():
    """What lets the bundle serve a subset of its prompts: checked on the embedding indicators."""
    from panda_core.indicators import INDICATORS
    from panda_core.indicators.base import IndicatorContext
    from panda_core.indicators.similarity import indicator_matrix

    prompts = [SoftPrompt(tensor=torch.randn(4, 6), backbone="b", task=f"t{i}") for i in range(5)]
    opts = {"delta": False}
    for ind in INDICATORS:
        if ind.needs_backbone:
            continue
        full = indicator_matrix(ind.name, prompts, IndicatorContext(options=opts))
        sub = indicator_matrix(ind.name, [prompts[3], prompts[1]], IndicatorContext(options=opts))
        assert ind.pairwise and np.allclose(sub, full[np.ix_([3, 1], [3, 1])]), ind.name


def test_similarity_reports_which_prompts_are_the_zoos(private_cache, capsys):
    from panda_core.cli import main
    from panda_core.indicators.similarity import effective_options, similarity_table, table_of_prompts

    store.save_prompt(_prompt(task="mr", tensor=torch.randn(20, 384), zoo=True))
    store.save_prompt(_prompt(task="bbc", tensor=torch.randn(20, 384)))
    table = similarity_table("c_avg", "minilm", None, 20)
    assert dict(zip(table["tasks"], table["prompt_origins"], strict=True)) == {"mr": "zoo", "bbc": "user"}
    again = table_of_prompts("c_avg", [store.load_prompt(p) for p in table["prompt_ids"]], "minilm")
    assert again["matrix"] == table["matrix"]
    assert main(["similarity", "--metric", "c_avg", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt_origins"] == table["prompt_origins"]
    assert effective_options("on", {"layers": (1, 3)}) == {"layers": [1, 3], "inputs": "target", "n_inputs": 32}


def test_zero_shot_column_gives_each_source_its_relative_transfer_and_paired_interval(zoo):
    from panda_core.ops import bundle
    from panda_core.stats import encode_items
    from panda_core.stats.paired import paired_ratio_ci

    data = _bundle(zoo, ["z.a", "z.b", "z.c"], ["mr", "yelp_uci", "bbc"], ["sentiment", "sentiment", "topic"])
    rng = np.random.default_rng(1)
    correct = rng.random((3, 3, 60)) < np.array([[0.8, 0.6, 0.3], [0.7, 0.9, 0.4], [0.5, 0.5, 0.9]])[..., None]
    acc = correct.mean(axis=2)
    data["zero_shot"] = {"measure": "zero-shot", "acc": acc.tolist(),
                         "relative": (acc / np.diag(acc)[None, :]).tolist(),
                         "items": [[encode_items(correct[i, j]) for j in range(3)] for i in range(3)]}
    got = bundle.zero_shot_column("minilm", ["z.a", "z.c"], "z.b", bundle=data)
    assert set(got) == {"z.a", "z.c"}
    value, ci = got["z.c"]
    assert value == round(acc[2, 1] / acc[1, 1], 4)
    assert ci == tuple(round(x, 4) for x in paired_ratio_ci(correct[2, 1], correct[1, 1]))
    assert ci[0] <= value <= ci[1]
    assert bundle.zero_shot_column("minilm", ["z.a", "z.c"], "z.b", bundle=data) is got  # cached, no new bootstrap
    assert bundle.zero_shot_column("minilm", ["z.a", "mine"], "z.b", bundle=data) is None  # not all bundled
    assert bundle.zero_shot_column("mpnet", ["z.a"], "z.b", bundle=data) is None
    del data["zero_shot"]["items"]
    assert bundle.zero_shot_column("minilm", ["z.a"], "z.b", bundle=data) == {"z.a": (round(acc[0, 1] / acc[1, 1], 4), None)}
