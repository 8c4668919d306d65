"""The training-step cases: `pt_step` (our prompt-tuning step against PEFT's
prompt tuning and against the bare forward+backward floor), `panda_step`
(PANDA with its teacher cache warm and cold, against PoT) and
`batched_prompts` (K prompts in mixed batches against K sequential runs).
Also the PEFT peer's pieces, and `trainer_curve`: PEFT prompt tuning driven
by `transformers.Trainer`, the peer of `waits.pt_to_accuracy`.

Each times exactly the step the one training loop takes
(`panda_core.training.prompt_step` / `multitask_step`) on pre-tokenised
batches, so the numbers are the loop's own, not a re-implementation's.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import sys
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F

from panda_core.errors import PandaError

from .harness import BENCH_TASKS, BenchConfig, Case, Log, PeakRSS, available, interleaved, median, rounded


def peft_prompt_model(bb, init: torch.Tensor) -> torch.nn.Module:
    """PEFT's prompt tuning (PromptTuningConfig) on a copy of the frozen backbone
    (the shared one is never wrapped), its virtual tokens set to `init`, in eval mode."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    task_type = TaskType(bb.kind_impl.peft_task_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(copy.deepcopy(bb.model),
                               PromptTuningConfig(task_type=task_type, num_virtual_tokens=init.shape[0]))
    model.eval()
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.copy_(init)
    return model


def peft_class_scores(scorer, model: torch.nn.Module, n: int, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, C) class scores of a PEFT prompt-tuned model, read and scored as ours
    (the same pooling over the text states, the same label scoring); PEFT puts
    its `n` virtual tokens first."""
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    ones = torch.ones(attention_mask.shape[0], n, dtype=attention_mask.dtype, device=attention_mask.device)
    mask = torch.cat([ones, attention_mask], 1)
    return scorer.class_scores(scorer.kind_impl.read_outputs(out, mask, 0, n).float())


class PeftStep:
    """The peer: PEFT's prompt tuning (PromptTuningConfig) on a copy of the same
    frozen backbone, trained with the same loss (same pooling and label scoring)
    and the same optimiser, clipping and schedule."""

    def __init__(self, bb, scorer, init: torch.Tensor, lr: float) -> None:
        self.scorer, self.n = scorer, init.shape[0]
        self.model = peft_prompt_model(bb, init)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optim, self.sched = optimiser(self.params, lr)

    def step(self, batch) -> torch.Tensor:
        z = peft_class_scores(self.scorer, self.model, self.n, batch.input_ids, batch.attention_mask)
        loss = F.cross_entropy(z, batch.labels)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optim.step()
        self.sched.step()
        return loss.detach()


def trainer_curve(bb, task: str, tc, init: torch.Tensor, threshold: float) -> list[tuple[int, float, float]]:
    """The peer: PEFT's PromptTuningConfig on a copy of the backbone, trained by
    `transformers.Trainer` at its defaults except the loss (ours: cosine to the
    label descriptions, `compute_loss`), the learning rate, the batch size, the
    step budget, the seed and the evaluation interval; the same training
    examples, tokenised the same way, and the same dev subset; stopped by a
    callback at the first evaluation reaching `threshold`. Returns the dev
    curve as (step, accuracy, seconds since the Trainer was built: the PEFT
    wrapping of a private copy of the backbone is not timed)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from panda_core.data import get_task, load_split
    from panda_core.prompts import PromptScorer
    from panda_core.training.tuning import backbone_lr

    scorer = PromptScorer(bb, get_task(task), tc.prompt_length, tc.max_length, tc.temperature)
    encs = {"train": scorer.encode(load_split(task, "train")), "dev": scorer.encode(load_split(task, "dev"))}
    n_dev = len(encs["dev"]) if tc.dev_limit is None else min(tc.dev_limit, len(encs["dev"]))
    model, n = peft_prompt_model(bb, init), init.shape[0]

    def collate(rows: list[dict]) -> dict:
        batch = scorer.collate(encs[rows[0]["split"]], torch.tensor([r["idx"] for r in rows]))
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "labels": batch.labels}

    def scores(model, inputs: dict) -> torch.Tensor:
        return peft_class_scores(scorer, model, n, inputs["input_ids"], inputs["attention_mask"])

    class ScoredTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            model.eval()  # the frozen backbone without dropout, as ours computes the same loss
            z = scores(model, inputs)
            loss = F.cross_entropy(z, inputs["labels"])
            return (loss, z) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            inputs = {k: v.to(self.args.device) for k, v in inputs.items()}
            with torch.no_grad():
                z = scores(model, inputs)
            return None, z.detach(), inputs["labels"]

    curve: list[tuple[int, float, float]] = []

    class StopAtThreshold(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            acc = float((metrics or {}).get("eval_accuracy", float("nan")))
            curve.append((state.global_step, round(acc, 4), round(time.perf_counter() - t0, 2)))
            if acc >= threshold:
                control.should_training_stop = True
            return control

    def accuracy(pred) -> dict:
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    out_dir = tempfile.mkdtemp(prefix="panda-bench-trainer-")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):  # its log lines are printed
            warnings.simplefilter("ignore")
            args = TrainingArguments(
                output_dir=out_dir, per_device_train_batch_size=tc.batch_size, learning_rate=backbone_lr(bb, tc),
                max_steps=tc.steps, eval_strategy="steps", eval_steps=tc.eval_every, seed=tc.seed,
                save_strategy="no", report_to="none", remove_unused_columns=False, label_names=["labels"])
            t0 = time.perf_counter()
            trainer = ScoredTrainer(
                model=model, args=args, data_collator=collate, compute_metrics=accuracy,
                train_dataset=[{"split": "train", "idx": i} for i in range(len(encs["train"]))],
                eval_dataset=[{"split": "dev", "idx": i} for i in range(n_dev)], callbacks=[StopAtThreshold()])
            trainer.train()
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if not curve:
        raise PandaError("the transformers.Trainer peer never evaluated on dev")
    return curve


