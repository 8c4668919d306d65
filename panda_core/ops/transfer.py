"""Running a transfer as a recorded operation (the facade the CLI, the app's
jobs, sweeps and the report call).

`plan_transfer` validates everything at the boundary, before a model is
loaded or anything is written: the method, the tasks, the number of sources,
a source equal to the target, and the stored PT prompts the method needs
(refused with the command that trains them). It resolves those prompt ids
ONCE, so the run's key names exactly the prompts that are loaded, and plans
PANDA's PoT teacher as a run of its own under the key a plain PoT run of the
pair gets. `run_transfer` then reuses an identical finished run by its key,
or loads the backbone, resolves the teacher (reused by its key, else run once
and recorded), runs the method, saves its prompt and records the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import store
from ..errors import PandaError
from ..prompts import SoftPrompt
from ..transfer.base import METHODS, Need, Sources, TransferContext, TransferMethod
from ..transfer.config import TransferConfig
from .accuracy import accuracy_summary
from .lifecycle import recorded

SourceArg = str | Sequence[str] | None


@dataclass(frozen=True)
class TransferPlan:
    """A validated transfer: the method, its tasks, the stored prompts it
    reads (ids resolved once), PANDA's teacher run and the run's key."""

    method: TransferMethod
    sources: tuple[str, ...]
    target: str
    backbone: str
    config: TransferConfig
    source_ids: tuple[str, ...] = ()
    target_id: str | None = None
    teacher: TransferPlan | None = None
    key: str = ""

    @property
    def source(self) -> str | None:
        """The source as runs record it ("mr", "mr,tweets" or None)."""
        return ",".join(self.sources) or None


def parse_sources(source: SourceArg, method: TransferMethod, from_source: bool = False) -> tuple[str, ...]:
    """The source tasks a method reads, from "mr", "mr,tweets" or a list;
    refuses a missing source, several for a one-source method, blanks and
    repeats, and a source given to a method whose source is optional unless
    `from_source` asks to start from it."""
    if method.sources is Sources.NONE:
        return ()  # PT trains from scratch: a given source is not read
    items = [source] if isinstance(source, str) else list(source or [])
    names = tuple(s.strip() for item in items for s in str(item).split(","))
    if method.sources is Sources.OPTIONAL and not from_source:
        if names and names != ("",):
            raise PandaError(f"method '{method.name}' trains from a fresh prompt and reads no source; "
                             "drop --source, or pass --from-source to start from the source prompt")
        return ()
    if not names or names == ("",):
        raise PandaError(f"method '{method.name}' needs a source task (--source)")
    if "" in names:
        raise PandaError(f"empty task name in the source list {source!r}: separate tasks with single commas")
    if len(set(names)) < len(names):
        raise PandaError(f"a source task is listed twice in {source!r}")
    if len(names) > 1 and method.sources in (Sources.ONE, Sources.OPTIONAL):
        many = [m.name for m in METHODS if m.sources is Sources.MANY]
        raise PandaError(f"method '{method.name}' takes one source, got {len(names)} ({', '.join(names)}); "
                         f"methods that take several: {', '.join(many) or 'none'}")
    return names


def backbone_name(backbone: str) -> str:
    """The name a backbone's prompts and runs are stored under. Registry names
    need no model; a folder or hub id is loaded to learn it (a backbone that
    is not installed, e.g. of imported prompts, is refused in one line naming it)."""
    from ..backbones import REGISTRY, TINY_MLM, get_backbone
    from ..backbones.foreign import require_installed

    name = backbone.strip().lower() if isinstance(backbone, str) else ""
    if name in REGISTRY or name == TINY_MLM:
        return name
    require_installed(backbone)
    return get_backbone(backbone).name


def stored_pt_id(task: str, backbone: str, length: int, prompt_type: str = "input") -> str:
    """The id of `task`'s newest PT prompt of `length` tokens and `prompt_type`
    on `backbone`, or a refusal that names the command training it."""
    pid = store.latest_prompt_id(task, backbone, "pt", length, prompt_type)
    if pid is None:
        typed = "" if prompt_type == "input" else f" {prompt_type}"
        flag = "" if prompt_type == "input" else f" --prompt-type {prompt_type}"
        raise PandaError(
            f"no trained {length}-token{typed} prompt for task '{task}' on '{backbone}'; train it first: "
            f"python -m panda_core train --task {task} --backbone {backbone} --prompt-len {length}{flag}"
        )
    return pid


def source_prompt(task: str, backbone: str, length: int) -> SoftPrompt:
    """The newest PT prompt of `task` on `backbone` with the given length."""
    return store.load_prompt(stored_pt_id(task, backbone, length))


def plan_transfer(source: SourceArg, target: str, method: str, backbone: str = "minilm",
                  config: TransferConfig | None = None) -> TransferPlan:
    """Validate a transfer and resolve what it reads; loads no model (unless
    the backbone is a folder or hub id) and writes nothing."""
    from ..data import get_task

    config = TransferConfig() if config is None else config
    if not isinstance(config, TransferConfig):
        raise PandaError(f"config must be a TransferConfig, got {type(config).__name__}")
    m = METHODS.get(method)
    if config.from_source and m.sources is not Sources.OPTIONAL:
        raise PandaError(f"--from-source applies to methods with an optional source "
                         f"({', '.join(x.name for x in METHODS if x.sources is Sources.OPTIONAL) or 'none'}), "
                         f"not '{m.name}'")
    sources = parse_sources(source, m, config.from_source)
    get_task(target)
    for s in sources:
        get_task(s)
    if target in sources and not m.allows_self:
        raise PandaError(f"the source '{target}' is the target: {m.name} transfers from another task; "
                         f"choose a different --source")
    return _plan(m, sources, target, backbone_name(backbone), config)


def _plan(m: TransferMethod, sources: tuple[str, ...], target: str, backbone: str, config: TransferConfig,
          source_ids: tuple[str, ...] | None = None) -> TransferPlan:
    """Resolve the prompt ids (unless given) and the teacher of a validated
    transfer; reads the store once per prompt, writes nothing."""
    length, kind = config.train.prompt_length, config.train.prompt_type
    needs = m.requires(config)
    if source_ids is None:
        wanted = Need.SOURCE_PROMPTS in needs
        source_ids = tuple(stored_pt_id(s, backbone, length, kind) for s in sources) if wanted else ()
    target_id = stored_pt_id(target, backbone, length, kind) if Need.TARGET_PROMPT in needs else None
    teacher = None
    if Need.POT_TEACHER in needs:  # the PoT run of the pair, under the key a plain PoT run of this train config gets
        pot_config = TransferConfig(train=config.train)
        teacher = _plan(METHODS.get("pot"), sources[:1], target, backbone, pot_config, source_ids[:1])
    used = source_ids + ((target_id,) if target_id else ())
    source = ",".join(sources) or None
    key = config.key(m.name, source, target, backbone, used)
    return TransferPlan(m, sources, target, backbone, config, source_ids, target_id, teacher, key)


def run_transfer(
    source: SourceArg,
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
    {"run_id", "method", "source", "target", "backbone", "test_acc", "dev_curve", "seconds",
    "kd_weight", ...}; a reused run adds "reused": True. `run_id` adopts a queued job's run."""
    plan = plan_transfer(source, target, method, backbone, config)
    if reuse:
        done = store.done_run_for_key(plan.key)
        if done is not None and done["result"]:
            if run_id is not None and run_id != done["id"]:
                store.update_run(run_id, status="done", result=done["result"] | {"reused_from": done["id"]})
            return done["result"] | {"reused": True}
    from ..backbones import get_backbone

    return execute(plan, get_backbone(plan.backbone), progress, should_stop, run_id)


