"""The contract every transfer method keeps, and the `METHODS` registry.

A method is one module holding one `TransferMethod` subclass registered with
``@METHODS.add``. It declares what it needs (`sources`, `needs`) and `ops`
resolves those before `run` is called: the stored prompt ids are looked up
once (so a run's key names exactly the prompts it loads) and PANDA's PoT
teacher is a run of its own, reused by its key. `run(ctx)` trains or
evaluates and returns a typed `TransferResult`; it never writes to the
store (`ops` saves the prompt and records the run).

Everything downstream (the CLI's choices, the pages' selectors and labels,
the sweep planner, validation, the report) reads `METHODS`, so a new method
touches one file.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..prompts import SoftPrompt
from ..registry import Registry
from ..training import TrainConfig
from .config import TransferConfig

if TYPE_CHECKING:  # torch and the trainer load on first training, not at registry import
    import torch

    from ..training import TrainResult


class Sources(str, enum.Enum):
    """How many source tasks a method reads (the CLI's --source)."""

    NONE = "none"  # a given source is ignored (PT trains from scratch)
    ONE = "one"
    MANY = "many"  # a comma-separated list, e.g. "mr,tweets"
    OPTIONAL = "optional"  # none, unless the config asks to start from one (`TransferConfig.from_source`)


class Need(str, enum.Enum):
    """Inputs `ops` resolves for a method before it runs."""

    SOURCE_PROMPTS = "source_prompts"  # the newest PT prompt of each source task
    TARGET_PROMPT = "target_prompt"  # the target task's own PT prompt
    POT_TEACHER = "pot_teacher"  # the vanilla-PoT prompt of the pair (a PoT run, reused by its key)


@dataclass
class TransferContext:
    """What a method's `run` gets: the loaded backbone, the task names, the
    resolved inputs and the caller's callbacks."""

    backbone: Any  # a loaded `Backbone`
    target: str
    config: TransferConfig
    sources: tuple[str, ...] = ()
    source_prompts: tuple[SoftPrompt, ...] = ()
    target_prompt: SoftPrompt | None = None
    teacher_prompt: SoftPrompt | None = None
    run_id: str | None = None
    progress: Callable[[dict], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_eval: Callable[[int, float], None] | None = None

    @property
    def source(self) -> str | None:
        """The source as the run records it ("mr", or "mr,tweets" for several)."""
        return ",".join(self.sources) or None

    @property
    def source_prompt(self) -> SoftPrompt | None:
        """The first source's prompt (the only one for one-source methods)."""
        return self.source_prompts[0] if self.source_prompts else None

    @property
    def source_prompt_id(self) -> str | None:
        return ",".join(p.prompt_id or "" for p in self.source_prompts) or None


@dataclass
class TransferResult:
    """A method's outcome. `to_dict` gives the CLI's JSON keys (DESIGN.md):
    evaluation-only methods (no `trained`) report test_acc, dev_curve,
    seconds, kd_weight and source_prompt; trained ones add dev_acc,
    transferability, steps, best_step, trainable_params and prompt_id.
    `prompt` is the prompt to store (`ops` saves it and sets `prompt_id`)."""

    test_acc: float
    seconds: float
    dev_curve: list = field(default_factory=list)
    kd_weight: float | None = None
    source_prompt: str | None = None
    trained: TrainResult | None = None
    transferability: float | None = None
    prompt: SoftPrompt | None = None
    prompt_id: str | None = None
    test_correct: Any = None  # (N,) bool per test item; `ops` adds the interval and baseline from it

    def to_dict(self) -> dict:
        if self.trained is None:
            return {"test_acc": round(self.test_acc, 4), "dev_curve": self.dev_curve,
                    "seconds": round(self.seconds, 1), "kd_weight": self.kd_weight,
                    "source_prompt": self.source_prompt}
        t = self.trained
        return {
            "test_acc": round(self.test_acc, 4), "dev_acc": round(t.best_dev, 4), "dev_curve": self.dev_curve,
            "seconds": round(self.seconds, 1), "kd_weight": self.kd_weight,
            "transferability": self.transferability, "steps": t.steps, "best_step": t.best_step,
            "trainable_params": t.trainable_params, "prompt_id": self.prompt_id,
            "source_prompt": self.source_prompt,
        }


class TransferMethod:
    """Base class of a transfer method (subclass it in its own module and
    register it with ``@METHODS.add``).

    Attributes:
        name: the stable name (CLI --method, run rows, keys).
        label: the human name in pages and the report.
        help: one line for the CLI and the pages.
        sources: how many source tasks it reads (`Sources`).
        needs: the inputs `ops` resolves before `run` (`Need`); see `requires`.
        allows_self: a source equal to the target is allowed (zero-shot's in-task
            diagonal); otherwise it is refused at the boundary.
        sweepable: sweeps may plan it.
        saves_prompt: its trained prompt is stored (model tuning's state is the whole backbone).
        transfer_knobs: its key includes TransferConfig's knobs beyond `train` (PANDA's).
    """

    name: str = ""
    label: str = ""
    help: str = ""
    sources: Sources = Sources.ONE
    needs: tuple[Need, ...] = (Need.SOURCE_PROMPTS,)
    allows_self: bool = False
    sweepable: bool = True
    saves_prompt: bool = True
    transfer_knobs: bool = False

    def requires(self, config: TransferConfig) -> tuple[Need, ...]:
        """The needs under this config (PANDA with the source as teacher needs
        no PoT run; an optional source is read only when asked for)."""
        if self.sources is Sources.OPTIONAL and not config.from_source:
            return tuple(n for n in self.needs if n is not Need.SOURCE_PROMPTS)
        return self.needs

    @property
    def prompt_method(self) -> str:
        """The `method` its stored prompts carry."""
        return self.name.replace("-", "_")

    def run(self, ctx: TransferContext) -> TransferResult:
        raise NotImplementedError

    def train_target(self, ctx: TransferContext, init: torch.Tensor | None, *, teacher: torch.Tensor | None = None,
                     kd_weight: float | None = None, transferability: float | None = None,
                     **overrides: Any) -> TransferResult:
        """The one training path of every trained method: train on the target
        from `init` (with PANDA's teacher term when given) and wrap the result.
        `overrides` set TrainConfig fields for this run (e.g. tune_model)."""
        from ..training import train

        cfg = ctx.config.train
        if kd_weight is not None:
            overrides["kd_weight"] = kd_weight
        tcfg: TrainConfig = replace(cfg, **overrides)
        result = train(ctx.backbone, ctx.target, tcfg, init=init, teacher_prompt=teacher, progress=ctx.progress,
                       should_stop=ctx.should_stop, on_eval=ctx.on_eval)
        prompt = None
        if self.saves_prompt:
            prompt = SoftPrompt(
                tensor=result.prompt, backbone=ctx.backbone.name, task=ctx.target, method=self.prompt_method,
                seed=cfg.seed, steps=result.steps, source_prompt=ctx.source_prompt_id,
                scores={"dev_acc": result.best_dev, "test_acc": result.test_acc}
                | ({} if result.test_correct is None else {"n_test": len(result.test_correct)}),
                extra={"run_id": ctx.run_id, "kd_weight": kd_weight, "source_task": ctx.source},
            )
        return TransferResult(test_acc=result.test_acc, seconds=result.seconds, dev_curve=result.dev_curve,
                              kd_weight=kd_weight, source_prompt=ctx.source_prompt_id, trained=result,
                              transferability=transferability, prompt=prompt, test_correct=result.test_correct)


METHODS: Registry[TransferMethod] = Registry("transfer method")


def execution_order(names: list[str]) -> list[str]:
    """`names` in an order where a method runs after the runs it reuses
    (PANDA after PoT, whose run is its teacher), else in registry order."""
    rank = {n: i for i, n in enumerate(METHODS.names())}

    def key(name: str) -> tuple[int, int]:
        m = METHODS.get(name)
        return (int(Need.POT_TEACHER in m.needs), rank[m.name])

    return sorted(names, key=key)
