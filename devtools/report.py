"""The seeded study (`python -m panda_core report`): runs the stages of
`devtools.study` and writes `docs/results.md` plus CSV/JSON under
`docs/results/`. Every number in the page comes from runs made by the report
(or identical runs already in the store, which it reuses: the report
resumes where a killed one stopped). The PANDA vs PoT study's design and
its sizing for 2 CPU cores are in `devtools.study.config.Design`; the page is
rendered by `devtools.results_md` from the JSON alone (`--render-only`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from panda_core import atomic
from panda_core.errors import PandaError
from panda_core.paths import REPO_ROOT

from .results_md import render_markdown
from .study.config import Design, StudyConfig
from .study.context import SCHEMA, Log, Study
from .study.stage_indicators import indicators
from .study.stage_nli import nli
from .study.stage_panda_pot import panda_vs_pot
from .study.stage_projectors import projectors
from .study.stage_pt import prompt_tuning
from .study.stage_zero_shot import zero_shot

__all__ = ["STAGES", "Design", "Study", "StudyConfig", "render_markdown", "rerender", "restate", "run_study"]

#: the CLI's stage names (`report --stages`) -> the stage functions, in order
STAGES: dict[str, tuple[Callable[[Study], None], ...]] = {
    "pt": (prompt_tuning,),
    "zero_shot": (zero_shot,),
    "transfers": (panda_vs_pot, nli),  # the PANDA vs PoT study, and NLI against majority and model tuning
    "indicators": (indicators,),
    "projectors": (projectors,),
}

#: the keys of results.json each stage writes
DATA_KEYS: dict[str, tuple[str, ...]] = {
    "pt": ("pt",), "zero_shot": ("zero_shot",), "transfers": ("panda_vs_pot", "nli"),
    "indicators": ("indicators", "indicator_matrices", "indicator_measures"), "projectors": ("projectors",),
}


def run_study(config: StudyConfig | None = None, stages: list[str] | None = None, log: Log = print,
              out_dir: Path | None = None) -> dict:
    """Run `stages` (all by default) and write the outputs after each; returns
    {"outputs": [paths], "seconds"}. The stages not run keep their results from
    the last report's results.json (when it has this layout)."""
    config = config or StudyConfig()
    unknown = sorted(set(stages or ()) - set(STAGES))
    if unknown:
        raise PandaError(f"unknown report stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    study = Study(config, out_dir or REPO_ROOT / "docs" / "results", log, REPO_ROOT / "docs" / "results.md")
    if not study.tasks:
        raise PandaError("no offline tasks are prepared; run `python -m panda_core data prepare`")
    if stages:  # a partial report keeps the other stages' results of the last one
        study.carry_over([key for name in STAGES if name not in stages for key in DATA_KEYS[name]])
    for name in stages or list(STAGES):
        for stage in STAGES[name]:
            stage(study)
            study.write()
    return {"outputs": study.write(), "seconds": study.data["seconds"]}


def rerender(out_dir: Path | None = None) -> dict:
    """Rewrite docs/results.md from a finished study's results.json, its
    statistics recomputed from the runs' items (no model, no training)."""
    src = (out_dir or REPO_ROOT / "docs" / "results") / "results.json"
    if not src.is_file():
        raise PandaError(f"no study results at {src}; run `python -m panda_core report` first")
    data = json.loads(src.read_text())
    if data.get("schema", 1) < SCHEMA:
        raise PandaError(f"{src} was written by the report before issue 11 (no intervals, one seed); "
                         "run `python -m panda_core report` to regenerate it")
    outputs = []
    if restate(data, src.parent / "items.json"):  # the statistics follow the analysis code, not its version then
        atomic.write_text(src, json.dumps(data, indent=1, default=str))
        outputs.append(str(src))
    md = REPO_ROOT / "docs" / "results.md"
    atomic.write_text(md, render_markdown(data))
    return {"outputs": [*outputs, str(md)]}


def restate(data: dict, items_json: Path) -> bool:
    """Recompute the PANDA vs PoT statistics from the stored runs and their
    per-item records (`analysis.summarize`: no model, no store), so a change to
    the analysis reaches a finished study without running it again. False when
    the study or its items are missing."""
    from .study.analysis import summarize

    pvp = data.get("panda_vs_pot") or {}
    if not pvp.get("runs") or not items_json.is_file():
        return False
    saved = data["config"]["design"]
    design = Design(sources={t: tuple(s) for t, s in saved["sources"].items()}, subset=saved["subset"],
                    deep_subset=saved["deep_subset"])
    pvp["stats"] = summarize(pvp["runs"], json.loads(items_json.read_text()), design.sources, design.negative)
    return True
