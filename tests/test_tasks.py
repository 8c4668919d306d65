"""The task registry (panda_core.data) on the real offline suite: counts, labels, leakage between
splits, idempotent builds, and user files (good and bad).

The suite is built once per session by prepare() (idempotent: instant when the
set-up step already built it). User-task tests write into a private cache."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from panda_core import data as tasks
from panda_core.data import hub
from panda_core.data.splits import SIZE_RULES, norm
from panda_core.errors import PandaError
from panda_core.paths import tasks_dir

FAMILIES_NEEDED = 4
TASKS_NEEDED = 12


@pytest.fixture(scope="session")
def suite() -> dict[str, dict]:
    result = tasks.prepare()
    return {r["name"]: r for r in result}


@pytest.fixture(scope="session")
def built(suite) -> list[str]:
    names = [n for n, r in suite.items() if "error" not in r]
    if not names:
        pytest.skip("no offline task could be built (no registry access?)")
    return names


def _key(e: tasks.Example) -> tuple[str, str]:
    return (norm(e.text_a), norm(e.text_b))


def test_suite_is_broad(suite, built):
    errors = {n: r["error"] for n, r in suite.items() if "error" in r}
    assert len(built) >= TASKS_NEEDED, f"only {len(built)} tasks built; errors: {errors}"
    families = {suite[n]["family"] for n in built}
    assert len(families) >= FAMILIES_NEEDED, families
    listed = {t["name"]: t for t in tasks.list_tasks()}
    for name in built:
        row = listed[name]
        assert row["available"] and row["source"] == "offline"
        assert (row["n_train"], row["n_dev"], row["n_test"]) == (
            suite[name]["n_train"], suite[name]["n_dev"], suite[name]["n_test"])
    assert set(tasks.available_tasks("sentiment")) >= {"mr", "imdb_uci"} & set(built)


def test_counts_labels_and_leakage(built):
    for name in built:
        spec = tasks.get_task(name)
        assert len(spec.labels) == len(spec.descriptions) == len(spec.verbalizers) >= 2
        assert all(" " not in v for v in spec.verbalizers), (name, spec.verbalizers)
        assert len(set(spec.verbalizers)) == len(spec.verbalizers)
        splits = {s: tasks.load_split(name, s) for s in tasks.SPLITS}
        for s, exs in splits.items():
            assert 0 < len(exs) <= tasks.CAPS[s], (name, s, len(exs))
            assert all(0 <= e.label < len(spec.labels) for e in exs), (name, s)
            assert all(e.text_a and len(e.text_a) <= tasks.MAX_CHARS for e in exs)
            assert all((e.text_b is not None) == spec.pair for e in exs), (name, s)
        assert set(Counter(e.label for e in splits["train"])) == set(range(len(spec.labels))), name
        train = {_key(e) for e in splits["train"]}
        dev = {_key(e) for e in splits["dev"]}
        test = {_key(e) for e in splits["test"]}
        assert not (dev & train) and not (test & train) and not (dev & test), name
        assert len(test) == len(splits["test"]) and len(dev) == len(splits["dev"]), f"{name}: duplicates inside a split"


def test_mr_size(built):
    if "mr" not in built:
        pytest.skip("mr not built")
    total = sum(len(tasks.load_split("mr", s)) for s in tasks.SPLITS)
    meta = json.loads((tasks_dir() / "mr" / "meta.json").read_text())
    assert meta["raw_examples"] == 10605
    assert total == 10605 - meta["duplicates_dropped"] - meta["conflicting_labels_dropped"]
    assert 10400 <= total <= 10605
    assert tasks.get_task("mr").labels == ("negative", "positive")


def test_majority_of_test_counts_the_first_items(built):
    """The baseline every accuracy is shown against: the most common label's
    share among exactly the first n test items (the items a run scored)."""
    from panda_core.data.lookup import majority_of_test

    name = built[0]
    labels = [e.label for e in tasks.load_split(name, "test")]
    for n in (1, 7, len(labels)):
        top = Counter(labels[:n]).most_common(1)[0][1]
        assert majority_of_test(name, n) == round(top / n, 4)
    assert majority_of_test(name, 0) is None


def test_pair_tasks_and_label_orders(built):
    for name in ("vitaminc", "presuppositions", "epistemic"):
        if name in built:
            spec = tasks.get_task(name)
            assert spec.pair and spec.family == "nli"
            assert all(e.text_b for e in tasks.load_split(name, "dev"))
    if "vitaminc" in built:
        assert tasks.get_task("vitaminc").labels == ("entailment", "neutral", "contradiction")
    if "epistemic" in built:
        assert tasks.get_task("epistemic").labels == ("entailment", "non-entailment")
    if "spam_assassin" in built:
        assert tasks.get_task("spam_assassin").labels == ("ham", "spam")


def test_prepare_twice_is_fast_and_stable(built):
    manifest_path = tasks_dir() / "manifest.json"
    before = json.loads(manifest_path.read_text())
    t0 = time.perf_counter()
    tasks.prepare()
    assert time.perf_counter() - t0 < 10
    after = json.loads(manifest_path.read_text())
    for name in built:
        assert after["tasks"][name]["files"] == before["tasks"][name]["files"], name
        assert after["tasks"][name]["archive_sha256"] == before["tasks"][name]["archive_sha256"]


def test_unknowns_and_hub_gate(monkeypatch):
    with pytest.raises(PandaError, match="unknown task 'nope'; known tasks: .*mr"):
        tasks.get_task("nope")
    with pytest.raises(PandaError):
        tasks.load_split("mr", "validation")
    with pytest.raises(PandaError):
        tasks.prepare(["nope"])
    monkeypatch.delenv("PANDA_ALLOW_HUB", raising=False)
    row = {t["name"]: t for t in tasks.list_tasks()}["sst2"]
    assert row["available"] is False and "PANDA_ALLOW_HUB=1" in row["reason"]
    with pytest.raises(PandaError, match="PANDA_ALLOW_HUB=1"):
        tasks.load_split("sst2", "train")
    assert tasks.get_task("mnli").hub["name"] == "mnli" and tasks.get_task("mnli").pair


def test_not_prepared_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PANDA_CACHE", str(tmp_path / "empty"))
    with pytest.raises(PandaError, match=r"task 'mr' is not prepared; run: python -m panda_core data prepare"):
        tasks.load_split("mr", "train")
    row = {t["name"]: t for t in tasks.list_tasks()}["mr"]
    assert row["available"] is False and "not prepared" in row["reason"]


# ------------------------------------------------------------------ user tasks
@pytest.fixture
def user_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PANDA_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _rows(n: int = 60) -> list[dict]:
    words = ["good", "bad", "fine", "awful", "great", "poor"]
    return [{"text": f"review number {i} is {words[i % 6]}", "premise": f"premise {i}",
             "label": "pos" if i % 2 else "neg"} for i in range(n)]


def _check_user(name: str, info: dict, n: int, pair: bool = False) -> None:
    assert info["labels"] == ["neg", "pos"]
    assert info["n_train"] + info["n_dev"] + info["n_test"] == n
    assert info["n_dev"] >= 1 and info["n_test"] >= 1
    spec = tasks.get_task(name)
    assert spec.source == "user" and spec.labels == ("neg", "pos") and spec.pair == pair
    train = tasks.load_split(name, "train")
    assert {e.label for e in train} == {0, 1}
    assert name in tasks.available_tasks("user")
    texts = {e.text_a for s in tasks.SPLITS for e in tasks.load_split(name, s)}
    assert texts == {r["text"] for r in _rows(n)}


def test_user_task_csv_jsonl_parquet(user_cache):
    import pandas as pd

    df = pd.DataFrame(_rows())
    df.to_csv(user_cache / "a.csv", index=False)
    _check_user("my_csv", tasks.add_user_task("my_csv", user_cache / "a.csv"), 60)
    df.to_json(user_cache / "b.jsonl", orient="records", lines=True)
    _check_user("my_jsonl", tasks.add_user_task("my_jsonl", user_cache / "b.jsonl", text_b_col="premise"), 60,
                pair=True)
    df.to_parquet(user_cache / "c.parquet")
    _check_user("my_parquet", tasks.add_user_task("my_parquet", str(user_cache / "c.parquet")), 60)
    # integer labels with names given
    df.assign(label=[int(x == "pos") for x in df["label"]]).to_csv(user_cache / "d.csv", index=False)
    info = tasks.add_user_task("my_ints", user_cache / "d.csv", label_names=["neg", "pos"])
    _check_user("my_ints", info, 60)
    listed = {t["name"]: t for t in tasks.list_tasks()}
    assert listed["my_csv"]["source"] == "user" and listed["my_csv"]["available"]


def test_bad_user_files(user_cache):
    import pandas as pd

    d = user_cache
    pd.DataFrame(_rows()).to_csv(d / "ok.csv", index=False)
    (d / "empty.csv").write_text("")
    (d / "header.csv").write_text("text,label\n")
    pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": ["a"] * 30}).to_csv(d / "one.csv", index=False)
    (d / "latin1.csv").write_bytes("text,label\ncaf\xe9 cr\xe8me,a\nna\xefve,b\n".encode("latin-1"))
    (d / "broken.parquet").write_bytes(b"not a parquet file")
    (d / "bad.jsonl").write_text('{"text": "a", "label": 1}\n{oops\n')
    (d / "file.xlsx").write_text("x")
    big = d / "big.csv"
    with open(big, "wb") as fh:
        fh.truncate(51 * 1024 * 1024)
    many = d / "many.csv"
    many.write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(200_001)))
    cases = [
        ("t_missing", d / "ok.csv", {"text_col": "sentence"}, "columns found: text, premise, label"),
        ("t_empty", d / "empty.csv", {}, "empty"),
        ("t_header", d / "header.csv", {}, "no examples"),
        ("t_one", d / "one.csv", {}, "only one class"),
        ("t_enc", d / "latin1.csv", {}, "not UTF-8"),
        ("t_parquet", d / "broken.parquet", {}, "cannot read"),
        ("t_jsonl", d / "bad.jsonl", {}, "cannot read"),
        ("t_xlsx", d / "file.xlsx", {}, "unsupported file type"),
        ("t_big", big, {}, "limit is 50 MB"),
        ("t_many", many, {}, "more than 200000 rows"),
        ("t_names", d / "ok.csv", {"label_names": ["neg", "positive"]}, "unknown label names"),
        ("t_nofile", d / "absent.csv", {}, "file not found"),
        ("Bad-Name", d / "ok.csv", {}, "invalid"),
        ("mr", d / "ok.csv", {}, "built-in"),
    ]
    for name, path, kwargs, message in cases:
        with pytest.raises(PandaError, match=message):
            tasks.add_user_task(name, path, **kwargs)
        assert "\n" not in message
    assert not (tasks_dir() / "user_tasks.json").exists()


def test_hub_loading_path_with_fake_datasets(monkeypatch):
    """The online path, exercised without the network: a fake load_dataset."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(path, name=None, split=None):
        calls.append((path, name, split))
        n = 1200 if split == "train" else 30
        return [{"premise": f"{split} premise {i}", "hypothesis": f"hyp {i}", "label": (i % 3) if i % 10 else -1}
                for i in range(n)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setenv("PANDA_ALLOW_HUB", "1")
    assert {t["name"]: t for t in tasks.list_tasks()}["snli"]["available"] is True
    hub._CACHE.pop(("hub:mnli", "train"), None)
    train = tasks.load_split("mnli", "train")
    dev = tasks.load_split("mnli", "dev")
    test = tasks.load_split("mnli", "test")
    assert [c[2] for c in calls] == ["train", "validation_matched"]  # dev carved from train
    assert len(dev) == 108 and len(train) == 1080 - 108 and len(test) == 27  # label -1 dropped
    assert all(e.text_b for e in train) and {e.label for e in train} == {0, 1, 2}
    assert not {(e.text_a, e.text_b) for e in dev} & {(e.text_a, e.text_b) for e in train}
    for split in tasks.SPLITS:
        hub._CACHE.pop(("hub:mnli", split), None)


# ------------------------------------------------------------------ the smallest task
def _snapshot(root: Path) -> dict[str, str]:
    """Every path below root with the sha256 of each file ("dir" for folders)."""
    import hashlib

    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def _write(path: Path, rows: list[dict]) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_too_small_to_split_is_refused_before_anything_is_written(user_cache):
    tasks.add_user_task("ok_task", _write(user_cache / "ok.csv", _rows(40)))  # a cache with content
    root = user_cache / "cache"
    before = _snapshot(root)
    assert before
    tiny = _write(user_cache / "tiny.csv", _rows(6))
    with pytest.raises(PandaError) as err:
        tasks.add_user_task("tiny", tiny)
    message = str(err.value)
    assert "\n" not in message
    assert message == ("tiny.csv is too small to split: 6 distinct examples would give 4 train / 1 dev / 1 test; "
                       f"a task needs at least {SIZE_RULES.min_examples} distinct examples and "
                       f"{SIZE_RULES.min_eval} in each of dev and test")
    assert _snapshot(root) == before
    # duplicates count against the size, and the message says so
    dup = _write(user_cache / "dup.csv", _rows(15) + _rows(15))
    with pytest.raises(PandaError, match=r"15 distinct examples after dropping 15 duplicates .* would give "
                                         r"\d+ train / \d+ dev / \d+ test"):
        tasks.add_user_task("dup", dup)
    # a label with a single example cannot be learnt
    rare = _write(user_cache / "rare.csv", _rows(60) + [{"text": "the only odd one", "premise": "p", "label": "odd"}])
    with pytest.raises(PandaError, match=r"label 'odd' of rare.csv has 1 training examples \(\d+ train / \d+ dev / "
                                         r"\d+ test in all\); each label needs at least 2"):
        tasks.add_user_task("rare", rare)
    assert _snapshot(root) == before
    assert set(tasks.available_tasks("user")) == {"ok_task"}


def test_small_splits_are_accepted_with_warnings(user_cache):
    info = tasks.add_user_task("small", _write(user_cache / "small.csv", _rows(60)))
    assert (info["n_train"], info["n_dev"], info["n_test"]) == (48, 6, 6)
    assert len(info["warnings"]) == 1 and info["warnings"][0].startswith(
        "only 6 test examples (48 train / 6 dev / 6 test): test accuracy moves in steps of 16.7 points")
    info = tasks.add_user_task("smallest", _write(user_cache / "twenty.csv", _rows(SIZE_RULES.min_examples)))
    assert info["n_dev"] == info["n_test"] == SIZE_RULES.min_eval
    big = tasks.add_user_task("big_enough", _write(user_cache / "big.csv", _rows(1000)))
    assert big["n_test"] == SIZE_RULES.warn_test_below and big["warnings"] == []


def test_task_sources_registry():
    from panda_core.data import TASK_SOURCES, TaskSource, task_sources

    assert [s.name for s in task_sources()] == ["offline", "hub", "user"]
    assert all(isinstance(s, TaskSource) for s in TASK_SOURCES)
    assert TASK_SOURCES.get("hub").handles("sst2") and not TASK_SOURCES.get("offline").handles("sst2")
    for name in ("mr", "sst2"):
        spec = tasks.get_task(name)
        assert TASK_SOURCES.get(spec.source).handles(name)
    with pytest.raises(PandaError, match="unknown task source 'nope'"):
        TASK_SOURCES.get("nope")
