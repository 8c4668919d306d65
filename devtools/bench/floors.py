"""The evaluation cases, each against a *forward floor*: the bare forward of
the frozen backbone over the same items in the same length-sorted batches.

- `eval_throughput`: one vocab-initialised prompt, zero-shot, over every
  offline test split, in real tokens per second; plus the fraction of the
  tokens computed that are real, for evaluation (sorted vs split-order
  batches) and for training (length-grouped vs random batches);
- `zero_shot_matrix`: the K x K zero-shot matrix (every task's prompt on
  every task's test split at the study's limit), which must give the same
  predictions sorted or not;
- `int8_inference` (full runs only): dynamic int8 Linear layers for
  inference, to decide whether they are worth wiring in (they are not here).

Why a floor in real tokens: what evaluation costs is the tokens the trunk
computes, and a batch padded to its longest text computes pad tokens that
carry nothing. Real tokens per second against a bare forward of the same
batches says how much of the wait is the model itself; the real/computed
fraction says how much of the model's work is padding.

Ours is always the library's own `PromptScorer.correct_items`. To compare
its predictions with the peer's, `Watch` wraps `logits` on that one scorer
instance and keeps a copy of each batch's (B, C) scores; the peer keeps the
same copy, so both pay it.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from panda_core.errors import PandaError

from .harness import BENCH_TASKS, BenchConfig, Case, Log, PeakRSS, interleaved, median, rounded

OLD_BATCH = 64  # evaluation before length sorting: batches of 64 in split order (scorer.correct_items until f785692)
SMALL_TASKS = ["yelp_uci", "amazon_uci", "imdb_uci"]  # short texts and small test splits: what --quick reads


def offline_tasks(k: int | None, prefer: Sequence[str] = ()) -> list[str]:
    """Prepared offline tasks with a test split: every one (k None), else the
    first k with `prefer` first."""
    from panda_core.data import available_tasks, get_task, load_split

    tasks = []
    for t in available_tasks():
        try:
            if get_task(t).source == "offline" and load_split(t, "test"):
                tasks.append(t)
        except PandaError:
            continue
    if len(tasks) < min(k or 2, 2):
        raise PandaError("the benchmark needs the offline task suite: run `python -m panda_core data prepare`")
    if k is None:
        return tasks
    return ([t for t in prefer if t in tasks] + [t for t in tasks if t not in prefer])[:k]


@dataclass
class Split:
    """One test split ready for every variant: its scorer and tokens, the items
    evaluated, and its length-sorted batches pre-collated for the floor."""

    task: str
    scorer: Any
    enc: Any
    limit: int | None
    n: int
    sorted_batches: list = field(default_factory=list)


def test_splits(bb, tasks: list[str], cfg: BenchConfig, limit: int | None, model=None) -> list[Split]:
    """The test splits of `tasks`, tokenised (outside any timing), each scored
    by a fresh scorer (on `model` when given: a quantised copy)."""
    from panda_core.data import get_task, load_split
    from panda_core.prompts import PromptScorer
    from panda_core.prompts.encoding import EVAL_BATCH_SIZE, length_sorted_chunks

    out = []
    for t in tasks:
        sc = PromptScorer(bb, get_task(t), cfg.prompt_length, cfg.max_length, model=model)
        enc = sc.encode(load_split(t, "test"))
        n = len(enc) if limit is None else min(limit, len(enc))
        batches = [sc.collate(enc, chunk) for chunk in length_sorted_chunks(enc, n, EVAL_BATCH_SIZE)]
        out.append(Split(t, sc, enc, limit, n, batches))
    return out


def warm(splits: list[Split], prompt: torch.Tensor) -> None:
    """What every variant needs once, before any timing: each scorer's label
    keys and one small forward (thread pools, allocator)."""
    with torch.inference_mode():
        for s in splits:
            s.scorer.model.eval()
            s.scorer.label_keys()
            s.scorer.logits(s.scorer.collate(s.enc, torch.arange(min(8, s.n))), prompt)


class Watch:
    """Keeps the class scores `correct_items` computes, in split order: `logits`
    is wrapped on one scorer instance while the block runs (the library's loop
    itself is untouched; a copy of each (B, C) batch of scores is all it adds)."""

    def __init__(self, scorer, n: int) -> None:
        self.scorer, self.n = scorer, n
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.scores: np.ndarray | None = None

    def __enter__(self) -> Watch:
        scorer, parts, method = self.scorer, self.parts, type(self.scorer).logits

        def logits(batch, prompt, head=None):
            z = method(scorer, batch, prompt, head)
            parts.append((batch.index.cpu().numpy().copy(), z.detach().float().cpu().numpy()))
            return z

        scorer.logits = logits
        return self

    def __exit__(self, *exc) -> None:
        del self.scorer.logits
        if self.parts:
            out = np.full((self.n, self.parts[0][1].shape[1]), np.nan, dtype=np.float32)
            for index, z in self.parts:
                out[index] = z
            self.scores = out


def ours_pass(split: Split, prompt: torch.Tensor) -> np.ndarray:
    """Ours: the library's evaluation (`correct_items`, length-sorted batches) of
    one prompt on one split; returns the class scores it computed, (n, C)."""
    with Watch(split.scorer, split.n) as w:
        split.scorer.correct_items(split.enc, prompt, limit=split.limit)
    return w.scores


@torch.inference_mode()
def old_pass(split: Split, prompt: torch.Tensor) -> np.ndarray:
    """The peer: evaluation as it was before length sorting (the old
    `correct_items` loop: batches of 64 in split order, each padded to its own
    longest text); returns the class scores, (n, C)."""
    sc = split.scorer
    was = sc.model.training
    sc.model.eval()
    rows, scores = [], []
    for batch in sc.batches(split.enc, OLD_BATCH, limit=split.limit):
        z = sc.logits(batch, prompt)
        rows.append((z.argmax(-1) == batch.labels).cpu())
        scores.append(z.detach().float().cpu().numpy())
    sc.model.train(was)
    torch.cat(rows)
    return np.concatenate(scores)


@torch.inference_mode()
def floor_pass(split: Split, prompt: torch.Tensor) -> None:
    """The floor: the prompt rows spliced into the embeddings of the same
    length-sorted batches (collated beforehand) and the frozen trunk's plain
    forward on them; nothing read, nothing scored, nothing put back."""
    from panda_core.backbones.kinds import plain_run

    sc = split.scorer
    trunk = sc.kind_impl.trunk_module(sc.model)
    with sc.autocast():
        for batch in split.sorted_batches:
            embeds, mask, _ = sc.splice(batch, prompt)
            plain_run(trunk, embeds, mask)


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Whether two variants predicted the same class for every item, and how far their scores are apart."""
    pa, pb = a.argmax(-1), b.argmax(-1)
    return {"same": bool((pa == pb).all()), "differ": int((pa != pb).sum()), "agreement": float((pa == pb).mean()),
            "max_abs_score_difference": float(np.abs(a - b).max())}


