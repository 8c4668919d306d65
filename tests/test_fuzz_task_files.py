"""Property-based tests (hypothesis) of every loader of user task files:
CSV, TSV, JSONL, JSON, parquet and gzip. For every generated table the loader
either builds a task correctly (labels in range, splits non-empty) or raises
PandaError with a one-line message - never another exception.

Example counts are set so the module runs in about a minute; raise them with
PANDA_FUZZ_SCALE (e.g. 10) for a longer hunt."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability_helpers import fuzz_settings, json_values, one_line_error, record

from panda_core import data as tasks
from panda_core.data.tables import read_table
from panda_core.errors import PandaError

JSON_VALUES = json_values()
COUNTS = {"task_files": 0, "task_loaded": 0, "table_reads": 0}


def _record(before: dict) -> None:
    """Counts of this test only (COUNTS accumulates over the module)."""
    delta = {k: COUNTS[k] - before.get(k, 0) for k in COUNTS}
    record("fuzz", prompt_files=0, prompt_loaded=0, task_files=delta["task_files"] + delta["table_reads"],
           task_loaded=delta["task_loaded"])


cells = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(["pos", "neg", "0", "1", "2", "", " ", "NaN", "null", "1.0", "-1", "True", "caf\u00e9"]),
    st.integers(-3, 3).map(str),
)
COLUMNS = ["text", "label", "premise", "id", "x", "Text", ""]


@st.composite
def table(draw) -> tuple[list[str], list[list]]:
    """Half clean tables (text + label + maybe more columns, enough distinct
    rows: they must load), half anything."""
    if draw(st.booleans()):
        cols = ["text", "label"] + draw(st.lists(st.sampled_from(["premise", "id", "x"]), max_size=2, unique=True))
        cols = draw(st.permutations(cols))
        n = draw(st.integers(20, 60))
        labels = draw(st.sampled_from([["pos", "neg"], ["0", "1"], ["a", "b", "c"], ["-1", "1"]]))
        stem = draw(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=15))
        rows = []
        for i in range(n):
            row = []
            for c in cols:
                if c == "text":
                    row.append(f"example {i} {stem}")
                elif c == "label":
                    row.append(labels[i % len(labels)])
                elif c == "id":
                    row.append(str(i))
                else:
                    row.append(f"second {i} {draw(cells)}")
            rows.append(row)
        return cols, rows
    cols = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=4))
    n = draw(st.integers(0, 60))
    base = draw(st.lists(cells, min_size=len(cols), max_size=len(cols)))
    rows = []
    for i in range(n):
        row = []
        for j, c in enumerate(cols):
            if c == "text" and draw(st.integers(0, 3)):
                row.append(f"example {i} {base[j]}")  # mostly distinct texts, so some files load
            elif c == "label" and draw(st.integers(0, 3)):
                row.append(draw(st.sampled_from(["pos", "neg", "0", "1"])))
            elif c == "id" and draw(st.booleans()):
                row.append(str(i))
            else:
                row.append(draw(cells))
        rows.append(row)
    return cols, rows


def _csv_bytes(cols, rows, sep: str, encoding: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=sep)
    w.writerow(cols)
    w.writerows(rows)
    return buf.getvalue().encode(encoding, "surrogatepass" if encoding.startswith("utf-8") else "replace")


@st.composite
def task_file(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["csv", "tsv", "jsonl", "json", "parquet", "csv.gz", "junk"]))
    cols, rows = draw(table())
    if kind in ("csv", "tsv", "csv.gz"):
        enc = draw(st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "latin-1", "utf-16"]))
        data = _csv_bytes(cols, rows, "\t" if kind == "tsv" else ",", enc)
        if kind == "csv.gz":
            import gzip

            data = gzip.compress(data)
        return kind, data
    if kind == "jsonl":
        lines = []
        for row in rows:
            if draw(st.integers(0, 19)) == 0:
                lines.append(json.dumps(draw(JSON_VALUES)))
            else:
                obj = dict(zip(cols, row, strict=True))
                if draw(st.integers(0, 19)) == 0 and "label" in obj:
                    obj["label"] = draw(JSON_VALUES)
                lines.append(json.dumps(obj))
        if draw(st.integers(0, 9)) == 0:
            lines.append("{broken")
        return kind, "\n".join(lines).encode()
    if kind == "json":
        if draw(st.booleans()):
            return kind, json.dumps([dict(zip(cols, r, strict=True)) for r in rows]).encode()
        return kind, json.dumps(draw(JSON_VALUES)).encode()
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = list(dict.fromkeys(cols))
        arrays = {}
        for j, c in enumerate(names):
            values = [r[j] for r in rows]
            typ = draw(st.sampled_from(["str"] * 4 + ["int", "float", "bytes", "null"]))
            if typ == "int":
                values = [draw(st.integers(-2, 2)) if draw(st.integers(0, 5)) else None for _ in rows]
            elif typ == "float":
                values = [draw(st.floats(allow_nan=True, allow_infinity=True)) for _ in rows]
            elif typ == "bytes":
                values = [draw(st.binary(max_size=10)) for _ in rows]
            elif typ == "null":
                values = [None for _ in rows]
            else:
                values = [v.encode("utf-8", "replace").decode("utf-8") for v in values]
            arrays[c or "col"] = values
        buf = io.BytesIO()
        try:
            pq.write_table(pa.table(arrays), buf)
        except (pa.ArrowException, ValueError, TypeError):
            return "parquet", draw(st.binary(max_size=300))
        return kind, buf.getvalue()
    suffix = draw(st.sampled_from(["csv", "jsonl", "parquet", "json", "tsv"]))
    return suffix, draw(st.binary(max_size=400))


def test_task_file_loader_never_raises_anything_but_panda_error(private_cache, tmp_path):
    @fuzz_settings(700)
    @given(task_file(), st.sampled_from(["text"] * 6 + ["Text", "premise", "x"]),
           st.sampled_from(["label"] * 6 + ["id", "x"]), st.sampled_from([None] * 4 + ["premise"]),
           st.sampled_from([None] * 6 + [["neg", "pos"], ["a"], ["pos", "pos"], ["a", "b", "c"]]))
    def check(file, text_col, label_col, text_b_col, label_names) -> None:
        kind, data = file
        COUNTS["task_files"] += 1
        path = tmp_path / f"fuzz.{kind}"
        path.write_bytes(data)
        try:
            out = tasks.add_user_task("fuzz_task", path, text_col=text_col, label_col=label_col,
                                      text_b_col=text_b_col, label_names=label_names)
        except PandaError as err:
            one_line_error(err)
            return
        COUNTS["task_loaded"] += 1
        spec = tasks.get_task("fuzz_task")
        assert out["labels"] == list(spec.labels) and len(spec.labels) >= 2
        for split in tasks.SPLITS:
            examples = tasks.load_split("fuzz_task", split)
            assert len(examples) == out[f"n_{split}"] > 0
            assert all(0 <= e.label < len(spec.labels) and e.text_a for e in examples)
            assert all((e.text_b is not None) == bool(text_b_col) for e in examples)

    before = dict(COUNTS)
    check()
    _record(before)


def test_table_reader_never_raises_anything_but_panda_error(tmp_path):
    """The raw reader on pure junk and on each format with damage."""

    @fuzz_settings(500)
    @given(task_file(), st.sampled_from(["csv", "tsv", "jsonl", "json", "parquet", "csv.gz", "txt", "xlsx", ""]),
           st.booleans())
    def check(file, suffix, damage) -> None:
        kind, data = file
        COUNTS["table_reads"] += 1
        if damage and data:
            data = data[: len(data) // 2] + b"\x00\xff" + data[len(data) // 2:]
        path = tmp_path / (f"t.{suffix}" if suffix else "t")
        path.write_bytes(data)
        try:
            df = read_table(path)
        except PandaError as err:
            one_line_error(err)
            return
        assert len(set(map(str, df.columns))) == len(df.columns)

    before = dict(COUNTS)
    check()
    _record(before)


def test_generated_inputs_reach_both_outcomes():
    """Guards the generators: they must produce loadable tables, not only junk
    (runs after the property tests in file order)."""
    print(f"\nfuzz inputs: {COUNTS}")
    if COUNTS["task_files"] == 0:
        pytest.skip("run with the property tests above")
    assert COUNTS["task_loaded"] > 0, COUNTS
