"""Measured transfer from elsewhere (issue 13 item 5): a CSV of
source,target,score imported as an external measurement, every indicator that
the backbone allows validated against it with the same statistics as against
runs, and marked external; bad CSVs refused in one line with nothing written.

The acceptance case with fixtures made here: a folder in Prompt-Transferability's
layout of random 100 x 768 "RoBERTa-base" prompts (two families sharing a
direction each) written with torch.save, and made-up zero-shot transfer that
is higher within a family. No model is loaded (roberta-base is not installed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_helpers import one_line_error, snapshot

from panda_core.cli import main as cli_main
from panda_core.errors import PandaError
from panda_core.indicators import external
from panda_core.indicators.validation import validate_indicators
from panda_core.ops import import_prompt, indicator_summary

FOREIGN = "roberta-base"
THUNLP = {"sst2": "SST2", "imdb": "IMDB", "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE"}
FAMILY = {"sst2": 0, "imdb": 0, "mnli": 1, "qnli": 1, "rte": 1}


def _thunlp_folder(root: Path) -> Path:
    """task_prompt_emb/<Task>PromptRoberta/task_prompt, 100 x 768 each."""
    gen = torch.Generator().manual_seed(7)
    family = [torch.randn(100, 768, generator=gen) for _ in range(2)]
    emb = root / "task_prompt_emb"
    for task, their in THUNLP.items():
        (emb / f"{their}PromptRoberta").mkdir(parents=True)
        tensor = family[FAMILY[task]] + 0.8 * torch.randn(100, 768, generator=gen)
        torch.save(tensor, emb / f"{their}PromptRoberta" / "task_prompt")
    return emb


def _zero_shot_csv(path: Path, header: str = "source,target,score,n,note") -> Path:
    """Made-up relative zero-shot transfer: within a family 0.8-0.95, across 0.3-0.5."""
    rng = np.random.default_rng(3)
    rows = [header]
    for s in THUNLP:
        for t in THUNLP:
            score = 1.0 if s == t else (0.8 if FAMILY[s] == FAMILY[t] else 0.3) + 0.15 * rng.random()
            rows.append(f"{s.upper() if s == 'sst2' else s},{t},{score:.4f},872,made up")
    path.write_text("\n".join(rows) + "\n")
    return path


def _cli(capsys, *args) -> dict | list:
    code = cli_main([*args, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err[-500:]
    return json.loads(out.out)


def test_published_prompts_validate_against_published_numbers(private_cache, tmp_path, no_models):
    imported = import_prompt(_thunlp_folder(tmp_path), backbone=FOREIGN)
    assert len(imported["prompt_ids"]) == 5
    got = external.import_measurement(_zero_shot_csv(tmp_path / "su2022.csv"), "su2022", FOREIGN, "zero-shot")
    assert (got["name"], got["backbone"], got["measure"], got["pairs"], got["prompt_length"]) == \
        ("su2022", FOREIGN, "zero-shot", 25, 100)
    assert sorted(got["tasks"]) == sorted(THUNLP)  # "SST2" in the CSV is the task sst2
    assert [m["name"] for m in external.list_measurements(FOREIGN)] == ["su2022"]
    assert external.list_measurements("minilm") == []
    assert json.loads((private_cache / "measurements" / "su2022.json").read_text())["backbone"] == FOREIGN

    out = validate_indicators(FOREIGN, measure="external:su2022")
    assert out["external"] is True and out["source"] == "su2022" and out["external_measure"] == "zero-shot"
    assert out["config"] is None and out["prompt_length"] == 100 and sorted(out["tasks"]) == sorted(THUNLP)
    assert "on" not in out["indicators"] and "panda" not in out["indicators"]  # they need the model
    assert {"c_avg", "e_avg", "spot"} <= set(out["indicators"])
    c_avg = out["indicators"]["c_avg"]
    assert c_avg["spearman_pooled"] > 0.5 and len(c_avg["spearman_pooled_ci"]) == 2  # same family: similar prompts
    assert c_avg["kendall_pooled"] > 0 and c_avg["ndcg_at_3"] is not None and c_avg["n_pairs"] == 20
    at = {t: i for i, t in enumerate(out["tasks"])}
    assert out["measured"][at["sst2"]][at["imdb"]] == pytest.approx(
        external.load_measurement("su2022").value("sst2", "imdb"), abs=1e-4)
    rows = indicator_summary(out)  # the page's table
    assert rows[0]["spearman_pooled"]["verdict"] in ("better", "within noise", "worse")

    sub = validate_indicators(FOREIGN, ["sst2", "imdb", "mnli", "qnli"], "external:su2022", ["spot"])
    assert sorted(sub["tasks"]) == ["imdb", "mnli", "qnli", "sst2"] and sub["left_out"] == ["rte"]
    for args, message in (((FOREIGN, None, "external:su2022", ["on"]), f"prompts of '{FOREIGN}' need that backbone"),
                          (("minilm", None, "external:su2022"), "gives transfer on 'roberta-base', not 'minilm'"),
                          ((FOREIGN, None, "external:nope"), "no external measurement 'nope'")):
        with pytest.raises(PandaError, match=message) as err:
            validate_indicators(*args)
        one_line_error(err.value)


def test_cli_imports_thunlp_prompts_and_measurements(private_cache, tmp_path, no_models, capsys):
    folder = _thunlp_folder(tmp_path)
    out = _cli(capsys, "prompts", "import", str(folder), "--backbone", FOREIGN)
    assert out["format"] == "folder" and len(out["prompt_ids"]) == 5
    table = _cli(capsys, "similarity", "--metric", "c_avg", "--backbone", FOREIGN)  # no --prompt-len: 100
    assert sorted(table["tasks"]) == sorted(THUNLP) and np.array(table["matrix"]).shape == (5, 5)
    assert np.isfinite(np.array(table["matrix"])).all() and table["backbone"] == FOREIGN

    csv = _zero_shot_csv(tmp_path / "published.csv", "source,target,score,n,note")
    got = _cli(capsys, "measurements", "import", str(csv), "--backbone", FOREIGN)
    assert got["name"] == "published" and got["measure_id"] == "external:published"
    assert [m["name"] for m in _cli(capsys, "measurements", "list")] == ["published"]
    result = _cli(capsys, "measurements", "validate", "published", "--metrics", "c_avg", "spot")
    assert result["external"] is True and set(result["indicators"]) == {"c_avg", "spot"}
    code = cli_main(["measurements", "import", str(csv), "--backbone", FOREIGN, "--json"])  # exists already
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "exists already" in err[0]
    _cli(capsys, "measurements", "import", str(csv), "--backbone", FOREIGN, "--replace")


def _bad_csvs(d: Path) -> list[tuple[str, Path, dict, str]]:
    fb = {"backbone": FOREIGN}
    ok_rows = "sst2,imdb,0.9\nimdb,sst2,0.8\n"
    cases: list[tuple[str, Path, dict, str]] = []

    def add(what: str, content: str | bytes, kwargs: dict, message: str) -> None:
        path = d / f"case{len(cases)}.csv"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        cases.append((what, path, kwargs, message))

    add("empty file", "", fb, "is empty")
    add("blank lines only", "\n \n", fb, "is empty")
    add("no header", ok_rows, fb, r"first row must be the header.*looks like data")
    add("header without score", "source,target,value\n" + ok_rows, fb, "first row must be the header")
    add("unknown column", "source,target,score,p\nsst2,imdb,0.9,1\n", fb, "unknown column 'p'")
    add("column twice", "source,target,score,score\nsst2,imdb,0.9,1\n", fb, "named twice")
    add("header only", "source,target,score\n", fb, "has a header but no rows")
    add("text score", "source,target,score\nsst2,imdb,n/a\n", fb, "row 2: score 'n/a' is not a number")
    add("empty score", "source,target,score\nsst2,imdb,\n", fb, "row 2: score '' is not a number")
    add("NaN score", "source,target,score\nsst2,imdb,nan\n", fb, "not a finite number")
    add("infinite score", "source,target,score\nsst2,imdb,1e999\n", fb, "not a finite number")
    add("short row", "source,target,score\nsst2,imdb\n", fb, "row 2 has 2 fields, the header has 3")
    add("duplicate pair", "source,target,score\nsst2,imdb,0.9\nSST2,imdb,0.8\n", fb,
        "rows 2 and 3 both give sst2 -> imdb")
    add("self pairs only", "source,target,score\nsst2,sst2,1\nimdb,imdb,1\n", fb, "pairs a task with itself")
    add("task without prompts", "source,target,score\nsst2,imdb,0.9\nag_news,sst2,0.2\n", fb,
        r"no prompts on 'roberta-base' for 1 of its tasks \(ag_news\)")
    add("task name that is no name", "source,target,score\nsst2,../x,0.9\n", fb, "target '../x' is not a task name")
    add("bad count", "source,target,score,n\nsst2,imdb,0.9,many\n", fb, "n 'many' is not a count")
    add("two backbones", "source,target,score,backbone\nsst2,imdb,0.9,roberta-base\nimdb,sst2,0.8,bert-base-uncased\n",
        {}, "column 'backbone' has 2 different values")
    add("backbone column against --backbone", "source,target,score,backbone\nsst2,imdb,0.9,bert-base-uncased\n",
        fb, "says 'bert-base-uncased' but --backbone is 'roberta-base'")
    add("no backbone", "source,target,score\n" + ok_rows, {}, "pass --backbone")
    add("unknown metric", "source,target,score,metric\nsst2,imdb,0.9,accuracy\n", fb,
        "metric 'accuracy' is not a measure here")
    add("metric against --measure", "source,target,score,metric\nsst2,imdb,0.9,pot-gain\n",
        fb | {"measure": "zero-shot"}, "says 'pot-gain' but --measure is 'zero-shot'")
    add("not UTF-8", b"source,target,score\nsst2,imdb,0.9\n\xff\xfe\n", fb, "not UTF-8")
    add("binary", b"source,target,score\x00\n", fb, "NUL bytes")
    add("unterminated quote", 'source,target,score\n"sst2,imdb,0.9\n', fb, "not a readable CSV")
    add("too large", "source,target,score\n" + "sst2,imdb,0.9\n" * 200_000, fb, "over the 2 MB limit")
    cases.append(("name with a path", d / "case0.csv", fb | {"name": "../evil"}, "is not a name"))
    cases.append(("missing file", d / "absent.csv", fb, "file not found"))
    return cases


_CELL = st.one_of(st.sampled_from(["sst2", "imdb", "SST-2", "0.5", "-1e3", "nan", "inf", "", "1", "x y", '"q"',
                                   "roberta-base", "zero-shot", "\u00e9"]), st.text(max_size=8))
_CSV_TEXT = st.lists(st.lists(_CELL, min_size=1, max_size=6), max_size=8).map(
    lambda rows: "\n".join(",".join(r) for r in ([["source", "target", "score"]] + rows)))


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(st.binary(max_size=300), _CSV_TEXT.map(str.encode)))
def test_any_bytes_parse_or_are_refused_in_one_line(data):
    """Property: whatever the bytes, the CSV reader returns checked pairs or one PandaError line."""
    from panda_core.indicators.external_csv import parse_csv

    try:
        out = parse_csv(data)
    except PandaError as err:
        one_line_error(err)
        return
    assert out["pairs"] and all(np.isfinite(p["score"]) for p in out["pairs"])
    assert len({(p["source"], p["target"]) for p in out["pairs"]}) == len(out["pairs"])
    assert any(p["source"] != p["target"] for p in out["pairs"])


def test_bad_csvs_are_refused_in_one_line_and_write_nothing(private_cache, tmp_path, no_models, capsys):
    import_prompt(_thunlp_folder(tmp_path), backbone=FOREIGN)
    d = tmp_path / "bad"
    d.mkdir()
    cases = _bad_csvs(d)
    before = snapshot(private_cache)
    for what, path, kwargs, message in cases:
        with pytest.raises(PandaError) as info:
            external.import_measurement(path, kwargs.pop("name", "bad"), **kwargs)
        one_line_error(info.value)
        assert re.search(message, str(info.value)), (what, str(info.value))
        assert snapshot(private_cache) == before, what
    assert not (private_cache / "measurements").exists()
    for what, path, _, _ in cases[::5]:  # the CLI: exit 2, one error line, nothing on stdout
        code = cli_main(["measurements", "import", str(path), "--backbone", FOREIGN, "--json"])
        out = capsys.readouterr()
        lines = [ln for ln in out.err.strip().splitlines() if ln.strip()]
        assert code == 2 and out.out == "" and len(lines) == 1 and lines[0].startswith("error: "), (what, out)
    assert snapshot(private_cache) == before


def test_a_damaged_measurement_file_is_refused_in_one_line(private_cache, tmp_path, no_models):
    import_prompt(_thunlp_folder(tmp_path), backbone=FOREIGN)
    external.import_measurement(_zero_shot_csv(tmp_path / "x.csv"), "x", FOREIGN)
    path = private_cache / "measurements" / "x.json"
    good = json.loads(path.read_text())
    for damage in ("{oops", json.dumps(good | {"pairs": [{"source": "sst2", "target": "imdb", "score": "high"}]}),
                   json.dumps({k: v for k, v in good.items() if k != "backbone"})):
        path.write_text(damage)
        with pytest.raises(PandaError, match="is damaged") as err:
            validate_indicators(FOREIGN, measure="external:x")
        one_line_error(err.value)
        assert external.list_measurements()[0]["error"].startswith("external measurement 'x' is damaged")


def test_metric_validation_page_offers_external_measurements(private_cache, tmp_path, no_models, monkeypatch):
    """On a backbone that is not installed the page offers only imported numbers,
    labelled external, and shows the indicators' table against them."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PANDA_WARM_UMAP", "0")
    import_prompt(_thunlp_folder(tmp_path), backbone=FOREIGN)
    page = str(Path(__file__).resolve().parent.parent / "pages" / "6_Metric_validation.py")

    def run() -> AppTest:
        at = AppTest.from_file(page, default_timeout=120)
        at.session_state["backbone"], at.session_state["prompt_length"] = FOREIGN, 100
        at.run()
        assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
        return at

    at = run()  # nothing imported yet: no runs can exist on it, say how to get numbers
    assert any("import published numbers" in i.value for i in at.info)
    assert any(e.label.startswith("Import measured transfer") for e in at.expander)

    external.import_measurement(_zero_shot_csv(tmp_path / "su2022.csv"), "su2022", FOREIGN)
    at = run()
    radio = at.radio(key="mv_measure")
    assert radio.options == ["external: su2022 (imported CSV, zero-shot, 25 pairs)"]
    from panda_core.indicators import INDICATORS

    chosen = at.multiselect(key="mv_metrics").value  # only what needs no model: roberta-base is not installed
    assert chosen and not any(INDICATORS.get(m).needs_backbone for m in chosen)
    summary = next(t.value for t in at.table if "indicator" in t.value.columns)
    assert "c_avg" in set(summary["indicator"]) and "on" not in set(summary["indicator"])
    assert (summary["pairs"] == 20).all()
    assert any("**external** numbers, 'su2022' imported from su2022.csv" in c.value for c in at.caption)


