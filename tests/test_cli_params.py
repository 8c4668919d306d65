"""Validation at the boundary, property-based: generated parameter sets for
train, transfer, similarity, project and sweep (valid ones, ones with one bad
value, and chaos: negative / zero / huge / NaN / inf numbers, unknown names,
empty strings, control characters, a source equal to the target, odd layer
windows) driven through the CLI in-process with ``--check --json``.

For every set: exit 0 with a JSON plan, or exit 2 with exactly one stderr
line starting ``error: ``; no exception other than the project's own error
(main turns that into the exit 2); and the private cache - every file's
bytes, the SQLite database included - identical before and after.

Plus: the issue's examples through a real process (exit 2, one line, fast,
cache unchanged), and registry entries added at run time appearing in the
parser's choices. Example counts: PANDA_FUZZ_SCALE (1 = at least 2,000 sets).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import REPO, child_env, record

from panda_core.cli import build_parser, main

SCALE = float(os.environ.get("PANDA_FUZZ_SCALE", "1"))
COUNTS: Counter = Counter()  # sets per command, and outcomes
BUDGET = {"train": 450, "transfer": 550, "similarity": 350, "project": 300, "sweep": 350}  # 2,000 at scale 1
WITH_PROMPTS = {"minilm": ("mr", "yelp_uci", "bbc", "amazon_uci"), "mpnet": ("mr", "bbc")}
HIDDEN = {"minilm": 384, "mpnet": 768}
LENGTHS = (4, 20)


def _settings(n: int):
    return settings(max_examples=max(10, int(n * SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)


# ------------------------------------------------------------------ the cache
def snapshot(cache: Path) -> dict[str, str]:
    """Every folder and file under the cache (symlinked shared data not followed),
    files with their SHA-256: the database and its WAL files included."""
    out = {}
    for root, dirs, names in os.walk(cache, followlinks=False):
        for d in dirs:
            out[str((Path(root) / d).relative_to(cache)) + "/"] = "link" if (Path(root) / d).is_symlink() else "dir"
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        for n in names:
            p = Path(root) / n
            out[str(p.relative_to(cache))] = "link" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def cache(private_cache, monkeypatch) -> Path:
    """A private cache with PT prompts of a few tasks (both lengths) on minilm and mpnet."""
    import torch

    from panda_core import store
    from panda_core.prompts import SoftPrompt

    monkeypatch.delenv("PANDA_ALLOW_HUB", raising=False)
    for bb, tasks in WITH_PROMPTS.items():
        for task in tasks:
            for length in LENGTHS:
                store.save_prompt(SoftPrompt(tensor=torch.randn(length, HIDDEN[bb]), backbone=bb, task=task))
    assert (private_cache / "runs.sqlite").exists()
    return private_cache


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def check_set(command: str, argv: list[str], cache: Path) -> None:
    """One generated set: exit 0 + plan or exit 2 + one `error:` line; cache unchanged."""
    before = snapshot(cache)
    code, out, err = run_cli([command, *argv, "--check", "--json"])  # any other exception fails the test
    COUNTS[command] += 1
    assert code in (0, 2), (argv, code, err)
    if code == 0:
        plan = json.loads(out)
        assert plan["check"] == "ok" and plan["command"] == command and "error:" not in err, (argv, err)
        COUNTS["accepted"] += 1
    else:
        lines = err.splitlines()
        assert out == "" and len(lines) == 1 and lines[0].startswith("error: "), (argv, out, err)
        assert "Traceback" not in err
        COUNTS["refused"] += 1
    assert snapshot(cache) == before, (command, argv)


# ------------------------------------------------------------- the generators
def _text(min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(min_size=min_size, max_size=40)


BAD_NAMES = st.sampled_from(["", " ", "nope", "MR", "mr ", "a\nb", "a\x00b", "../x", "x" * 300, "-h", "a,b", "~nobody/x",
                             "\u2028", "mr\x1c"]) | _text()
INTS_BAD = st.sampled_from(["0", "-1", "-5", "nan", "inf", "1.5", "", "x", "1e3", str(2**64), str(-2**63)]) \
    | st.integers(-10**20, 10**20).map(str)
FLOATS_BAD = st.sampled_from(["0", "-1", "-1e-9", "nan", "-inf", "inf", "1e309", "", "x"]) \
    | st.floats(allow_nan=True, allow_infinity=True).map(str)
LAYERS_BAD = st.sampled_from(["3:1", "2:2", "1:30", "-1:2", "a:b", "1:", ":", "1:2:3", "", "1", " : "]) | _text()


def _methods() -> list[str]:
    from panda_core.transfer import METHODS

    return METHODS.names()


def _metrics() -> list[str]:
    from panda_core.indicators import INDICATORS

    return INDICATORS.names()


@st.composite
def param_sets(draw, valid: dict, bad: dict) -> list[str]:
    """argv for one set: every knob valid ("valid"), one knob bad ("one"), or each a coin toss ("chaos");
    a knob may be left out (its default). `valid`/`bad`: flag -> strategy of a value (str or list)."""
    mode = draw(st.sampled_from(["valid", "valid", "one", "one", "chaos"]))
    wrong = draw(st.sampled_from(sorted(bad))) if mode == "one" else None
    argv: list[str] = []
    for flag in valid:
        required = flag.endswith("!")
        name = flag.rstrip("!")
        if not required and draw(st.integers(0, 3)) == 0:
            continue  # left out: its default
        if required and mode == "chaos" and draw(st.integers(0, 19)) == 0:
            continue  # a required one left out: a usage error
        use_bad = name == wrong or (mode == "chaos" and name in bad and draw(st.booleans()))
        value = draw(bad[name] if use_bad else valid[flag])
        if isinstance(value, list):
            argv += [f"--{name}", *[v if not v.startswith("-") else f"x{v}" for v in value]] if value else []
        elif value is not None:
            argv.append(f"--{name}={value}")
    return argv


def _ints(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(str)


def _floats(lo: float, hi: float) -> st.SearchStrategy[str]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(repr)


def _tasks(with_prompts: bool = True) -> st.SearchStrategy[str]:
    return st.sampled_from(WITH_PROMPTS["minilm"] if with_prompts else ("mr", "tweets", "r8", "bbc"))


TRAIN_KNOBS = {
    "steps": _ints(1, 500), "prompt-len": st.sampled_from(["4", "20", "1", "512"]), "seed": _ints(0, 2**63 - 1),
    "lr": _floats(1e-6, 1.0), "batch-size": _ints(1, 64), "eval-every": _ints(1, 100),
    "train-limit": _ints(1, 10**6), "dev-limit": _ints(1, 10**6), "test-limit": _ints(1, 10**6),
}
TRAIN_BAD = {k: INTS_BAD for k in TRAIN_KNOBS} | {"lr": FLOATS_BAD}
BACKBONES = st.sampled_from(["minilm", "MiniLM", " minilm", "mpnet", "smollm2", "tiny-mlm"])
BACKBONES_BAD = st.sampled_from(["nope", "org/model", "/tmp", "", "..", "~nobody/x", "a" * 5000, "a b"]) | BAD_NAMES


def train_sets():
    return param_sets({"task!": _tasks(False), "backbone": BACKBONES, **TRAIN_KNOBS},
                      {"task": st.sampled_from(["sst2", "nope"]) | BAD_NAMES, "backbone": BACKBONES_BAD, **TRAIN_BAD})


def transfer_sets():
    pairs = {"source!": st.sampled_from([*WITH_PROMPTS["minilm"], "mr,bbc", "bbc,yelp_uci,mr"]),
             "target!": _tasks(False), "method!": st.sampled_from(_methods())}
    knobs = {"backbone": st.just("minilm"), **TRAIN_KNOBS, "prompt-len": st.sampled_from(["4", "20"]),
             "lambda-max": _floats(0, 10), "fixed-lambda": _floats(0, 1),
             "kd-form": st.sampled_from(["scaled", "code"]), "teacher": st.sampled_from(["pot", "source"]),
             "student-init": st.sampled_from(["source", "random"])}
    bad = {"source": st.sampled_from([None, "mr,", "mr,mr", ",", "mr,,bbc", "nope"]) | BAD_NAMES,
           "target": st.sampled_from(["mr", "sst2", "nope"]) | BAD_NAMES, "method": BAD_NAMES,
           "backbone": BACKBONES_BAD, **TRAIN_BAD, "lambda-max": FLOATS_BAD, "fixed-lambda": FLOATS_BAD,
           "kd-form": BAD_NAMES, "teacher": BAD_NAMES, "student-init": BAD_NAMES}
    return param_sets(pairs | knobs, bad)


def similarity_sets():
    tasks = st.lists(_tasks(), min_size=2, max_size=4, unique=True)
    valid = {"metric!": st.sampled_from(_metrics()), "backbone": st.just("minilm"), "tasks": tasks,
             "prompt-len": st.sampled_from(["4", "20"]), "layers": st.sampled_from(["0:6", "2:4", "5:6", None]),
             "n-inputs": _ints(1, 10**6)}
    bad = {"metric": BAD_NAMES, "backbone": BACKBONES_BAD, "prompt-len": INTS_BAD, "layers": LAYERS_BAD,
           "n-inputs": INTS_BAD, "tasks": st.lists(st.sampled_from(["mr", "nope", "tweets", "", "sst2"]), max_size=3)}
    return param_sets(valid, bad)


def project_sets():
    valid = {"source-backbone": st.just("minilm"), "target-backbone!": st.sampled_from(["mpnet", "minilm", "smollm2"]),
             "train-task!": st.sampled_from(["mr", "bbc"]), "method": st.sampled_from(["task", "distance"]),
             "eval-tasks": st.lists(_tasks(), max_size=3, unique=True), "steps": _ints(1, 1000),
             "prompt-len": st.sampled_from(["4", "20"]), "seed": _ints(0, 1000)}
    bad = {"source-backbone": BACKBONES_BAD, "target-backbone": BACKBONES_BAD, "train-task": BAD_NAMES,
           "method": BAD_NAMES, "eval-tasks": st.lists(st.sampled_from(["mr", "mr", "nope", ""]), max_size=3),
           "steps": INTS_BAD, "prompt-len": INTS_BAD, "seed": INTS_BAD}
    return param_sets(valid, bad)


def sweep_sets():
    names = st.lists(_tasks(False), min_size=1, max_size=3, unique=True)
    valid = {"sources!": names, "targets!": names, "methods": st.lists(st.sampled_from(_methods()), min_size=1,
                                                                          max_size=3, unique=True),
             "backbone": st.just("minilm"), "executor": st.sampled_from(["local", "ray"]), "workers": _ints(1, 8),
             "steps": _ints(1, 500), "prompt-len": st.sampled_from(["4", "20"]), "seed": _ints(0, 100),
             "eval-every": _ints(1, 100), "train-limit": _ints(1, 10**6)}
    bad = {"sources": st.lists(st.sampled_from(["mr", "mr", "nope", "sst2"]), min_size=1, max_size=3),
           "targets": st.lists(st.sampled_from(["mr", "mr", "nope", "sst2"]), min_size=1, max_size=3),
           "methods": st.lists(st.sampled_from(["pot", "pot", "nope"]), min_size=1, max_size=3),
           "backbone": BACKBONES_BAD, "executor": BAD_NAMES, "workers": INTS_BAD, "steps": INTS_BAD,
           "prompt-len": INTS_BAD, "seed": INTS_BAD, "eval-every": INTS_BAD, "train-limit": INTS_BAD}
    return param_sets(valid, bad)


SETS = {"train": train_sets, "transfer": transfer_sets, "similarity": similarity_sets, "project": project_sets,
        "sweep": sweep_sets}


# ------------------------------------------------------------------ the suites
@pytest.mark.parametrize("command", list(SETS))
def test_generated_parameter_sets_are_planned_or_refused_in_one_line(command, cache):
    @_settings(BUDGET[command])
    @given(SETS[command]())
    def check(argv: list[str]) -> None:
        check_set(command, argv, cache)

    check()


def test_generated_sets_count_and_record():
    """Runs after the five suites (file order): at least 2,000 sets at scale 1, both outcomes seen."""
    if any(COUNTS[c] == 0 for c in SETS):
        pytest.skip("needs the five generated suites of this module in the same session")
    total = sum(COUNTS[c] for c in SETS)
    record("parameters", sets=total, accepted=COUNTS["accepted"], refused=COUNTS["refused"], exceptions=0,
           cache_changes=0, **{f"sets_{c}": COUNTS[c] for c in SETS})
    print(f"\ngenerated parameter sets: {total} ({dict(COUNTS)})")
    assert total >= sum(max(10, int(n * SCALE)) for n in BUDGET.values()) and total >= min(2000, 2000 * SCALE)
    assert COUNTS["accepted"] > 0 and COUNTS["refused"] > 0


def test_check_on_an_empty_cache_refuses_what_needs_prompts_and_creates_nothing(private_cache, monkeypatch):
    """No run registry yet: a --check never creates it, whatever it plans or refuses."""
    monkeypatch.delenv("PANDA_ALLOW_HUB", raising=False)
    cases = [["train", "--task", "mr"], ["transfer", "--target", "mr", "--method", "pt"],
             ["transfer", "--source", "bbc", "--target", "mr", "--method", "pot"],
             ["similarity", "--metric", "e_avg"], ["project", "--target-backbone", "mpnet", "--train-task", "mr"],
             ["sweep", "--sources", "mr", "--targets", "bbc"]]
    for argv in cases:
        check_set(argv[0], argv[1:], private_cache)
    assert not (private_cache / "runs.sqlite").exists()


# --------------------------------------------------- the issue, in a real process
ISSUE_EXAMPLES = [  # (argv, the registry module a refusal needs: it must import without torch to be fast)
    (["train", "--task", "mr", "--steps", "-5"], None),
    (["train", "--task", "mr", "--prompt-len", "0"], None),
    (["train", "--task", "mr", "--lr", "0"], None),
    (["train", "--task", "mr", "--lr", "-0.1"], None),
    (["train", "--task", "mr", "--batch-size", "0"], None),
    (["train", "--task", "mr", "--train-limit", "0"], None),
    (["train", "--task", "no_such_task"], None),
    (["train", "--task", "mr", "--steps", "x"], None),
    (["sweep", "--sources", "mr", "--targets", "bbc", "--workers", "0"], None),
    (["transfer", "--source", "mr", "--target", "mr", "--method", "panda"], "panda_core.transfer"),
    (["transfer", "--source", "mr", "--target", "bbc", "--method", "panda", "--lambda-max", "-1"],
     "panda_core.transfer"),
    (["transfer", "--source", "mr", "--target", "bbc", "--method", "no_such_method"], "panda_core.transfer"),
    (["train", "--task", "mr", "--backbone", "no_such_backbone"], "panda_core.backbones"),
    (["similarity", "--metric", "no_such_indicator"], "panda_core.indicators"),
]
_TORCH_FREE: dict[str, bool] = {}


def _imports_without_torch(module: str) -> bool:
    if module not in _TORCH_FREE:
        code = f"import sys, {module}; print('torch' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
        _TORCH_FREE[module] = out.stdout.strip() == "False"
    return _TORCH_FREE[module]


@pytest.mark.parametrize("argv, registry", ISSUE_EXAMPLES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_issue_examples_are_refused_fast_in_one_line_with_the_cache_unchanged(argv, registry, private_cache):
    before = snapshot(private_cache)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "panda_core", *argv, "--json"], capture_output=True, text=True,
                          env=child_env(private_cache), cwd=REPO, timeout=300)
    seconds = time.perf_counter() - t0
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert snapshot(private_cache) == before
    print(f"{' '.join(argv)}: {seconds:.2f} s")
    record("refusal", argv=" ".join(argv), seconds=seconds)
    if registry:
        assert _imports_without_torch(registry), f"importing {registry} loads torch (2-3 s of CPU)"
    assert seconds < 5, f"{seconds:.1f} s"  # the budget is 2 s; 5 s keeps the test robust on a loaded machine


def test_building_the_parser_and_refusing_a_number_import_no_torch():
    code = ("import sys; from panda_core.cli import main; "
            "main(['train', '--task', 'mr', '--steps', '-5']); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.stdout.strip() == "False", out.stderr


# ----------------------------------------------------- choices from the registries
def _action(parser: argparse.ArgumentParser, command: str, flag: str) -> argparse.Action:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings)


def test_choices_are_the_registries():
    from panda_core.crossmodel import ProjectorMethod
    from panda_core.indicators import INDICATORS
    from panda_core.transfer import METHODS, KdForm, StudentInit, Teacher

    p = build_parser()
    assert list(_action(p, "transfer", "--method").choices) == METHODS.names()
    assert list(_action(p, "sweep", "--methods").choices) == METHODS.names()
    assert list(_action(p, "similarity", "--metric").choices) == INDICATORS.names()
    assert list(_action(p, "project", "--method").choices) == [m.value for m in ProjectorMethod]
    for flag, enum in (("--kd-form", KdForm), ("--teacher", Teacher), ("--student-init", StudentInit)):
        assert list(_action(p, "transfer", flag).choices) == [m.value for m in enum]


def test_a_method_and_an_indicator_registered_at_run_time_appear_in_the_cli(cache):
    """A new entry needs no CLI edit: it is offered, listed in --help, and planned."""
    from panda_core.indicators import INDICATORS, Indicator
    from panda_core.transfer import METHODS, Sources, TransferMethod

    class Throwaway(TransferMethod):
        name, label, help, sources, needs = "throwaway-method", "Throwaway", "a test method", Sources.NONE, ()

    class ThrowawayIndicator(Indicator):
        name, label = "throwaway_indicator", "Throwaway indicator"

    METHODS.register(Throwaway())
    INDICATORS.register(ThrowawayIndicator())
    try:
        p = build_parser()
        assert "throwaway-method" in _action(p, "transfer", "--method").choices
        assert "throwaway-method" in _action(p, "sweep", "--methods").choices
        assert "throwaway_indicator" in _action(p, "similarity", "--metric").choices
        code, out, err = run_cli(["transfer", "--target", "mr", "--method", "throwaway-method", "--check", "--json"])
        assert code == 0 and json.loads(out)["method"] == "throwaway-method", err
        code, out, err = run_cli(["similarity", "--metric", "throwaway_indicator", "--check", "--json"])
        assert code == 0 and json.loads(out)["label"] == "Throwaway indicator", err
        code, out, _ = run_cli(["transfer", "--help"])
        assert code == 0 and "throwaway-method" in out
    finally:
        METHODS._entries.pop("throwaway-method", None)
        INDICATORS._entries.pop("throwaway_indicator", None)
    assert "throwaway-method" not in _action(build_parser(), "transfer", "--method").choices
    code, _, err = run_cli(["transfer", "--target", "mr", "--method", "throwaway-method", "--check"])
    assert code == 2 and err.startswith("error: unknown transfer method 'throwaway-method'")
