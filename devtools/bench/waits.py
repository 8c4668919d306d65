"""What a user waits for, end to end, rather than one step or one pass:

- `pt_to_accuracy`: wall seconds of MR prompt tuning until the dev accuracy
  first reaches a threshold, ours (`training.train` with its default
  random batches)
  against the way a user would otherwise do it: PEFT's PromptTuningConfig
  trained by `transformers.Trainer`;
- `click_to_result`: a PANDA transfer at the Transfer page's default
  settings, from the call to its result, split into the PoT teacher run, the
  PANDA metric, training and the test evaluation (no peer: it says where the
  wait goes);
- `page_render`: the Similarity (every indicator), Clusters (UMAP) and
  Transfer pages rendered headless (AppTest), first with empty caches and
  again with every indicator cached.

The last two write prompts and runs, so they run in a throw-away cache
(`private_cache`) that shares the project's models and prepared tasks.
"""

from __future__ import annotations

import ast
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import torch

from panda_core.errors import PandaError
from panda_core.paths import REPO_ROOT

from .harness import BENCH_TASKS, BenchConfig, Case, Log, PeakRSS, available, interleaved, median, rounded
from .steps import TRAINER_DIFFERENCES, trainer_curve


@contextlib.contextmanager
def private_cache() -> Iterator[Path]:
    """A throw-away PANDA_CACHE for the block: the project's models and
    downloads linked, each prepared task linked and the task files copied
    (user_tasks.json left out, as tests/conftest.py's `link_project_data`), so
    nothing the block writes reaches the project's cache. Restored after."""
    from panda_core.paths import cache_dir

    project = cache_dir()
    before = os.environ.get("PANDA_CACHE")
    with tempfile.TemporaryDirectory(prefix="panda-bench-") as tmp:
        root = Path(tmp) / "cache"
        (root / "tasks").mkdir(parents=True)
        for name in ("models", "downloads"):
            if (project / name).exists():
                (root / name).symlink_to(project / name, target_is_directory=True)
        if (project / "tasks").exists():
            for item in (project / "tasks").iterdir():
                if item.is_dir():
                    (root / "tasks" / item.name).symlink_to(item, target_is_directory=True)
                elif item.is_file() and item.name != "user_tasks.json" and not item.name.startswith("."):
                    shutil.copy(item, root / "tasks" / item.name)
        os.environ["PANDA_CACHE"] = str(root)
        try:
            yield root
        finally:
            if before is None:
                os.environ.pop("PANDA_CACHE", None)
            else:
                os.environ["PANDA_CACHE"] = before


@contextlib.contextmanager
def patched(owner, name: str, value) -> Iterator[None]:
    """`owner.name = value` for the block (a module's lazy name is removed again after)."""
    had, old = name in vars(owner), vars(owner).get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if had:
            setattr(owner, name, old)
        else:
            delattr(owner, name)


# ------------------------------------------------------------------ pt_to_accuracy
class _Reached(Exception):
    """Raised from `on_eval` the moment the dev accuracy reaches the threshold: the run ends there."""


def _outcome(curve: list[tuple[int, float, float]], threshold: float) -> dict:
    """The first evaluation after training started that reached `threshold`, else the last one."""
    hit = next((c for c in curve if c[0] >= 1 and c[1] >= threshold), None)
    step, acc, seconds = hit or curve[-1]
    return {"reached": hit is not None, "step": step, "dev_acc": acc, "seconds": seconds,
            "curve": [list(c) for c in curve]}


def ours_to_accuracy(bb, task: str, tc, init: torch.Tensor, threshold: float) -> dict:
    """Ours: `training.train` as a user's run calls it (no checkpoints: nothing
    is written), stopped at the first dev evaluation (after step 0) that
    reaches `threshold`. Its seconds include the step-0 evaluation it always does."""
    from panda_core.training import train

    curve: list[tuple[int, float, float]] = []
    t0 = time.perf_counter()

    def on_eval(step: int, acc: float) -> None:
        curve.append((step, round(acc, 4), round(time.perf_counter() - t0, 2)))
        if step >= 1 and acc >= threshold:
            raise _Reached

    with contextlib.suppress(_Reached):
        train(bb, task, tc, init=init, on_eval=on_eval, resume=False)
    return _outcome(curve, threshold)


