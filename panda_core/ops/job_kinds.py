"""The job kinds a background worker can run: the JOB_KINDS registry.

Each entry knows three things about its kind of job:

- `describe(params)`: what the queued run row records (method, target,
  backbone, source), so the Runs page can show a job before it starts;
- `build(params)`: the JSON parameters a page submitted turned into the typed
  arguments of the operation (configs are built, so bad values are refused
  when the job is submitted, not minutes later in the worker);
- `execute(args, ctx)`: the operation itself, adopting the queued run
  (`ctx.run_id`) and reporting progress / polling cancellation through `ctx`.

Adding a job kind is one `JOB_KINDS.register(JobKind(...))` here. Every
import of torch-heavy code happens inside `build`/`execute`, so a waiting
worker (which imports this module) stays small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import PandaError
from ..registry import Registry


@dataclass(frozen=True)
class JobContext:
    """What a running job reports to: its run, progress sink and cancel flag."""

    run_id: str
    progress: Callable[[dict], None]
    should_stop: Callable[[], bool]


def describe_params(params: dict[str, Any]) -> dict[str, Any]:
    """The run row of a queued job, read from the parameters every page sends."""
    return {
        "method": params.get("method", "pt"),
        "target": params.get("target") or params.get("task") or params.get("train_task") or "?",
        "backbone": params.get("backbone") or params.get("target_backbone") or "minilm",
        "source": params.get("source"),
    }


@dataclass(frozen=True)
class JobKind:
    """One kind of background job (see the module docstring)."""

    name: str
    label: str
    build: Callable[[dict[str, Any]], dict[str, Any]]
    execute: Callable[[dict[str, Any], JobContext], Any]
    describe: Callable[[dict[str, Any]], dict[str, Any]] = describe_params

    def arguments(self, params: dict[str, Any]) -> dict[str, Any]:
        """`build(params)`, with malformed parameters refused as one PandaError."""
        if not isinstance(params, dict):
            raise PandaError(f"a {self.name} job needs its parameters as a mapping, got {type(params).__name__}")
        try:
            return self.build(params)
        except KeyError as err:
            raise PandaError(f"a {self.name} job needs the parameter {err}") from None
        except (TypeError, ValueError) as err:
            text = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise PandaError(f"bad parameters for a {self.name} job: {text}") from None


JOB_KINDS: Registry[JobKind] = Registry("job kind")


# ----------------------------------------------------------------- train
def _build_train(params: dict[str, Any]) -> dict[str, Any]:
    from ..training import TrainConfig

    return {"task": params["task"], "backbone": params.get("backbone", "minilm"),
            "config": TrainConfig.from_dict(params.get("config", {}))}


def _execute_train(args: dict[str, Any], ctx: JobContext) -> Any:
    from .training import train_prompt

    return train_prompt(args["task"], args["backbone"], args["config"], ctx.progress, ctx.should_stop,
                        run_id=ctx.run_id)


JOB_KINDS.register(JobKind("train", "Train a prompt", _build_train, _execute_train))


# -------------------------------------------------------------- transfer
def _build_transfer(params: dict[str, Any]) -> dict[str, Any]:
    from ..training import TrainConfig
    from ..transfer import TransferConfig

    raw = dict(params.get("config", {}))
    config = TransferConfig(train=TrainConfig.from_dict(raw.pop("train", {})), **raw)
    return {"source": params.get("source"), "target": params["target"], "method": params["method"],
            "backbone": params.get("backbone", "minilm"), "config": config}


def _execute_transfer(args: dict[str, Any], ctx: JobContext) -> Any:
    from . import run_transfer  # the facade: ops.transfer

    return run_transfer(args["source"], args["target"], args["method"], args["backbone"], args["config"],
                        ctx.progress, ctx.should_stop, run_id=ctx.run_id)


JOB_KINDS.register(JobKind("transfer", "Transfer a prompt", _build_transfer, _execute_transfer))


# ------------------------------------------------------------ projection
def _build_project(params: dict[str, Any]) -> dict[str, Any]:
    for key in ("source_backbone", "target_backbone", "train_task"):
        if key not in params:
            raise KeyError(key)
    return dict(params)


def _execute_project(args: dict[str, Any], ctx: JobContext) -> Any:
    from ..crossmodel import run_projection

    return run_projection(progress=ctx.progress, run_id=ctx.run_id, should_stop=ctx.should_stop, **args)


JOB_KINDS.register(JobKind("project", "Train a cross-model projector", _build_project, _execute_project))