#: what the Trainer peer does differently from ours, reported with pt_to_accuracy
TRAINER_DIFFERENCES = [
    "schedule: Trainer's default linear decay with no warm-up; ours warms up over 6% of the steps, then decays",
    "weight decay: Trainer's default 0.0; ours 1e-5",
    "batch order: both random (Trainer's RandomSampler; ours TrainConfig's default batching='random', its own seeded draw)",
    "dev evaluation: Trainer's default eval batch of 8 in split order; ours correct_items' length-sorted batches, "
    "and ours also evaluates at step 0 (counted in its seconds)",
    "layout: PEFT puts the virtual tokens before [CLS]; ours splices the prompt after it",
    "settings off Trainer's defaults besides the shared ones: save_strategy='no' (nothing written, as ours with "
    "resume=False), remove_unused_columns=False and label_names=['labels'] (the batches are ours), the backbone "
    "in eval mode inside compute_loss (no dropout: the same loss as ours)",
    "optimiser: Trainer's default AdamW (fused on torch >= 2.8); ours torch AdamW; both clip the gradient norm at 1.0",
]


def optimiser(params: list[torch.Tensor], lr: float) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The training loop's AdamW with a flat schedule (every variant gets the same)."""
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=1e-5)
    return optim, torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 1.0)


