"""The PANDA vs PoT study's primary comparisons from the runs already stored,
before the report has finished: `stage_panda_pot.panda_vs_pot` with the
control arms (model tuning, random-init student, A/A, deep prompts) switched
off, so every PT/PoT/PANDA run it needs is reused from the store (a missing
one would be trained). Prints each comparison's mean paired difference, its
hierarchical bootstrap interval and sign-flip p, and each arm's accuracy.
`report` recomputes the same numbers, with the controls, into docs/results.md.

    python -m devtools.study_interim [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path


def interim() -> dict:
    from .report import StudyConfig
    from .study.context import Study
    from .study.stage_panda_pot import panda_vs_pot

    cfg = StudyConfig()
    cfg = replace(cfg, design=replace(cfg.design, model_tuning=False, random_init=False, aa_control=False,
                                      deep=False))
    with tempfile.TemporaryDirectory() as tmp:
        study = Study(cfg, Path(tmp), lambda m: print(m, file=sys.stderr), Path(tmp) / "results.md")
        panda_vs_pot(study)
    stats = study.data["panda_vs_pot"]["stats"]
    keep = ("diff", "low", "high", "p_value", "n_cells", "n_runs", "n_items", "min_p")
    return {"comparisons": {name: {k: c["overall"][k] for k in keep} for name, c in stats["comparisons"].items()},
            "accuracy": {t: x["accuracy"] for t, x in stats["targets"].items()},
            "kd_weight": {t: {s: c["kd_weight"] for s, c in x["cells"].items()} for t, x in stats["targets"].items()}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m devtools.study_interim", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    out = interim()
    if ap.parse_args(argv).json:
        print(json.dumps(out, indent=1))
        return
    for name, o in out["comparisons"].items():
        print(f"{name:32s} {o['diff']:+.4f} [{o['low']:+.4f}, {o['high']:+.4f}]  sign-flip p {o['p_value']:.4f}  "
              f"cells {o['n_cells']}  runs {o['n_runs']}  items {o['n_items']}")
    for target, arms in out["accuracy"].items():
        print(target, "  ".join(f"{a} {v['acc']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for a, v in arms.items()))


if __name__ == "__main__":
    main()