def test_an_installed_backbone_offers_runs_and_external_numbers(private_cache, tmp_path, monkeypatch):
    """minilm: the run-based measures first (unchanged), then the imported ones; nothing is trained here."""
    from streamlit.testing.v1 import AppTest

    from panda_core import store
    from panda_core.prompts import SoftPrompt

    monkeypatch.setenv("PANDA_WARM_UMAP", "0")
    tasks = ["imdb_uci", "yelp_uci", "mr"]
    for i, task in enumerate(tasks):
        store.save_prompt(SoftPrompt(tensor=torch.randn(20, 384, generator=torch.Generator().manual_seed(i)),
                                     backbone="minilm", task=task))
    csv = tmp_path / "elsewhere.csv"
    csv.write_text("source,target,score,backbone\n" + "".join(
        f"{s},{t},{0.5 + 0.1 * i + 0.01 * j},minilm\n" for i, s in enumerate(tasks) for j, t in enumerate(tasks)))
    assert external.import_measurement(csv)["name"] == "elsewhere"  # name from the file, backbone from the column
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "pages" / "6_Metric_validation.py"),
                           default_timeout=120)
    at.session_state["mv_measure"] = "zero-shot"
    at.run()
    assert not at.exception and not at.error
    options = at.radio(key="mv_measure").options
    assert options[:3] == [external.label(m) for m in ("zero-shot", "pot-gain", "panda-gain")]
    assert options[3].startswith("external: elsewhere (imported CSV")
    assert any("transfer runs among these tasks" in i.value for i in at.info), [i.value for i in at.info]
