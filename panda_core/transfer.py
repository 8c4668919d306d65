"""Prompt transfer from a source task to a target task (METHODS.md 2-3).

Methods (one training loop underneath, see train.py):

- zero-shot     evaluate the target with the source prompt, no training;
- pt            prompt tuning on the target from a fresh prompt (baseline);
- pot           vanilla prompt transfer: start from the source prompt, CE only;
- panda         PoT plus distillation from a frozen teacher, weighted by the
                predicted transferability: L = CE + lambda(s,t) * MSE(z_S, z_T);
- model-tuning  all backbone weights trained (the upper reference).

PANDA's teacher (released code) is the vanilla-PoT prompt trained on the
target (best dev); it is reused from the store when an identical PoT run
exists. lambda(s,t) = lambda_max * clip(T(s,t), 0, 1) with T the PANDA metric
between the source prompt and the target's own PT prompt.
"""

from __future__ import annotations

import enum
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from . import store
from .backbones import get_backbone
from .errors import PandaError
from .metrics import panda_pair
from .prompts import PromptInit, SoftPrompt, init_prompt
from .tasks import get_task
from .train import Cancelled, TrainConfig, evaluate, train


class Method(str, enum.Enum):
    ZERO_SHOT = "zero-shot"
    PT = "pt"
    POT = "pot"
    PANDA = "panda"
    MODEL_TUNING = "model-tuning"


class KdForm(str, enum.Enum):
    SCALED = "scaled"  # lambda = lambda_max * clip(T, 0, 1)          (default)
    CODE = "code"  # lambda = 0.1 * T / batch_size, the released code's form


class Teacher(str, enum.Enum):
    POT = "pot"  # the vanilla-PoT prompt trained on the target (released code)
    SOURCE = "source"  # the source prompt itself (cheaper: no PoT run needed)