def bench_pt_to_accuracy(bb_name: str, cfg: BenchConfig, log: Log) -> Case:
    """Seconds of MR prompt tuning until the dev accuracy first reaches
    `cfg.acc_threshold`: ours vs PEFT + transformers.Trainer, same start."""
    from panda_core.backbones import get_backbone
    from panda_core.prompts import init_prompt, task_seed
    from panda_core.training import TrainConfig

    with PeakRSS() as mem:
        bb = get_backbone(bb_name)
        task, thr = cfg.task, cfg.acc_threshold
        tc = TrainConfig(steps=cfg.acc_steps, batch_size=cfg.batch_size, eval_every=cfg.acc_eval_every,
                         dev_limit=cfg.acc_dev_limit, patience=None,
                         prompt_length=cfg.prompt_length, max_length=cfg.max_length, seed=cfg.seed)
        # the prompt train() itself would start from, given to both runs
        init = init_prompt(bb.embeddings(), cfg.prompt_length, "vocab", seed=task_seed(task, cfg.seed))
        runs: dict[str, list[dict]] = {"ours": [], "peer": []}
        fns = {"ours": lambda: runs["ours"].append(ours_to_accuracy(bb, task, tc, init, thr))}
        if bb.kind_impl.peft_trainable:
            fns["peer"] = lambda: runs["peer"].append(_outcome(trainer_curve(bb, task, tc, init, thr), thr))
        log(f"  {task} to dev accuracy {thr} (first {cfg.acc_dev_limit} dev examples, <= {cfg.acc_steps} steps, "
            f"dev every {cfg.acc_eval_every}): {', '.join(fns)}, {cfg.acc_reps} rep(s)")
        interleaved(fns, cfg.acc_reps, 0)
    ours = median([r["seconds"] for r in runs["ours"]])
    peer = median([r["seconds"] for r in runs["peer"]]) if runs["peer"] else None
    case = Case("pt_to_accuracy", ours, peer, None, "s",
                f"ours >= 1.3x faster than PEFT + transformers.Trainer to dev accuracy {thr}", backbone=bb_name,
                ours_is="training.train, default (random) batches", peer_is="PEFT PromptTuningConfig + transformers.Trainer",
                rss_mb=mem.mb)
    o, p = runs["ours"][-1], (runs["peer"] or [None])[-1]
    if p is not None:
        # a peer that never reached it took at least its whole budget: its seconds are a lower bound
        case.meets_goal = o["reached"] and case.ratio_vs_peer >= 1.3
    case.detail = {
        "task": task, "threshold": thr, "dev_limit": cfg.acc_dev_limit, "step_budget": cfg.acc_steps,
        "eval_every": cfg.acc_eval_every, "batch_size": cfg.batch_size, "reps": len(runs["ours"]),
        "ours": o, "peer": p if p is not None else {"skipped": f"PEFT cannot prompt-tune {bb.kind} backbones here"},
        "seconds_per_rep": {k: [r["seconds"] for r in v] for k, v in runs.items()},
        "peer_differences": TRAINER_DIFFERENCES,
        "note": "seconds until the evaluation that reached the threshold; a run that never reached it reports its "
                "last evaluation (a lower bound)",
    }
    return case


# ------------------------------------------------------------------ click_to_result
TRANSFER_PAGE = REPO_ROOT / "pages" / "4_Transfer.py"
_PAGE_INPUTS = {"tr_steps": "steps", "tr_eval_every": "eval_every", "tr_dev_limit": "dev_limit",
                "tr_test_limit": "test_limit"}


