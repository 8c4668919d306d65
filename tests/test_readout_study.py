"""docs/readouts.md's table: every accuracy, the majority class's included,
carries its Wilson interval."""

from __future__ import annotations

import re

from devtools.readout_study import render, wilson

INTERVAL = re.compile(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]")


def test_every_cell_and_the_majority_carry_their_interval():
    data = {"backbone": "minilm", "steps": 100, "seed": 0, "tasks": ["epistemic"], "readouts": ["mean-desc", "pair"],
            "majority": {"epistemic": {"acc": 0.625, "k": 250, "n": 400, "ci": wilson(250, 400)}},
            "runs": {"mean-desc|epistemic": {"acc": 0.7, "ci": wilson(280, 400)},
                     "pair|epistemic": {"acc": 0.8, "ci": wilson(320, 400)}}}
    row = next(line for line in render(data).splitlines() if line.startswith("| epistemic"))
    assert len(INTERVAL.findall(row)) == 3
    assert row.startswith("| epistemic | 0.625 [0.577, 0.671] |")