def rows_added(scorer) -> int:
    """Positions the model computes beyond the text: the prompt rows and any slot token."""
    return scorer.prompt_length + scorer.slot_tokens


def token_counts(splits: list[Split], batch_size: int, sort_by_length: bool) -> tuple[int, int]:
    """(real, computed) tokens of evaluating the splits cut as `batches` cuts them (no model)."""
    from panda_core.prompts.encoding import padding_stats

    real = computed = 0
    for s in splits:
        r, c = padding_stats(s.enc, batch_size, sort_by_length, limit=s.limit, extra=rows_added(s.scorer))
        real, computed = real + r, computed + c
    return real, computed


def train_fractions(bb, cfg: BenchConfig) -> dict:
    """Real / computed tokens of the default training run's batches (300 steps of
    16) on `cfg.task`'s train split, length-grouped (`Stream(..., lengths=)`) and
    random: from the lengths alone, no model. With the prompt rows (what the
    model computes, as for evaluation) and of the text alone."""
    from panda_core.data import get_task, load_split
    from panda_core.prompts import PromptScorer
    from panda_core.training import TrainConfig
    from panda_core.training.trainer import Stream

    tc = TrainConfig()
    sc = PromptScorer(bb, get_task(cfg.task), cfg.prompt_length, cfg.max_length)
    enc = sc.encode(load_split(cfg.task, "train"))
    extra = rows_added(sc)
    out: dict = {"task": cfg.task, "steps": tc.steps, "batch_size": tc.batch_size}
    for name, lengths in (("length", enc.lengths), ("random", None)):
        stream = Stream(len(enc), tc.batch_size, cfg.seed, lengths=lengths)
        real = computed = text = text_computed = 0
        for _ in range(tc.steps):
            rows = enc.lengths[next(stream)]
            text += int(rows.sum())
            text_computed += int(rows.max()) * len(rows)
            real += int(rows.sum()) + extra * len(rows)
            computed += (int(rows.max()) + extra) * len(rows)
        out[name] = rounded(real / computed)
        out[f"{name}_text_only"] = rounded(text / text_computed)
    return out


