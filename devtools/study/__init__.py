"""The seeded study behind `python -m panda_core report` (issue 11).

One module per stage, each a function of the shared `Study` context
(`context.py`): `stage_pt` (the source prompts and the per-task baselines),
`stage_zero_shot`, `stage_panda_pot` (the PANDA vs PoT study), `stage_nli`,
`stage_indicators` and `stage_projectors`. `analysis` turns the runs into
paired statistics through `panda_core.stats` (no statistics are written
here); the `page_*` modules render docs/results.md from the JSON alone.
The entry points (`run_study`, `rerender`) live in `devtools.report`, which
the CLI imports.
"""

from __future__ import annotations

from .config import Design, StudyConfig

__all__ = ["Design", "StudyConfig"]