def bench_steps(bb_name: str, cfg: BenchConfig, log: Log) -> list[Case]:
    """pt_step (ours vs PEFT vs floor) and panda_step (warm and cold teacher
    cache vs PoT), interleaved in one group on the same batches."""
    from panda_core.backbones import get_backbone
    from panda_core.data import get_task, load_split
    from panda_core.prompts import PromptScorer, init_prompt
    from panda_core.training import TeacherCache, prompt_step

    with PeakRSS() as mem:
        bb = get_backbone(bb_name)
        scorer = PromptScorer(bb, get_task(cfg.task), cfg.prompt_length, cfg.max_length)
        B, n = cfg.batch_size, cfg.prompt_length
        enc = scorer.encode(load_split(cfg.task, "train")[: B * cfg.n_batches])
        index = [torch.arange(i * B, (i + 1) * B) for i in range(cfg.n_batches)]
        lr = getattr(bb, "default_lr", 0.01)
        init = init_prompt(bb.embeddings(), n, "vocab", seed=cfg.seed)
        teacher = init_prompt(bb.embeddings(), n, "vocab", seed=cfg.seed + 1)

        def trainer():
            p = torch.nn.Parameter(init.clone())
            return (p, *optimiser([p], lr))

        p_ours, o_ours, s_ours = trainer()
        p_kd, o_kd, s_kd = trainer()
        warm = TeacherCache(scorer, enc, teacher)
        for idx in index:
            warm(scorer.collate(enc, idx))

        def ours():  # the training loop's step: gather a pre-tokenised batch, step, read the loss
            for idx in index:
                float(prompt_step(scorer, scorer.collate(enc, idx), p_ours, o_ours, s_ours))

        def panda(cache):
            for idx in index:
                float(prompt_step(scorer, scorer.collate(enc, idx), p_kd, o_kd, s_kd, teacher=cache, kd_weight=1.0))

        floor_data = []
        with torch.no_grad():
            for idx in index:
                batch = scorer.collate(enc, idx)
                embeds, mask, start = scorer.splice(batch, init)
                floor_data.append((embeds.detach(), mask, start, batch.labels))

        def floor():
            for embeds, mask, start, labels in floor_data:
                x = embeds.clone().requires_grad_(True)
                loss = F.cross_entropy(scorer.class_scores(scorer.outputs_from_embeds(x, mask, start, n).float()), labels)
                loss.backward()
                float(loss.detach())

        fns = {"ours": ours, "floor": floor, "panda_warm": lambda: panda(warm),
               "panda_cold": lambda: panda_cold()}

        def panda_cold():  # as `train` runs it: one length-sorted teacher pass over the batches' examples, then the steps
            cache = TeacherCache(scorer, enc, teacher)
            cache.prefill(torch.cat(index))
            panda(cache)
        threads = torch.get_num_threads()
        if threads > 1:  # how much the second core buys one step: bounds what parallel sweeps can gain

            def ours_1thread():
                torch.set_num_threads(1)
                try:
                    ours()
                finally:
                    torch.set_num_threads(threads)

            fns["ours_1thread"] = ours_1thread
        if bb.kind_impl.peft_trainable:  # PEFT has no <mask> slot after its virtual tokens
            peft_step = PeftStep(bb, scorer, init, lr)
            fns["peft"] = lambda: [float(peft_step.step(scorer.collate(enc, idx))) for idx in index]
        log(f"  steps on {bb_name}: {len(fns)} variants x {cfg.reps} reps of {cfg.n_batches} batches of {B}")
        times = interleaved(fns, cfg.reps, cfg.warmup, cfg.step_budget, min_reps=3)
    examples = B * cfg.n_batches
    rate = {k: examples / median(v) for k, v in times.items()}
    width = int(enc.lengths.float().mean()) + n + 1
    detail = {"batch": B, "prompt_length": n, "mean_total_length": width, "task": cfg.task,
              "reps": len(times["ours"]), "threads": torch.get_num_threads(),
              "thread_speedup": rounded(rate["ours"] / rate["ours_1thread"]) if "ours_1thread" in rate else None,
              "rates": {k: rounded(v, 2) for k, v in rate.items()},
              "seconds_per_rep": {k: [round(x, 4) for x in v] for k, v in times.items()}}
    pt = Case(f"pt_step:{bb_name}", rate["ours"], rate.get("peft"), rate["floor"], "examples/s",
              "ratio_vs_peer >= 1.0 and ratio_vs_floor >= 0.85", backbone=bb_name,
              ours_is="our prompt-tuning step", peer_is="PEFT PromptTuningConfig, same loss",
              floor_is="bare forward+backward to input embeddings", rss_mb=mem.mb, detail=detail)
    if pt.ratio_vs_peer is not None:
        pt.meets_goal = pt.ratio_vs_peer >= 1.0 and pt.ratio_vs_floor >= 0.85
    warm_case = Case(f"panda_step:{bb_name}", rate["panda_warm"], rate["ours"], rate["floor"], "examples/s",
                     "PANDA step time <= 1.15 x PoT (ratio_vs_peer >= 0.87)", backbone=bb_name,
                     ours_is="PANDA step, teacher logits cached", peer_is="PoT step", floor_is="as pt_step",
                     rss_mb=mem.mb, detail={"time_ratio_vs_pot": rounded(rate["ours"] / rate["panda_warm"])})
    warm_case.meets_goal = rate["ours"] / rate["panda_warm"] <= 1.15
    cold_case = Case(f"panda_step_cold:{bb_name}", rate["panda_cold"], rate["ours"], rate["floor"], "examples/s",
                     "cold PANDA step / PoT step >= 0.9 (each example's teacher forward, in one sorted pass, "
                     "counted in the steps that first meet it)", backbone=bb_name,
                     ours_is="PANDA steps, teacher pass first (TeacherCache.prefill)", peer_is="PoT step",
                     floor_is="as pt_step", rss_mb=mem.mb,
                     detail={"time_ratio_vs_pot": rounded(rate["ours"] / rate["panda_cold"])})
    cold_case.meets_goal = rate["panda_cold"] / rate["ours"] >= 0.9
    return [pt, warm_case, cold_case]


