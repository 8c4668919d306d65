"""The PT ablation's record: rows merge by (task, backbone, variant, seed,
budget), a rerun replaces its row, and the page shows every accuracy with its
interval and each paired difference (no training here; the rows are shaped
as `devtools.pt_ablation.run` prints them)."""

from __future__ import annotations

import re

from devtools.pt_ablation import merge, render


def _row(variant: str, seed: int, acc: float, diff: float | None = None) -> dict:
    row = {"task": "epistemic", "backbone": "minilm", "seed": seed, "steps": 300, "variant": variant,
           "segments": variant == "current", "init_seed": 7 if variant == "current" else seed, "dev_acc": acc,
           "test_acc": acc, "test_acc_ci": [acc - 0.05, acc + 0.04], "n_test": 400,
           "dev_curve": [[0, 0.375], [300, acc]], "seconds": 1.0}
    if diff is not None:
        row["vs_current"] = {"diff": diff, "low": diff - 0.05, "high": diff + 0.05, "p_value": 0.01, "n": 400,
                             "confidence": 0.95, "within_noise": False}
    return row


def test_rows_merge_by_their_key_and_a_rerun_replaces_its_row(tmp_path):
    path = tmp_path / "rows.json"
    merge([_row("current", 0, 0.61), _row("run seed", 0, 0.86, 0.25)], path)
    rows = merge([_row("current", 1, 0.70), _row("current", 0, 0.62)], path)
    assert len(rows) == 3
    assert [r["test_acc"] for r in rows if r["seed"] == 0 and r["variant"] == "current"] == [0.62]


def test_the_reference_variant_comes_first_within_a_seed(tmp_path):
    """The differences are against "current", so its row leads its seed's rows
    (the declared variant order, not the alphabet)."""
    rows = merge([_row("run seed", 0, 0.86, 0.25), _row("before issue 11", 0, 0.9, 0.28), _row("current", 0, 0.61),
                  _row("no segments", 0, 0.63, 0.02)], tmp_path / "rows.json")
    assert [r["variant"] for r in rows] == ["current", "no segments", "run seed", "before issue 11"]


def test_the_page_shows_intervals_and_paired_differences():
    text = render([_row("current", 0, 0.61), _row("run seed", 0, 0.86, 0.25)])
    lines = [line for line in text.splitlines() if line.startswith("| epistemic")]
    assert len(lines) == 2
    assert re.search(r"0\.860 \[0\.810, 0\.900\]", lines[1])
    assert "+0.250 [+0.200, +0.300], p 0.01 (current)" in lines[1]
    assert "| run |" in lines[1] and "| task |" in lines[0]
