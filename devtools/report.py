"""The seeded reproduction study (`python -m panda_core report`).

Runs a fixed study on the offline suite and writes `docs/results.md` plus
CSV/JSON under `docs/results/`. Every number in the page comes from runs made
by this script (or identical runs already in the store, which it reuses: the
study is resumable). Sizing for 2 CPU cores is in `StudyConfig`.

The study reads the registries: the transfer methods it compares are the
registered one-source methods that train the target's prompt
(`study_methods`, from `panda_core.transfer.METHODS`), every registered
indicator (`panda_core.indicators.INDICATORS`) is scored against every
measure of transfer (`panda_core.indicators.validation.MEASURES`). The page
itself is rendered by `results_md` from the JSON alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from panda_core import atomic, store
from panda_core.backbones import get_backbone
from panda_core.crossmodel import ProjectorMethod
from panda_core.data import available_tasks, get_task, list_tasks
from panda_core.errors import PandaError
from panda_core.indicators import INDICATORS, rank_correlation
from panda_core.indicators.validation import MEASURES, Measure
from panda_core.paths import REPO_ROOT
from panda_core.training import TrainConfig
from panda_core.transfer import METHODS, Sources, TransferConfig

from .pt_table import done_train_run
from .results_md import BASELINE, REFERENCE, key, render_markdown, with_teacher

Log = Callable[[str], None]

__all__ = ["StudyConfig", "Study", "render_markdown", "rerender", "run_study", "study_methods"]


def study_methods() -> tuple[str, ...]:
    """The methods the transfer table compares on each (source, target) pair:
    every registered method that trains the target's prompt from one source
    prompt (today vanilla PoT and PANDA)."""
    return tuple(m.name for m in METHODS if m.sources is Sources.ONE and m.saves_prompt and not m.allows_self)


@dataclass
class StudyConfig:
    """How the study is sized (defaults: under an hour on 2 CPU cores once the PT prompts exist)."""

    backbone: str = "minilm"
    seed: int = 0
    # the default `train` config, so the README PT table and the study share their runs
    pt: TrainConfig = field(default_factory=TrainConfig)
    zero_shot_test_limit: int = 200
    # the transfer table: low-resource targets (train subset) x every other study task as source;
    # each target has a source of its own family, so within- vs cross-family shows
    transfer_tasks: tuple[str, ...] = ("mr", "yelp_uci", "bbc", "r8", "vitaminc", "presuppositions",
                                       "spam_assassin")
    targets: tuple[str, ...] = ("yelp_uci", "mr", "bbc", "presuppositions")
    methods: tuple[str, ...] = field(default_factory=study_methods)
    transfer: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=40, eval_every=20, train_limit=256, dev_limit=100, test_limit=300))
    model_tuning: bool = True
    projector_pairs: tuple[tuple[str, str], ...] = (("minilm", "mpnet"), ("minilm", "smollm2"))
    projector_train_task: str = "mr"
    projector_eval_tasks: tuple[str, ...] = ("mr", "yelp_uci", "bbc", "vitaminc")
    projector_steps: int = 60
    projector_test_limit: int = 200
    n_inputs: int = 32
    tasks: tuple[str, ...] | None = None  # None: every available offline task

    def __post_init__(self) -> None:
        for name in (BASELINE, REFERENCE, *self.methods):
            METHODS.get(name)  # an unknown method is refused before any work

    def to_dict(self) -> dict:
        return asdict(self)


def zero_shot_measure() -> Measure:
    """The relative measure (zero-shot transfer / the target's own prompt): what the zero-shot matrix measures."""
    return next(m for m in MEASURES if m.relative)


class Study:
    def __init__(self, config: StudyConfig, out_dir: Path, log: Log) -> None:
        self.cfg, self.out, self.log = config, out_dir, log
        self.out.mkdir(parents=True, exist_ok=True)
        self.bb = get_backbone(config.backbone)
        self.tasks = [t for t in available_tasks() if get_task(t).source == "offline"
                      and (config.tasks is None or t in config.tasks)]
        self.tasks.sort(key=lambda t: (get_task(t).family, t))
        self.data: dict = {"config": config.to_dict(), "tasks": self.tasks,
                           "test_sizes": {r["name"]: r["n_test"] for r in list_tasks() if r["name"] in self.tasks}}
        self.t0 = time.time()

    def _transfer(self, source: str | None, target: str, method: str, train: TrainConfig) -> dict:
        from panda_core.ops import run_transfer

        return run_transfer(source, target, method, self.bb.name, TransferConfig(train=train))

    # -------------------------------------------------------------- stages
    def prompt_tuning(self) -> None:
        """PT on every offline task: the sources of every transfer."""
        from panda_core.ops import train_prompt

        rows = []
        for task in self.tasks:
            cfg = TrainConfig(**{**self.cfg.pt.to_dict(), "seed": self.cfg.seed})
            done = done_train_run(task, self.bb.name, cfg)
            if done is None:
                self.log(f"PT {task} ({cfg.steps} steps)")
                done = train_prompt(task, self.bb.name, cfg)
            rows.append({k: done[k] for k in ("task", "init_test_acc", "dev_acc", "test_acc", "seconds", "prompt_id")}
                        | {"family": get_task(task).family})
        self.data["pt"] = rows

    def zero_shot(self) -> None:
        """Every source prompt on every target, relative to the target's own PT prompt."""
        measure = zero_shot_measure()
        pt = {r["task"]: r for r in self.data["pt"]}
        k = len(self.tasks)
        acc = np.zeros((k, k))
        tcfg = TrainConfig(**{**self.cfg.pt.to_dict(), "test_limit": self.cfg.zero_shot_test_limit})
        self.log(f"zero-shot matrix {k} x {k}")
        for i, s in enumerate(self.tasks):
            for j, t in enumerate(self.tasks):
                acc[i, j] = self._transfer(s, t, measure.method, tcfg)["test_acc"]
        own = np.array([acc[j, j] for j in range(k)])
        rel = measure.of(acc, own[None, :])
        fam = [get_task(t).family for t in self.tasks]
        within = [rel[i, j] for i in range(k) for j in range(k) if i != j and fam[i] == fam[j]]
        across = [rel[i, j] for i in range(k) for j in range(k) if fam[i] != fam[j]]
        self.data["zero_shot"] = {"acc": acc.tolist(), "relative": rel.tolist(),
                                  "within_family_mean": float(np.mean(within)) if within else None,
                                  "cross_family_mean": float(np.mean(across)) if across else None,
                                  "pt_test_acc_full": [pt[t]["test_acc"] for t in self.tasks]}

    def transfers(self) -> None:
        """The study's methods (and PT, model tuning) on low-resource targets, every study task as source."""
        tasks = [t for t in self.cfg.transfer_tasks if t in self.tasks]
        targets = [t for t in self.cfg.targets if t in tasks]
        tc = TrainConfig(**{**self.cfg.transfer.to_dict(), "seed": self.cfg.seed})
        rows = []
        for t in targets:
            base = self._transfer(None, t, BASELINE, tc)
            # the same fresh prompt, seed and budget as PT: model tuning reads no source
            mt = self._transfer(None, t, REFERENCE, tc) if self.cfg.model_tuning else None
            for s in tasks:
                if s == t:
                    continue
                row = {"source": s, "target": t, "source_family": get_task(s).family,
                       "target_family": get_task(t).family, key(BASELINE): base["test_acc"],
                       key(REFERENCE): mt["test_acc"] if mt else None}
                for m in self.cfg.methods:
                    self.log(f"{m}: {s} -> {t}  [{time.time() - self.t0:.0f} s]")
                    res = self._transfer(s, t, m, tc)
                    row[m] = res["test_acc"]
                    row[f"{m}_seconds"] = res["seconds"]
                    if with_teacher(m):
                        row["kd_weight"] = res.get("kd_weight")
                        row["transferability"] = res.get("transferability")
                    row[f"{m}_curve"] = res["dev_curve"]
                rows.append(row)
        self.data["transfers"] = rows

    def indicators(self) -> None:
        """Each registered indicator's rank correlation with each measure of transfer the study has."""
        from panda_core.indicators.similarity import similarity_table

        measured = {key(m.name): M for m in MEASURES if (M := self._measured(m)) is not None}
        out = {}
        matrices = {}
        for metric in INDICATORS.names():
            self.log(f"indicator {metric}")
            table = similarity_table(metric, self.bb.name, self.tasks, self.cfg.pt.prompt_length,
                                     n_inputs=self.cfg.n_inputs)
            order = [table["tasks"].index(t) for t in self.tasks]
            M = np.array(table["matrix"])[np.ix_(order, order)]
            matrices[metric] = M.tolist()
            out[metric] = {k: rank_correlation(M, G) for k, G in measured.items()}
        self.data["indicators"] = out
        self.data["indicator_matrices"] = matrices

    def _measured(self, measure: Measure) -> np.ndarray | None:
        """The (source, target) matrix of `measure` from the study's own runs (None: not measured)."""
        if measure.relative:
            zs = self.data.get("zero_shot")
            return np.array(zs["relative"]) if zs and measure == zero_shot_measure() else None
        rows = self.data.get("transfers") or []
        if not rows or measure.method not in rows[0]:
            return None
        G = np.full((len(self.tasks), len(self.tasks)), np.nan)
        for r in rows:
            G[self.tasks.index(r["source"]), self.tasks.index(r["target"])] = measure.of(r[measure.method],
                                                                                        r[key(BASELINE)])
        return G

    def projectors(self) -> None:
        """Each backbone pair's projector, trained both ways where it can be (distance needs the target's PT prompt)."""
        from panda_core.ops import run_projection

        rows = []
        for a, b in self.cfg.projector_pairs:
            for method in (ProjectorMethod.TASK.value, ProjectorMethod.DISTANCE.value):
                if method == ProjectorMethod.DISTANCE and store.latest_prompt_id(
                        self.cfg.projector_train_task, b, METHODS.get(BASELINE).prompt_method,
                        self.cfg.pt.prompt_length) is None:
                    self.log(f"projector {a}->{b} distance: skipped (no PT prompt of "
                             f"{self.cfg.projector_train_task} on {b})")
                    continue
                self.log(f"projector {a} -> {b} ({method})")
                res = run_projection(a, b, self.cfg.projector_train_task, method,
                                     eval_tasks=[t for t in self.cfg.projector_eval_tasks if t in self.tasks],
                                     steps=self.cfg.projector_steps, seed=self.cfg.seed,
                                     prompt_length=self.cfg.pt.prompt_length,
                                     test_limit=self.cfg.projector_test_limit)
                for r in res["results"]:
                    rows.append({"source_backbone": a, "target_backbone": b, "method": method,
                                 "train_task": self.cfg.projector_train_task} | r)
        self.data["projectors"] = rows

    # -------------------------------------------------------------- output
    def write(self) -> list[str]:
        import pandas as pd

        self.data["seconds"] = round(time.time() - self.t0, 1)
        paths = []
        atomic.write_text(self.out / "results.json", json.dumps(self.data, indent=1, default=str))
        paths.append(str(self.out / "results.json"))
        for name in ("pt", "transfers", "projectors"):
            if self.data.get(name):
                rows = [{k: v for k, v in r.items() if not k.endswith("_curve")} for r in self.data[name]]
                pd.DataFrame(rows).to_csv(self.out / f"{name}.csv", index=False)
                paths.append(str(self.out / f"{name}.csv"))
        if self.data.get("zero_shot"):
            pd.DataFrame(self.data["zero_shot"]["relative"], index=self.tasks, columns=self.tasks).to_csv(
                self.out / "zero_shot_relative.csv")
            paths.append(str(self.out / "zero_shot_relative.csv"))
        md = REPO_ROOT / "docs" / "results.md"
        atomic.write_text(md, render_markdown(self.data))
        paths.append(str(md))
        return paths


def run_study(config: StudyConfig | None = None, stages: list[str] | None = None, log: Log = print,
              out_dir: Path | None = None) -> dict:
    config = config or StudyConfig()
    study = Study(config, out_dir or REPO_ROOT / "docs" / "results", log)
    if not study.tasks:
        raise PandaError("no offline tasks are prepared; run `python -m panda_core data prepare`")
    for stage in stages or ["pt", "zero_shot", "transfers", "indicators", "projectors"]:
        {"pt": study.prompt_tuning, "zero_shot": study.zero_shot, "transfers": study.transfers,
         "indicators": study.indicators, "projectors": study.projectors}[stage]()
        study.write()
    return {"outputs": study.write(), "seconds": study.data["seconds"]}


def rerender(out_dir: Path | None = None) -> dict:
    """Rewrite docs/results.md from a finished study's results.json (no computation)."""
    src = (out_dir or REPO_ROOT / "docs" / "results") / "results.json"
    if not src.is_file():
        raise PandaError(f"no study results at {src}; run `python -m panda_core report` first")
    md = REPO_ROOT / "docs" / "results.md"
    atomic.write_text(md, render_markdown(json.loads(src.read_text())))
    return {"outputs": [str(md)]}