def bench_batched(bb_name: str, cfg: BenchConfig, log: Log) -> Case:
    """K prompts in mixed batches through one frozen backbone vs K separate
    runs (same examples, same per-prompt updates), with two floors: the
    forward+backward of the per-task batches and of the mixed batch."""
    from panda_core.backbones import get_backbone
    from panda_core.training import (
        DEFAULT_TOKEN_BUDGET,
        MultiTaskBatcher,
        TrainConfig,
        build_slots,
        multitask_step,
        prompt_step,
    )

    with PeakRSS() as mem:
        bb = get_backbone(bb_name)
        tasks = available(BENCH_TASKS, cfg.k_tasks)
        b, steps = cfg.per_task_batch, cfg.batched_steps
        tc = TrainConfig(prompt_length=cfg.prompt_length, max_length=cfg.max_length, batch_size=b, seed=cfg.seed)
        slots = build_slots(bb, tasks, tc)
        lr = getattr(bb, "default_lr", 0.01)
        rows = [{k: torch.arange(s * b, (s + 1) * b) % slots[k].n_train for k in range(len(slots))}
                for s in range(steps)]
        variants = {"whole": MultiTaskBatcher(slots), "bucketed": MultiTaskBatcher(slots, DEFAULT_TOKEN_BUDGET)}
        optim = torch.optim.AdamW([s.prompt for s in slots], lr=lr, weight_decay=1e-5)

        def batched(batcher):
            def run():
                for r in rows:
                    float(multitask_step(batcher, r, optim))
            return run

        seq = []
        for s in slots:
            p = torch.nn.Parameter(s.prompt.detach().clone())
            seq.append((s, p, torch.optim.AdamW([p], lr=lr, weight_decay=1e-5)))

        def sequential():  # K runs one after another, each its own prompt and optimiser
            for s, p, opt in seq:
                for r in rows:
                    idx = r[slots.index(s)]
                    float(prompt_step(s.scorer, s.scorer.collate(s.train, idx), p, opt))

        lead = slots[0].scorer
        n = cfg.prompt_length

        def floor_of(batches):
            def run():
                for batch, prompt in batches:
                    with torch.no_grad():
                        embeds, mask, start = lead.splice(batch, prompt)
                    x = embeds.detach().requires_grad_(True)
                    out = lead.outputs_from_embeds(x, mask, start, n).float()
                    out.float().pow(2).mean().backward()
            return run

        per_task = [(s.scorer.collate(s.train, r[k]), s.prompt.detach()) for r in rows for k, s in enumerate(slots)]
        used = variants["bucketed"]  # the default of train_multitask: its forward passes are the floor's
        mixed = []
        for r in rows:
            index = torch.cat([r[k] + slots[k].offset for k in r])
            stacked = used.stacked().detach()
            for chunk in used.chunks(index):
                mixed.append((lead.collate(used.combined, chunk), stacked[used.task_of[chunk]]))
        fns = {"sequential": sequential, "batched_whole": batched(variants["whole"]),
               "batched_bucketed": batched(variants["bucketed"]),
               "floor_per_task": floor_of(per_task), "floor_mixed": floor_of(mixed)}
        log(f"  batched prompts: K={len(tasks)}, {b} rows per task, {steps} step(s), {cfg.reps} reps")
        times = interleaved(fns, cfg.reps, cfg.warmup, cfg.step_budget, min_reps=3)
    examples = len(tasks) * b * steps
    rate = {k: examples / median(v) for k, v in times.items()}
    ceiling = rate["floor_mixed"] / rate["floor_per_task"]
    case = Case("batched_prompts", rate["batched_bucketed"], rate["sequential"], rate["floor_mixed"], "examples/s",
                ">= 2x sequential for K=8, or a measured reason", backbone=bb_name,
                ours_is=f"K={len(tasks)} prompts, mixed batches (length-bucketed passes)",
                peer_is=f"{len(tasks)} sequential runs", floor_is="forward+backward of the same passes",
                rss_mb=mem.mb)
    case.meets_goal = case.ratio_vs_peer >= 2.0
    case.detail = {
        "tasks": tasks, "rows_per_task": b, "steps": steps, "reps": len(times["sequential"]),
        "rates": {k: rounded(v, 2) for k, v in rate.items()},
        "hardware_ceiling": rounded(ceiling),
        "per_task_widths": [int(batch.input_ids.shape[1]) for batch, _ in per_task],
        "mixed_passes": [list(batch.input_ids.shape) for batch, _ in mixed],
        "whole_batch_vs_sequential": rounded(rate["batched_whole"] / rate["sequential"]),
        "why": (f"the frozen trunk does the same work per example batched or not: a bare forward+backward "
                f"of the mixed batch runs at {ceiling:.2f}x the per-task batches' throughput on this machine, "
                "which bounds any batching gain" if ceiling < 2 else ""),
    }
    return case