def execute(plan: TransferPlan, bb, progress: Callable[[dict], None] | None = None,
            should_stop: Callable[[], bool] | None = None, run_id: str | None = None) -> dict:
    """Run a planned transfer on the loaded backbone `bb` as one recorded run;
    saves the method's prompt and returns the result JSON."""
    m = plan.method
    with recorded("transfer", m.name, plan.target, bb.name, plan.config.to_dict(), source=plan.source,
                  key=plan.key, run_id=run_id) as run:
        teacher = _teacher(plan.teacher, bb, should_stop) if plan.teacher is not None else None
        ctx = TransferContext(
            backbone=bb, target=plan.target, config=plan.config, sources=plan.sources,
            source_prompts=tuple(store.load_prompt(pid) for pid in plan.source_ids),
            target_prompt=store.load_prompt(plan.target_id) if plan.target_id else None,
            teacher_prompt=teacher, run_id=run.id, progress=progress, should_stop=should_stop, on_eval=run.curve,
        )
        result = m.run(ctx)
        if result.prompt is not None:
            result.prompt_id = store.save_prompt(result.prompt)
        out = {"run_id": run.id, "method": m.name, "source": plan.source, "target": plan.target,
               "backbone": bb.name} | result.to_dict()
        if result.test_correct is not None:
            out |= accuracy_summary(plan.target, result.test_correct)
        run.done(out, prompt_id=result.prompt_id)
    return out


def _teacher(plan: TransferPlan, bb, should_stop: Callable[[], bool] | None) -> SoftPrompt:
    """PANDA's PoT teacher: the prompt of the finished PoT run with the
    teacher's key, else of a PoT run made now (recorded as its own run)."""
    done = store.done_run_for_key(plan.key)
    prompt_id = ((done or {}).get("result") or {}).get("prompt_id")
    if not prompt_id:
        prompt_id = execute(plan, bb, should_stop=should_stop).get("prompt_id")
    if not prompt_id:
        raise PandaError("the PoT teacher run stored no prompt")
    return store.load_prompt(prompt_id)