def transfer_page_defaults(path: Path = TRANSFER_PAGE) -> dict:
    """The Transfer page's training defaults, read from its number inputs'
    values in the page's source, so the case follows the page."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "number_input":
            key = next((k.value.value for k in node.keywords if k.arg == "key" and isinstance(k.value, ast.Constant)),
                       None)
            if key in _PAGE_INPUTS and len(node.args) >= 4 and isinstance(node.args[3], ast.Constant):
                found[_PAGE_INPUTS[key]] = node.args[3].value
    if set(found) != set(_PAGE_INPUTS.values()):
        raise PandaError(f"cannot read the Transfer page's defaults from {path.name} (found {found})")
    found["test_limit"] = found["test_limit"] or None  # the page's 0 means every test item
    return found


class PhaseClock:
    """Where a PANDA transfer's time goes. For the block it wraps what
    `ops.run_transfer` calls by name (the PoT teacher run, the PANDA metric,
    PANDA's own `train` call and its teacher-cache prefill); the progress
    callback marks the training loop's last step, after which comes the test
    evaluation of the best checkpoint."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.in_teacher = False
        self.last_step_at: float | None = None
        self.train_span: tuple[float, float] | None = None

    def progress(self, info: dict) -> None:
        self.last_step_at = time.perf_counter()

    def _timed(self, name: str, fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t
        return run

    @contextlib.contextmanager
    def watching(self) -> Iterator[PhaseClock]:
        import panda_core.indicators as indicators
        import panda_core.ops.transfer as transfer_ops
        import panda_core.training as training
        from panda_core.training.objectives import TeacherCache

        teacher, train = transfer_ops._teacher, training.train

        def timed_teacher(*args, **kwargs):
            self.in_teacher = True
            try:
                return teacher(*args, **kwargs)
            finally:
                self.in_teacher = False

        def timed_train(*args, **kwargs):
            if self.in_teacher:  # the teacher's own PoT training: counted in "teacher"
                return train(*args, **kwargs)
            t = time.perf_counter()
            try:
                return train(*args, **kwargs)
            finally:
                self.train_span = (t, time.perf_counter())

        with patched(transfer_ops, "_teacher", self._timed("teacher", timed_teacher)), \
                patched(indicators, "panda_pair", self._timed("metric", indicators.panda_pair)), \
                patched(training, "train", timed_train), \
                patched(TeacherCache, "prefill", self._timed("teacher_prefill", TeacherCache.prefill)):
            yield self

    def phases(self, total: float) -> dict[str, float]:
        if self.train_span is None or self.last_step_at is None:
            raise PandaError("the PANDA run's training phase was not seen (did ops.run_transfer change?)")
        start, end = self.train_span
        out = {"teacher": self.seconds["teacher"], "metric": self.seconds["metric"],
               "training": self.last_step_at - start, "test": end - self.last_step_at}
        out["other"] = total - sum(out.values())
        return {k: round(v, 2) for k, v in out.items()}


def bench_click_to_result(bb_name: str, cfg: BenchConfig, log: Log) -> Case:
    """A PANDA transfer at the Transfer page's defaults (full runs; small sizes
    in --quick), from the call to its result, and where the time goes."""
    from panda_core.ops import run_transfer, train_prompt
    from panda_core.training import TrainConfig
    from panda_core.transfer import TransferConfig

    page = transfer_page_defaults()
    knobs = dict(cfg.click_quick) if cfg.click_quick else dict(page)
    target, source = available(BENCH_TASKS, 2)  # mr, and a same-family source with a trained prompt
    limit = cfg.click_pt_eval_limit
    with PeakRSS() as mem, private_cache():
        t = time.perf_counter()
        for task in (source, target):  # the PT prompts PANDA reads (the metric, the PoT teacher's start)
            train_prompt(task, bb_name, TrainConfig(steps=cfg.click_pt_steps, eval_every=cfg.click_pt_steps,
                                                    dev_limit=limit, test_limit=limit, seed=cfg.seed,
                                                    prompt_length=cfg.prompt_length))
        pt_seconds = time.perf_counter() - t
        train = TrainConfig(**knobs, prompt_length=cfg.prompt_length, prompt_type="input", seed=cfg.seed)
        extra = {"metric_inputs": cfg.click_metric_inputs} if cfg.click_metric_inputs else {}
        config = TransferConfig(train=train, **extra)
        log(f"  PANDA {source} -> {target}: {knobs} (page defaults {page}), metric on {config.metric_inputs} inputs")
        clock = PhaseClock()
        with clock.watching():
            t0 = time.perf_counter()
            out = run_transfer(source, target, "panda", bb_name, config, progress=clock.progress)
            total = time.perf_counter() - t0
    phases = clock.phases(total)
    case = Case("click_to_result", total, None, None, "s", "report only: where the wait goes", backbone=bb_name,
                ours_is=f"PANDA {source} -> {target} through ops.run_transfer", rss_mb=mem.mb)
    case.detail = {
        "source": source, "target": target, "settings": knobs, "page_defaults": page,
        "metric_inputs": config.metric_inputs, "phases": phases,
        "teacher_prefill": round(clock.seconds["teacher_prefill"], 2),
        "test_acc": out.get("test_acc"), "dev_acc": out.get("dev_acc"), "steps": out.get("steps"),
        "pt_prompts": {"steps": cfg.click_pt_steps, "dev_and_test_items": limit, "seconds": round(pt_seconds, 1)},
        "not_counted": "the job queue (the page submits a job a worker picks up), loading the backbone (loaded "
                       "already) and training the PT prompts it starts from",
        "phases_are": "teacher: the PoT teacher run, recorded as its own run; metric: the PANDA metric; training: "
                      "PANDA's train call up to its last step (teacher-cache prefill, dev evaluations and "
                      "checkpoints included); test: the best checkpoint on the test split; other: the rest",
    }
    return case


# ------------------------------------------------------------------ page_render
PAGES = {"similarity": ("pages/2_Similarity.py", {"sim_mode": "Every indicator"}),
         "clusters": ("pages/3_Clusters.py", {"clu_method": "umap"}),
         "transfer": ("pages/4_Transfer.py", {})}


def render(path: str, state: dict, backbone: str, timeout: float) -> tuple[float, object]:
    """Seconds of one headless render of a page, in a fresh session; refuses a page that failed."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO_ROOT / path), default_timeout=timeout)
    at.session_state["backbone"] = backbone
    for k, v in state.items():
        at.session_state[k] = v
    t = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t
    problems = [str(e.value) for e in at.exception] + [str(e.value) for e in at.error]
    if problems:
        raise PandaError(f"{path} failed to render: {problems[0][:300]}")
    return seconds, at


def bench_page_render(bb_name: str, cfg: BenchConfig, log: Log) -> Case:
    """The Similarity (every indicator), Clusters (UMAP) and Transfer pages over
    `cfg.page_prompts` stored prompts: each rendered with its caches emptied
    (cold), then again in a new session with every indicator cached (warm)."""
    import streamlit as st

    from panda_core import store
    from panda_core.backbones import get_backbone
    from panda_core.indicators import similarity
    from panda_core.prompts import SoftPrompt, init_prompt

    if str(REPO_ROOT) not in sys.path:  # the pages import panda_app
        sys.path.insert(0, str(REPO_ROOT))
    bb = get_backbone(bb_name)
    tasks = available(BENCH_TASKS, cfg.page_prompts)
    cold, warm = {}, {}
    umap_env = os.environ.get("PANDA_WARM_UMAP")
    os.environ["PANDA_WARM_UMAP"] = "0"  # no background compile: the cold Clusters render pays for UMAP's
    try:
        with PeakRSS() as mem, private_cache():
            for i, task in enumerate(tasks):  # vocab-initialised with a trained-like drift, as indicators.py's
                t = init_prompt(bb.embeddings(), cfg.prompt_length, "vocab", seed=300 + i)
                t = t + 0.1 * t.std() * torch.randn(t.shape, generator=torch.Generator().manual_seed(i)).to(t.device)
                store.save_prompt(SoftPrompt(tensor=t.cpu(), backbone=bb.name, task=task, method="pt", seed=0))
            for name, (path, state) in PAGES.items():
                st.cache_data.clear()
                similarity._ACTIVATION_CACHE.clear()
                cold[name], _ = render(path, state, bb.name, cfg.page_timeout)
                warm[name], at = render(path, state, bb.name, cfg.page_timeout)
                shown = at.get("plotly_chart") if name != "transfer" else at.dataframe
                if not len(shown):
                    raise PandaError(f"{path} rendered without its {'chart' if name != 'transfer' else 'tables'}")
                log(f"  {name}: cold {cold[name]:.2f} s, warm {warm[name]:.2f} s")
    finally:
        if umap_env is None:
            os.environ.pop("PANDA_WARM_UMAP", None)
        else:
            os.environ["PANDA_WARM_UMAP"] = umap_env
    slowest = max(warm.values())
    case = Case("page_render", slowest, None, None, "s", "every page < 3 s with every indicator cached",
                backbone=bb_name, ours_is="the slowest page's second render (every indicator cached)", rss_mb=mem.mb)
    case.meets_goal = slowest < 3.0
    case.detail = {
        "prompts": len(tasks), "tasks": tasks, "cold_seconds": {k: rounded(v, 2) for k, v in cold.items()},
        "warm_seconds": {k: rounded(v, 2) for k, v in warm.items()},
        "views": {name: state for name, (_, state) in PAGES.items()},
        "cold_is": "the page's caches emptied (st.cache_data, ON activations), the backbone loaded already, "
                   "the first page also importing the app's modules",
        "warm_is": "a new session on the same server: every indicator and layout cached",
    }
    return case
