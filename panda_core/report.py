"""The seeded reproduction study (`python -m panda_core report`).

Runs a fixed study on the offline suite and writes `docs/results.md` plus
CSV/JSON under `docs/results/`. Every number in the page comes from runs made
by this script (or identical runs already in the store, which it reuses: the
study is resumable). Sizing for 2 CPU cores is in `StudyConfig`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import atomic, store
from .backbones import get_backbone
from .errors import PandaError
from .metrics import METRIC_LABELS, Metric, rank_correlation
from .paths import REPO_ROOT
from .tasks import available_tasks, get_task, list_tasks
from .train import TrainConfig
from .transfer import TransferConfig, run_transfer

Log = Callable[[str], None]


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
    methods: tuple[str, ...] = ("pot", "panda")
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

    def to_dict(self) -> dict:
        return asdict(self)


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


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

    # -------------------------------------------------------------- stages
    def prompt_tuning(self) -> None:
        """PT on every offline task: the sources of every transfer."""
        from .runs import train_prompt

        rows = []
        for task in self.tasks:
            cfg = TrainConfig(**{**self.cfg.pt.to_dict(), "seed": self.cfg.seed})
            done = self._done_train(task, cfg)
            if done is None:
                self.log(f"PT {task} ({cfg.steps} steps)")
                done = train_prompt(task, self.bb.name, cfg)
            rows.append({k: done[k] for k in ("task", "init_test_acc", "dev_acc", "test_acc", "seconds", "prompt_id")}
                        | {"family": get_task(task).family})
        self.data["pt"] = rows

    def _done_train(self, task: str, cfg: TrainConfig) -> dict | None:
        for run in store.list_runs(kind="train", status="done", limit=5000):
            if run["target"] == task and run["backbone"] == self.bb.name and run["config"] == cfg.to_dict():
                return run["result"]
        return None

    def zero_shot(self) -> None:
        """Every source prompt on every target, relative to the target's own PT prompt."""
        pt = {r["task"]: r for r in self.data["pt"]}
        k = len(self.tasks)
        acc = np.zeros((k, k))
        tcfg = TrainConfig(**{**self.cfg.pt.to_dict(), "test_limit": self.cfg.zero_shot_test_limit})
        self.log(f"zero-shot matrix {k} x {k}")
        for i, s in enumerate(self.tasks):
            for j, t in enumerate(self.tasks):
                res = run_transfer(s, t, "zero-shot", self.bb.name, TransferConfig(train=tcfg))
                acc[i, j] = res["test_acc"]
        own = np.array([acc[j, j] for j in range(k)])
        rel = acc / own[None, :]
        fam = [get_task(t).family for t in self.tasks]
        within = [rel[i, j] for i in range(k) for j in range(k) if i != j and fam[i] == fam[j]]
        across = [rel[i, j] for i in range(k) for j in range(k) if fam[i] != fam[j]]
        self.data["zero_shot"] = {"acc": acc.tolist(), "relative": rel.tolist(),
                                  "within_family_mean": float(np.mean(within)) if within else None,
                                  "cross_family_mean": float(np.mean(across)) if across else None,
                                  "pt_test_acc_full": [pt[t]["test_acc"] for t in self.tasks]}

    def transfers(self) -> None:
        """PT vs PoT vs PANDA (vs model tuning) on low-resource targets, every study task as source."""
        tasks = [t for t in self.cfg.transfer_tasks if t in self.tasks]
        targets = [t for t in self.cfg.targets if t in tasks]
        tc = TrainConfig(**{**self.cfg.transfer.to_dict(), "seed": self.cfg.seed})
        rows = []
        for t in targets:
            base = run_transfer(None, t, "pt", self.bb.name, TransferConfig(train=tc))
            mt = run_transfer(tasks[0] if tasks[0] != t else tasks[1], t, "model-tuning", self.bb.name,
                              TransferConfig(train=TrainConfig(**{**tc.to_dict(), "init": "vocab"}))) \
                if self.cfg.model_tuning else None
            for s in tasks:
                if s == t:
                    continue
                row = {"source": s, "target": t, "source_family": get_task(s).family,
                       "target_family": get_task(t).family, "pt": base["test_acc"],
                       "model_tuning": mt["test_acc"] if mt else None}
                for m in self.cfg.methods:
                    self.log(f"{m}: {s} -> {t}  [{time.time() - self.t0:.0f} s]")
                    res = run_transfer(s, t, m, self.bb.name, TransferConfig(train=tc))
                    row[m] = res["test_acc"]
                    row[f"{m}_seconds"] = res["seconds"]
                    if m == "panda":
                        row["kd_weight"] = res.get("kd_weight")
                        row["transferability"] = res.get("transferability")
                    row[f"{m}_curve"] = res["dev_curve"]
                rows.append(row)
        self.data["transfers"] = rows

    def indicators(self) -> None:
        """Each indicator's rank correlation with zero-shot transfer (all tasks) and PoT/PANDA gains."""
        from .similarity import similarity_table

        rel = np.array(self.data["zero_shot"]["relative"])
        out = {}
        matrices = {}
        for metric in [m.value for m in Metric]:
            self.log(f"indicator {metric}")
            table = similarity_table(metric, self.bb.name, self.tasks, self.cfg.pt.prompt_length,
                                     n_inputs=self.cfg.n_inputs)
            order = [table["tasks"].index(t) for t in self.tasks]
            M = np.array(table["matrix"])[np.ix_(order, order)]
            matrices[metric] = M.tolist()
            out[metric] = {"zero_shot": rank_correlation(M, rel)}
            for m in self.cfg.methods:
                gains = self._gain_matrix(m)
                if gains is not None:
                    out[metric][f"{m}_gain"] = rank_correlation(M, gains)
        self.data["indicators"] = out
        self.data["indicator_matrices"] = matrices

    def _gain_matrix(self, method: str) -> np.ndarray | None:
        rows = self.data.get("transfers") or []
        if not rows:
            return None
        G = np.full((len(self.tasks), len(self.tasks)), np.nan)
        for r in rows:
            G[self.tasks.index(r["source"]), self.tasks.index(r["target"])] = r[method] - r["pt"]
        return G

    def projectors(self) -> None:
        from .projector import run_projection

        rows = []
        for a, b in self.cfg.projector_pairs:
            for method in ("task", "distance"):
                if method == "distance" and store.latest_prompt_id(self.cfg.projector_train_task, b, "pt",
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
        for key in ("pt", "transfers", "projectors"):
            if self.data.get(key):
                rows = [{k: v for k, v in r.items() if not k.endswith("_curve")} for r in self.data[key]]
                pd.DataFrame(rows).to_csv(self.out / f"{key}.csv", index=False)
                paths.append(str(self.out / f"{key}.csv"))
        if self.data.get("zero_shot"):
            pd.DataFrame(self.data["zero_shot"]["relative"], index=self.tasks, columns=self.tasks).to_csv(
                self.out / "zero_shot_relative.csv")
            paths.append(str(self.out / "zero_shot_relative.csv"))
        md = REPO_ROOT / "docs" / "results.md"
        atomic.write_text(md, render_markdown(self.data))
        paths.append(str(md))
        return paths


def render_markdown(d: dict) -> str:
    cfg = d["config"]
    lines = ["# Results: the seeded reproduction study", "",
             "Generated by `python -m panda_core report` (do not edit by hand). "
             f"Backbone `{cfg['backbone']}`, seed {cfg['seed']}, wall-clock {d.get('seconds', 0) / 60:.1f} min "
             "on 2 CPU cores.", "",
             "## How the study is sized", "",
             f"- Prompt tuning (the source prompts): {cfg['pt']['steps']} steps, batch {cfg['pt']['batch_size']}, "
             f"{cfg['pt']['prompt_length']}-token prompts, dev = first {cfg['pt']['dev_limit']} dev examples, "
             "full test split.",
             f"- Zero-shot matrix: every task's prompt on every task, first {cfg['zero_shot_test_limit']} test "
             "examples.",
             f"- Transfer table: low-resource targets (train subset of {cfg['transfer']['train_limit']} examples, "
             f"{cfg['transfer']['steps']} steps, dev {cfg['transfer']['dev_limit']}, test "
             f"{cfg['transfer']['test_limit']}), every other study task as a source. PT and model tuning use "
             "the same budget from scratch.",
             "- PANDA: teacher = the vanilla-PoT prompt trained on the target; student initialised from the "
             "source prompt; lambda = clip(PANDA metric, 0, 1).", ""]
    if d.get("pt"):
        lines += ["## Prompt tuning per task", "",
                  _md_table(["task", "family", "untrained prompt (test)", "PT dev", "PT test", "seconds"],
                            [[r["task"], r["family"], r["init_test_acc"], r["dev_acc"], r["test_acc"], r["seconds"]]
                             for r in d["pt"]]), ""]
    if d.get("zero_shot"):
        z = d["zero_shot"]
        lines += ["## Zero-shot cross-task transfer", "",
                  "Relative performance = accuracy on the target with the source prompt / with the target's own "
                  "prompt (same test subset).", "",
                  f"- **within-family mean: {_fmt(z['within_family_mean'])}**, "
                  f"**cross-family mean: {_fmt(z['cross_family_mean'])}** "
                  "(Su et al. report about 0.81 vs 0.57 on RoBERTa-base).", "",
                  _md_table(["source \\ target"] + d["tasks"],
                            [[s] + [round(x, 2) for x in row] for s, row in zip(d["tasks"], z["relative"], strict=True)]), ""]
    if d.get("transfers"):
        rows = d["transfers"]
        lines += ["## PT vs vanilla PoT vs PANDA vs model tuning", ""]
        head = ["source", "target", "PT", "PoT", "PANDA", "PANDA - PoT", "lambda", "model tuning"]
        lines += [_md_table(head, [[r["source"], r["target"], r["pt"], r.get("pot"), r.get("panda"),
                                    (r["panda"] - r["pot"]) if "panda" in r and "pot" in r else None,
                                    r.get("kd_weight"), r.get("model_tuning")] for r in rows]), ""]
        lines += ["Averages per target:", ""]
        summary = []
        for t in sorted({r["target"] for r in rows}):
            rr = [r for r in rows if r["target"] == t]
            summary.append([t, rr[0]["pt"], np.mean([r["pot"] for r in rr]), np.mean([r["panda"] for r in rr]),
                            np.mean([r["panda"] - r["pot"] for r in rr]),
                            max(r["panda"] - r["pot"] for r in rr), rr[0].get("model_tuning")])
        lines += [_md_table(["target", "PT", "PoT (mean over sources)", "PANDA (mean)", "PANDA - PoT (mean)",
                             "PANDA - PoT (max)", "model tuning"], summary), ""]
        pot_all = np.mean([r["pot"] for r in rows])
        panda_all = np.mean([r["panda"] for r in rows])
        pt_all = np.mean([s[1] for s in summary])
        wins = sum(r["panda"] > r["pot"] for r in rows)
        ties = sum(r["panda"] == r["pot"] for r in rows)
        lines += [f"Overall: PT {pt_all:.3f}, PoT {pot_all:.3f}, PANDA {panda_all:.3f}. PANDA beats PoT on "
                  f"{wins} of {len(rows)} pairs ({ties} ties). "
                  + ("PoT is below plain PT on average here (negative transfer), as in PANDA's own appendix."
                     if pot_all < pt_all else "PoT is above plain PT on average here."), ""]
        fam_rows = []
        for label, same in (("same family as the target", True), ("other families", False)):
            rr = [r for r in rows if (r["source_family"] == r["target_family"]) is same]
            if rr:
                fam_rows.append([label, len(rr), np.mean([r["pot"] - r["pt"] for r in rr]),
                                 np.mean([r["panda"] - r["pt"] for r in rr])])
        lines += ["Gain over PT by the source's family:", "",
                  _md_table(["sources", "pairs", "PoT - PT (mean)", "PANDA - PT (mean)"], fam_rows), ""]
        n_test = min(cfg["transfer"]["test_limit"] or 10**9, *(d.get("test_sizes", {}).get(r["target"], 10**9)
                                                                for r in rows))
        if n_test < 10**9:
            se = (0.25 / n_test) ** 0.5
            lines += [f"One seed per cell. On a test set of {n_test} examples one standard error of an accuracy "
                      f"is up to {se:.3f}, so differences below about {2 * se:.3f} are within noise.", ""]
    if d.get("indicators"):
        lines += ["## Which indicator predicts transfer?", "",
                  "Spearman rank correlation between the indicator and measured transfer: mean over targets "
                  "(ranking sources for one target, as PANDA evaluates it) and pooled over all pairs.", ""]
        rows = []
        for m, res in d["indicators"].items():
            z = res["zero_shot"]
            row = [METRIC_LABELS.get(m, m), z["spearman_mean"], z["spearman_pooled"], z["kendall_mean"]]
            for meth in ("pot", "panda"):
                g = res.get(f"{meth}_gain")
                row.append(g["spearman_mean"] if g else None)
            rows.append(row)
        lines += [_md_table(["indicator", "zero-shot: Spearman (per target)", "zero-shot: Spearman (pooled)",
                             "zero-shot: Kendall (per target)", "PoT gain: Spearman", "PANDA gain: Spearman"],
                            rows), ""]
    if d.get("projectors"):
        lines += ["## Cross-model transfer through a projector", "",
                  _md_table(["pair", "method", "trained on", "task", "family", "projected prompt", "random prompt",
                             "target's own PT prompt"],
                            [[f"{r['source_backbone']} -> {r['target_backbone']}", r["method"], r["train_task"],
                              r["task"], r["family"], r["test_acc"], r["random_prompt_acc"], r.get("target_pt_acc")]
                             for r in d["projectors"]]), ""]
    return "\n".join(lines) + "\n"


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