def bench_eval_throughput(bb_name: str, cfg: BenchConfig, log: Log) -> Case:
    """One prompt, zero-shot, over every offline test split: ours (sorted
    batches) vs the old batches of 64 vs the forward floor, in real tokens/s."""
    from panda_core.backbones import get_backbone
    from panda_core.prompts import init_prompt
    from panda_core.prompts.encoding import EVAL_BATCH_SIZE

    with PeakRSS() as mem:
        bb = get_backbone(bb_name)
        tasks = offline_tasks(cfg.eval_tasks, SMALL_TASKS)
        splits = test_splits(bb, tasks, cfg, cfg.eval_limit)
        prompt = init_prompt(bb.embeddings(), cfg.prompt_length, "vocab", seed=cfg.seed)
        warm(splits, prompt)
        got: dict[str, list[np.ndarray]] = {}
        fns = {"ours": lambda: got.__setitem__("ours", [ours_pass(s, prompt) for s in splits]),
               "old": lambda: got.__setitem__("old", [old_pass(s, prompt) for s in splits]),
               "floor": lambda: [floor_pass(s, prompt) for s in splits]}
        items = sum(s.n for s in splits)
        log(f"  eval throughput: 1 prompt on {len(splits)} test splits ({items} items), {cfg.eval_reps} reps at most")
        times = interleaved(fns, cfg.eval_reps, 0, cfg.eval_budget)
    real, computed = token_counts(splits, EVAL_BATCH_SIZE, True)
    _, computed_old = token_counts(splits, OLD_BATCH, False)
    train = train_fractions(bb, cfg)
    seconds = {k: median(v) for k, v in times.items()}
    rate = {k: real / v for k, v in seconds.items()}
    same = [agreement(a, b) for a, b in zip(got["ours"], got["old"], strict=True)]
    fraction = real / computed
    goal = "eval real/computed tokens >= 0.95, ours / floor >= 0.90, length-grouped training real/computed >= 0.90"
    case = Case("eval_throughput", rate["ours"], rate["old"], rate["floor"], "tokens/s", goal, backbone=bb_name,
                ours_is="correct_items: length-sorted batches (token and fill budget)",
                peer_is="the old batches of 64 in split order",
                floor_is="splice + bare forward of the same sorted batches", rss_mb=mem.mb)
    case.meets_goal = fraction >= 0.95 and case.ratio_vs_floor >= 0.90 and train["length"] >= 0.90
    case.detail = {
        "tasks": tasks, "items": items, "limit": cfg.eval_limit, "prompt_length": cfg.prompt_length,
        "reps": len(times["ours"]), "real_tokens": real, "computed_tokens_sorted": computed,
        "computed_tokens_old": computed_old, "real_fraction_sorted": rounded(fraction),
        "real_fraction_unsorted": rounded(real / computed_old),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "examples_per_second": {k: rounded(items / v, 2) for k, v in seconds.items()},
        "same_predictions": all(x["same"] for x in same),
        "max_abs_score_difference": max(x["max_abs_score_difference"] for x in same),
        "train_real_fraction": train,
        "tokens": "real = text tokens + prompt rows (+ slot token) of every item; computed = rows x padded width",
    }
    return case


def bench_zero_shot_matrix(bb_name: str, cfg: BenchConfig, log: Log) -> Case:
    """The K x K zero-shot matrix: every task's (vocab-initialised) prompt on
    every task's test split at the study's limit, sorted (ours) vs the old
    batches of 64 vs the forward floor; both must predict the same."""
    from panda_core.backbones import get_backbone
    from panda_core.prompts import init_prompt, task_seed

    with PeakRSS() as mem:
        bb = get_backbone(bb_name)
        tasks = offline_tasks(cfg.zs_tasks, SMALL_TASKS if cfg.quick else BENCH_TASKS)
        splits = test_splits(bb, tasks, cfg, cfg.zs_limit)
        prompts = [init_prompt(bb.embeddings(), cfg.prompt_length, "vocab", seed=task_seed(t, cfg.seed))
                   for t in tasks]
        warm(splits, prompts[0])
        pairs = [(s, p) for p in prompts for s in splits]  # source prompt x target split, row by row
        got: dict[str, list[np.ndarray]] = {}
        fns = {"ours": lambda: got.__setitem__("ours", [ours_pass(s, p) for s, p in pairs]),
               "old": lambda: got.__setitem__("old", [old_pass(s, p) for s, p in pairs]),
               "floor": lambda: [floor_pass(s, p) for s, p in pairs]}
        items = sum(s.n for s, _ in pairs)
        log(f"  zero-shot matrix: {len(tasks)} x {len(tasks)} at {cfg.zs_limit} test items ({items} scorings), "
            f"{cfg.zs_reps} rep(s)")
        times = interleaved(fns, cfg.zs_reps, 0)
    seconds = {k: median(v) for k, v in times.items()}
    same = [agreement(a, b) for a, b in zip(got["ours"], got["old"], strict=True)]
    K = len(tasks)
    acc = [[float((got["ours"][i * K + j].argmax(-1) == splits[j].enc.labels[: splits[j].n].numpy()).mean())
            for j in range(K)] for i in range(K)]
    identical = all(x["same"] for x in same)
    case = Case("zero_shot_matrix", seconds["ours"], seconds["old"], seconds["floor"], "s",
                "the same predictions as the old batches of 64, and faster than them", backbone=bb_name,
                ours_is=f"{K} x {K} correct_items calls (length-sorted batches)",
                peer_is="the old batches of 64 in split order", floor_is="splice + bare forward of the sorted batches",
                rss_mb=mem.mb)
    case.meets_goal = identical and case.ratio_vs_peer > 1.0
    case.detail = {
        "tasks": tasks, "limit": cfg.zs_limit, "scorings": items, "reps": len(times["ours"]),
        "prompts": "vocab-initialised, seed task_seed(task, seed): no trained prompt is needed",
        "same_predictions": identical, "differing_predictions": sum(x["differ"] for x in same),
        "max_abs_score_difference": max(x["max_abs_score_difference"] for x in same),
        "accuracy_matrix": [[round(x, 4) for x in row] for row in acc],
    }
    return case


