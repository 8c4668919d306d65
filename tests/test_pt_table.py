"""The README's prompt-tuning table: every accuracy carries its interval, and
the trained prompt stands next to its baselines (majority class, a random
prompt and the untrained prompt) on the same test items."""

from __future__ import annotations

import re

from devtools.pt_table import _with_ci, render
from panda_core.training import TrainConfig

INTERVAL = re.compile(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]")


def _row(task: str, family: str, n: int, pt: float) -> dict:
    return {"task": task, "family": family, "n_test": n, "majority": _with_ci(0.5, n), "random": _with_ci(0.48, n),
            "untrained": _with_ci(0.55, n), "dev_acc": pt + 0.01, "test": _with_ci(pt, n), "seconds": 12.0,
            "steps": 300}


def test_every_accuracy_has_its_interval_next_to_the_baselines():
    text = render({"minilm": [_row("mr", "sentiment", 1066, 0.757)]}, TrainConfig())
    header = next(line for line in text.splitlines() if line.startswith("| task"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "task", "family", "test items", "majority", "random prompt", "untrained", "PT dev", "PT test", "seconds"]
    row = next(line for line in text.splitlines() if line.startswith("| mr"))
    assert len(INTERVAL.findall(row)) == 4  # majority, random, untrained, PT test
    assert "0.757 [0.730, 0.782]" in row  # Wilson on 807 of 1066


def test_wilson_interval_of_a_rounded_accuracy():
    got = _with_ci(0.5, 100)
    assert got["acc"] == 0.5 and got["ci"][0] < 0.5 < got["ci"][1]
    assert abs((got["ci"][1] - got["ci"][0]) - 0.19) < 0.01  # about 2 x 1.96 x sqrt(0.25 / 100)


def test_rows_from_the_saved_study_carry_every_baseline_with_its_interval():
    """`pt-table --from-results`: the committed study's PT stage becomes the
    table (one row per task, each accuracy with its interval, PT as saved)."""
    import json

    from devtools.pt_table import rows_from_results
    from panda_core.paths import REPO_ROOT

    results = json.loads((REPO_ROOT / "docs" / "results" / "results.json").read_text())
    rows, config = rows_from_results(results)
    assert config.steps == results["config"]["pt"]["steps"]
    assert {r["task"] for r in rows} == {r["task"] for r in results["pt"]}
    saved = {r["task"]: r for r in results["pt"]}
    for row in rows:
        assert row["test"]["acc"] == saved[row["task"]]["test_acc"]
        for key in ("majority", "random", "untrained", "test"):
            low, high = row[key]["ci"]
            assert low <= row[key]["acc"] <= high
    text = render({"minilm": rows}, config, source="docs/results/results.json")
    assert "--from-results docs/results/results.json" in text
    assert len([line for line in text.splitlines() if line.startswith("| ") and "[" in line]) == len(rows)


def test_from_results_refuses_what_is_not_a_saved_minilm_study_in_one_line(tmp_path, capsys):
    """A missing file, a file that is not JSON, JSON that is not a study and a
    study on another backbone: each exits 2 with one `error:` line, and the
    README is left as it was (nothing is written before the refusal)."""
    import json

    from panda_core.cli import main
    from panda_core.paths import REPO_ROOT

    readme = REPO_ROOT / "README.md"
    before = readme.read_bytes()
    study = json.loads((REPO_ROOT / "docs" / "results" / "results.json").read_text())
    other = dict(study, config=dict(study["config"], backbone="mpnet"))
    files = {"missing": tmp_path / "nothing.json", "not json": tmp_path / "junk.json",
             "not a study": tmp_path / "list.json", "other backbone": tmp_path / "mpnet.json"}
    files["not json"].write_text("{ this is not json")
    files["not a study"].write_text(json.dumps([1, 2, 3]))
    files["other backbone"].write_text(json.dumps(other))
    for case, path in files.items():
        assert main(["pt-table", "--from-results", str(path)]) == 2, case
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --from-results:"), (case, err)
    assert "mpnet" in err[0]
    assert readme.read_bytes() == before
