"""The study's markdown is rendered from its JSON alone (no computation)."""

from __future__ import annotations

import pytest

from panda_core.errors import PandaError
from panda_core.report import StudyConfig, render_markdown, rerender


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


def test_rerender_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(PandaError, match="run `python -m panda_core report` first"):
        rerender(tmp_path)