def bench_int8(bb_name: str, cfg: BenchConfig, log: Log) -> Case:
    """Dynamic int8 quantisation of the backbone's Linear layers, for inference
    only: the same evaluation (`correct_items`) over the test splits in int8
    (ours) and fp32 (peer), and how often int8 predicts what fp32 does on each
    split. It only decides: nothing here wires int8 into the library."""
    from panda_core.backbones import get_backbone
    from panda_core.prompts import init_prompt

    bb = get_backbone(bb_name)
    skip = None
    if bb.device.type != "cpu":
        skip = f"dynamic int8 quantisation runs on the CPU only (backbone on {bb.device})"
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        skip = "torch.ao.quantization.quantize_dynamic is not available in this torch"
    goal = "int8 >= 1.5x fp32 and prediction agreement >= 0.99 on every split"
    if skip:
        return Case("int8_inference", 0.0, None, None, "examples/s", goal, backbone=bb_name, detail={"skipped": skip})
    with PeakRSS() as mem:
        tasks = offline_tasks(cfg.eval_tasks, SMALL_TASKS)
        fp32 = test_splits(bb, tasks, cfg, cfg.eval_limit)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qmodel = quantize_dynamic(copy.deepcopy(bb.model), {torch.nn.Linear}, dtype=torch.qint8)
        qmodel.eval()
        quantise_seconds = time.perf_counter() - t0
        int8 = test_splits(bb, tasks, cfg, cfg.eval_limit, model=qmodel)
        prompt = init_prompt(bb.embeddings(), cfg.prompt_length, "vocab", seed=cfg.seed)
        warm(fp32, prompt)
        warm(int8, prompt)
        got: dict[str, list[np.ndarray]] = {}
        fns = {"int8": lambda: got.__setitem__("int8", [ours_pass(s, prompt) for s in int8]),
               "fp32": lambda: got.__setitem__("fp32", [ours_pass(s, prompt) for s in fp32])}
        items = sum(s.n for s in fp32)
        log(f"  int8 vs fp32: 1 prompt on {len(tasks)} test splits ({items} items), {cfg.eval_reps} reps at most")
        times = interleaved(fns, cfg.eval_reps, 0, cfg.eval_budget)
    rate = {k: items / median(v) for k, v in times.items()}
    per_split = {s.task: agreement(a, b)["agreement"] for s, a, b in zip(fp32, got["int8"], got["fp32"], strict=True)}
    case = Case("int8_inference", rate["int8"], rate["fp32"], None, "examples/s", goal, backbone=bb_name,
                ours_is="quantize_dynamic(Linear, qint8) copy, correct_items", peer_is="fp32, correct_items",
                rss_mb=mem.mb)
    low = min(per_split.values())
    case.meets_goal = case.ratio_vs_peer >= 1.5 and low >= 0.99
    case.detail = {
        "tasks": tasks, "items": items, "reps": len(times["int8"]), "speedup": rounded(case.ratio_vs_peer),
        "min_agreement": rounded(low), "agreement_per_split": {k: rounded(v) for k, v in per_split.items()},
        "quantise_seconds": round(quantise_seconds, 2),
        "decision": "worth wiring in for inference" if case.meets_goal else "keep fp32",
    }
    return case
