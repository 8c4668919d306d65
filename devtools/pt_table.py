"""The prompt-tuning table of the README: default `train` on every available
offline task, generated from the runs in the store (trains what is missing)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from panda_core import atomic
from panda_core.data import available_tasks, get_task
from panda_core.ops.training import done_train_run
from panda_core.paths import REPO_ROOT
from panda_core.training import TrainConfig

from .study.context import ci_of

START, END = "<!-- pt-table:start -->", "<!-- pt-table:end -->"

# done_train_run (re-exported): the one reuse rule, shared with the report and `zoo build`
__all__ = ["done_train_run", "pt_rows", "render", "update_readme"]


def pt_rows(backbone: str, config: TrainConfig, train_missing: bool = False,
            log: Callable[[str], None] = print, tasks: list[str] | None = None) -> list[dict]:
    """One row per task: the newest done run of `config` (trained when missing
    and asked), next to its baselines on the same test items - the majority
    class and a random Gaussian prompt (scored here once, cached with the
    report's baselines) - each accuracy with its Wilson 95% interval."""
    from panda_core.backbones import get_backbone
    from panda_core.ops import train_prompt
    from panda_core.prompts import task_seed
    from panda_core.stats import accuracy_with_ci

    from .study.baselines import PromptBaselines, majority_items

    rows, baselines = [], None
    for task in tasks or [t for t in available_tasks() if get_task(t).source == "offline"]:
        done = done_train_run(task, backbone, config)
        if done is None and train_missing:
            log(f"training {task} on {backbone}")
            done = train_prompt(task, backbone, config)
        if done is None:
            continue
        baselines = baselines or PromptBaselines(get_backbone(backbone))
        rand = baselines.items(task, "random", task_seed(task, config.seed), config)
        n = int(done.get("n_test") or len(rand))
        major = majority_items(task, n)
        rows.append({"task": task, "family": get_task(task).family, "n_test": n,
                     "majority": accuracy_with_ci(major), "random": accuracy_with_ci(rand),
                     "untrained": _with_ci(done["init_test_acc"], n), "dev_acc": done["dev_acc"],
                     "test": {"acc": done["test_acc"], "ci": done.get("test_acc_ci") or ci_of(done["test_acc"], n)},
                     "seconds": done["seconds"], "steps": done["steps"]})
    return sorted(rows, key=lambda r: (r["family"], r["task"]))


def rows_from_results(results: dict) -> tuple[list[dict], TrainConfig]:
    """The table's rows from a saved study (`docs/results/results.json`): its
    PT stage trains every task with `train`'s defaults and scores the same
    baselines on the same items, so the table need not train them again.
    Returns the rows and the config they were trained with (the caller checks
    it is the one being tabled)."""
    config = TrainConfig.from_dict(results["config"]["pt"])
    rows = [{"task": r["task"], "family": r["family"], "n_test": r["n_test"],
             "majority": _from_interval(r["majority"]), "random": _from_interval(r["random_prompt"]),
             "untrained": r["untrained"], "dev_acc": r["dev_acc"],
             "test": {"acc": r["test_acc"], "ci": r["test_acc_ci"]},
             "seconds": r["seconds"], "steps": config.steps} for r in results["pt"]]
    return sorted(rows, key=lambda r: (r["family"], r["task"])), config


def _from_interval(a: dict) -> dict:
    """{"acc", "low", "high", "n"} (the study's per-item baselines) -> {"acc", "ci"}."""
    return {"acc": a["acc"], "ci": [a["low"], a["high"]]}


def _with_ci(acc: float, n: int) -> dict:
    """{"acc", "ci"}: an accuracy on n items kept without its items, with its Wilson 95% interval."""
    return {"acc": round(acc, 4), "ci": ci_of(acc, n)}


def _acc(a: dict) -> str:
    return f"{a['acc']:.3f} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}]"


def command_line(backbones: list[str], tasks: list[str] | None = None, steps: int | None = None,
                 eval_every: int | None = None, test_limit: int | None = None, source: str = "",
                 train: bool = False) -> str:
    """The `pt-table` command that regenerates a table, every flag it was run with."""
    parts = ["python -m panda_core pt-table"]
    if backbones != ["minilm"]:
        parts.append("--backbones " + " ".join(backbones))
    parts += [f"--{flag} {value}" for flag, value in (("steps", steps), ("eval-every", eval_every),
                                                       ("test-limit", test_limit), ("from-results", source or None))
              if value is not None]
    if tasks:
        parts.append("--tasks " + " ".join(tasks))
    return " ".join(parts + (["--train"] if train else []))


def render(rows_by_backbone: dict[str, list[dict]], config: TrainConfig,
           configs: dict[str, TrainConfig] | None = None, source: str = "", command: str | None = None) -> str:
    """The markdown block; `configs` names backbones trained with other settings
    than `config`; `source` says where the rows were read (a saved study);
    `command` is the exact command line (`command_line`), by default the one for
    `rows_by_backbone`'s backbones and `source`."""
    configs = configs or {}
    command = command or command_line(list(rows_by_backbone), source=source)
    read = f" The runs are the PT stage of the study saved in `{source}`." if source else ""
    lines = [f"Generated by `{command}` on {time.strftime('%Y-%m-%d')}: `train` with "
             f"its defaults ({_describe(config)}) on 2 CPU cores. Every accuracy is on the same test items, with "
             "its Wilson 95% interval: *majority* always predicts the most common label, *random prompt* is a "
             "Gaussian prompt at the embedding scale, *untrained* the vocabulary-sampled prompt PT starts from "
             "(the task's own seed), *PT* the best-dev checkpoint; *seconds* is the training loop's wall time."
             + read, ""]
    for backbone, rows in rows_by_backbone.items():
        if not rows:
            continue
        cfg = configs.get(backbone, config)
        note = "" if cfg == config else f" ({_describe(cfg)})"
        lines += [f"**{backbone}**{note}", "",
                  "| task | family | test items | majority | random prompt | untrained | PT dev | PT test | seconds |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['family']} | {r['n_test']} | {_acc(r['majority'])} | {_acc(r['random'])} | "
                  f"{_acc(r['untrained'])} | {r['dev_acc']:.3f} | **{_acc(r['test'])}** | {r['seconds']:.0f} |"
                  for r in rows]
        lines.append("")
    return "\n".join(lines)


def _describe(cfg: TrainConfig) -> str:
    test = "full test split" if cfg.test_limit is None else f"first {cfg.test_limit} test examples"
    return (f"{cfg.steps} steps, batch {cfg.batch_size}, {cfg.prompt_length}-token prompt, seed {cfg.seed}, "
            f"dev = first {cfg.dev_limit} dev examples, {test}")


def update_readme(text: str) -> None:
    readme = REPO_ROOT / "README.md"
    body = readme.read_text()
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: f"{START}\n{text}\n{END}", body, flags=re.S)
    atomic.write_text(readme, new)
    (REPO_ROOT / "docs").mkdir(exist_ok=True)
    atomic.write_text(REPO_ROOT / "docs" / "pt_table.md", "# Prompt tuning per task\n\n" + text + "\n")