@dataclass
class TransferConfig:
    """Knobs of a transfer; `train` holds the shared training-loop settings."""

    train: TrainConfig = field(default_factory=TrainConfig)
    lambda_max: float = 1.0
    kd_form: str = KdForm.SCALED.value
    teacher: str = Teacher.POT.value
    student_init: str = "source"  # "source" (PoT + KD) or "random" (released code)
    metric_inputs: int = 32  # target inputs used by the PANDA metric
    fixed_lambda: float | None = None  # override the metric (ablations; 0 reduces PANDA to PoT)

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self, method: str, source: str | None, target: str, backbone: str, prompts: tuple = ()) -> str:
        """Identity of the work: equal keys mean the same run (for resume and reuse).
        `prompts` are the ids of the stored prompts the run reads."""
        knobs = self.to_dict() if method == Method.PANDA.value else {"train": asdict(self.train)}
        blob = json.dumps([method, source, target, backbone, knobs, list(prompts)], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def source_prompt(task: str, backbone: str, length: int) -> SoftPrompt:
    """The newest PT prompt of `task` on `backbone` with the given length."""
    pid = store.latest_prompt_id(task, backbone, "pt", length)
    if pid is None:
        raise PandaError(
            f"no trained {length}-token prompt for task '{task}' on '{backbone}'; "
            f"train it first: python -m panda_core train --task {task} --backbone {backbone} --prompt-len {length}"
        )
    return store.load_prompt(pid)


def kd_weight(config: TransferConfig, transferability: float) -> float:
    if config.fixed_lambda is not None:
        return config.fixed_lambda
    t = min(max(transferability, 0.0), 1.0)
    if KdForm(config.kd_form) is KdForm.CODE:
        return 0.1 * transferability / config.train.batch_size
    return config.lambda_max * t


def run_transfer(
    source: str | None,
    target: str,
    method: str,
    backbone: str = "minilm",
    config: TransferConfig | None = None,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    run_id: str | None = None,
    reuse: bool = True,
) -> dict:
    """Run one transfer and record it. Returns the DESIGN.md JSON:
    {"run_id", "method", "source", "target", "test_acc", "dev_curve", "seconds", "kd_weight", ...}."""
    config = config or TransferConfig()
    try:
        method = Method(method).value
    except ValueError:
        raise PandaError(f"unknown method '{method}'; choose from {[m.value for m in Method]}") from None
    get_task(target)
    if method != "pt" and not source:
        raise PandaError(f"method '{method}' needs a source task (--source)")
    bb = get_backbone(backbone)
    length = config.train.prompt_length
    used = [store.latest_prompt_id(source, bb.name, "pt", length)] if source else []
    if method == "panda":
        used.append(store.latest_prompt_id(target, bb.name, "pt", length))
    key = config.key(method, source, target, bb.name, tuple(used))
    if reuse:
        done = store.done_run_for_key(key)
        if done is not None and done["result"]:
            if run_id is not None and run_id != done["id"]:
                store.update_run(run_id, status="done", result=done["result"] | {"reused_from": done["id"]})
            return done["result"] | {"reused": True}
    run_id = run_id or store.create_run("transfer", method, target, bb.name, config.to_dict(), source=source, key=key)
    store.update_run(run_id, status="running")

    def on_eval(step: int, acc: float) -> None:
        store.add_curve_point(run_id, step, acc)

    try:
        out = _dispatch(method, source, target, bb, config, progress, should_stop, on_eval, run_id)
        out = {"run_id": run_id, "method": method, "source": source, "target": target, "backbone": bb.name} | out
        store.update_run(run_id, status="done", result=out, prompt_id=out.get("prompt_id"))
        return out
    except Cancelled as err:
        store.update_run(run_id, status="cancelled", error=str(err))
        raise
    except BaseException as err:
        store.update_run(run_id, status="failed", error=(str(err) or type(err).__name__).splitlines()[0][:500])
        raise


def _dispatch(method, source, target, bb, config: TransferConfig, progress, should_stop, on_eval, run_id) -> dict:
    cfg = config.train
    src = source_prompt(source, bb.name, cfg.prompt_length) if source else None
    if method == "zero-shot":
        t0 = time.perf_counter()
        acc = evaluate(bb, target, src.tensor, "test", head=None, limit=cfg.test_limit,
                       max_length=cfg.max_length, temperature=cfg.temperature)
        return {"test_acc": round(acc, 4), "dev_curve": [], "seconds": round(time.perf_counter() - t0, 1),
                "kd_weight": None, "source_prompt": src.prompt_id}

    teacher, lam, transferability = None, None, None
    init = None
    tcfg = TrainConfig(**cfg.to_dict())
    if method == "pot":
        init = src.tensor
    elif method == "pt":
        init = init_prompt(bb.embeddings(), cfg.prompt_length, cfg.init, seed=cfg.seed)
    elif method == "model-tuning":
        tcfg.tune_model = True
        init = src.tensor if src is not None else None
    elif method == "panda":
        target_pt = source_prompt(target, bb.name, cfg.prompt_length)
        transferability = panda_pair(bb, src.tensor, target_pt.tensor, target, config.metric_inputs)
        lam = kd_weight(config, transferability)
        teacher = _panda_teacher(source, target, bb, config, src)
        init = src.tensor if config.student_init == "source" else init_prompt(
            bb.embeddings(), cfg.prompt_length, PromptInit.VOCAB, seed=cfg.seed)
        tcfg.kd_weight = lam
    result = train(bb, target, tcfg, init=init, teacher_prompt=teacher, progress=progress,
                   should_stop=should_stop, on_eval=on_eval)
    prompt = SoftPrompt(
        # a PT baseline run is saved apart from `train`'s prompts, so it never becomes the task's source prompt
        tensor=result.prompt, backbone=bb.name, task=target,
        method="pt_baseline" if method == "pt" else method.replace("-", "_"),
        seed=cfg.seed, steps=result.steps, source_prompt=src.prompt_id if src else None,
        scores={"dev_acc": result.best_dev, "test_acc": result.test_acc},
        extra={"run_id": run_id, "kd_weight": lam, "source_task": source},
    )
    prompt_id = store.save_prompt(prompt) if method != "model-tuning" else None
    return {
        "test_acc": round(result.test_acc, 4), "dev_acc": round(result.best_dev, 4),
        "dev_curve": result.dev_curve, "seconds": round(result.seconds, 1), "kd_weight": lam,
        "transferability": transferability, "steps": result.steps, "best_step": result.best_step,
        "trainable_params": result.trainable_params, "prompt_id": prompt_id,
        "source_prompt": src.prompt_id if src else None,
    }


def _panda_teacher(source, target, bb, config: TransferConfig, src: SoftPrompt):
    if Teacher(config.teacher) is Teacher.SOURCE:
        return src.tensor
    pot = run_transfer(source, target, "pot", bb.name, TransferConfig(train=config.train))
    if not pot.get("prompt_id"):
        raise PandaError("the PoT teacher run stored no prompt")
    return store.load_prompt(pot["prompt_id"]).tensor
