"""What the zoo holds, fixed here so `zoo build` is one reproducible command.

- minilm: every offline task of the catalogue, input-level and deep prompts,
  at the default `train` budget (`TrainConfig()`, seed 0): the prompts the
  README's PT table and the report train, so a store that has them is reused;
- mpnet and smollm2: six tasks covering the four families (sentiment: mr,
  yelp_uci, amazon_uci; topic: bbc; NLI: epistemic; spam: spam_assassin),
  input-level prompts, at 100 steps scored on the first 500 test items
  (the budget of the README's PT table for those backbones:
  `pt-table --backbones mpnet smollm2 --steps 100 --test-limit 500`).

Prompts are 20 tokens. The expected size (`expected_bytes`) is computed from
the backbones' sizes without loading them, as if every tensor stayed fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import PandaError
from ..training import TrainConfig

SEED = 0
#: the larger backbones' tasks: every family at least once, the sentiment tasks the PT table already has
OTHER_TASKS = ("mr", "yelp_uci", "amazon_uci", "bbc", "epistemic", "spam_assassin")
#: the larger backbones' budget: what changes from `TrainConfig()` (the PT table's budget for them)
OTHER_BUDGET: dict[str, Any] = {"steps": 100, "test_limit": 500}
#: backbone -> (its tasks, None meaning every offline task of the catalogue; its prompt types; its budget changes)
PLAN: dict[str, tuple[tuple[str, ...] | None, tuple[str, ...], dict[str, Any]]] = {
    "minilm": (None, ("input", "deep"), {}),
    "mpnet": (OTHER_TASKS, ("input",), OTHER_BUDGET),
    "smollm2": (OTHER_TASKS, ("input",), OTHER_BUDGET),
}
#: header bytes a prompt file may need besides its tensors (metadata with provenance and scores)
HEADER_ALLOWANCE = 8 * 1024


@dataclass(frozen=True)
class ZooItem:
    """One prompt of the zoo: a task's prompt of one type on one backbone, trained with `config`."""

    backbone: str
    task: str
    prompt_type: str
    config: TrainConfig

    @property
    def key(self) -> tuple[str, str, str]:
        return self.backbone, self.prompt_type, self.task

    def describe(self) -> str:
        return f"{self.backbone} {self.prompt_type} {self.task}"


def budget(backbone: str, prompt_type: str = "input") -> TrainConfig:
    """The training budget of a backbone's zoo prompts (`TrainConfig()` for minilm)."""
    changes = PLAN[backbone][2] if backbone in PLAN else OTHER_BUDGET
    return TrainConfig(**{**changes, "seed": SEED, "prompt_type": prompt_type})


def offline_tasks() -> list[str]:
    """Every offline task of the catalogue (prepared or not: the plan does not depend on this machine)."""
    from ..data import OFFLINE

    return list(OFFLINE)


def zoo_plan(backbones: list[str] | None = None, tasks: list[str] | None = None,
             prompt_types: list[str] | None = None) -> list[ZooItem]:
    """The planned prompts, restricted to `backbones`, `tasks` and `prompt_types`
    when given; names outside the plan are refused in one line."""
    unknown = sorted(set(backbones or ()) - set(PLAN))
    if unknown:
        raise PandaError(f"the zoo has no plan for backbone(s) {', '.join(unknown)}; its backbones are "
                         f"{', '.join(PLAN)}")
    every_type = sorted({t for _, types, _ in PLAN.values() for t in types})
    unknown = sorted(set(prompt_types or ()) - set(every_type))
    if unknown:
        raise PandaError(f"the zoo plans no {', '.join(unknown)} prompts; its prompt types are {', '.join(every_type)}")
    items = []
    for bb in backbones or list(PLAN):
        bb_tasks, types, _ = PLAN[bb]
        for kind in types:
            if prompt_types and kind not in prompt_types:
                continue
            for task in bb_tasks or offline_tasks():
                if tasks is None or task in tasks:
                    items.append(ZooItem(bb, task, kind, budget(bb, kind)))
    planned = {i.task for i in zoo_plan_all()}
    unknown = sorted(set(tasks or ()) - planned)
    if unknown:
        raise PandaError(f"the zoo plans no prompt for task(s) {', '.join(unknown)}; see `zoo build --dry-run`")
    if not items:
        raise PandaError("nothing of the zoo's plan matches these backbones, tasks and prompt types")
    return items


def zoo_plan_all() -> list[ZooItem]:
    """The whole plan."""
    return [ZooItem(bb, task, kind, budget(bb, kind)) for bb, (bb_tasks, types, _) in PLAN.items()
            for kind in types for task in bb_tasks or offline_tasks()]


def expected_bytes(items: list[ZooItem], sizes: dict[str, dict[str, int]] | None = None) -> int:
    """The most the prompt files of `items` can take, every tensor in fp32 plus
    `HEADER_ALLOWANCE` each. `sizes`: backbone -> {"hidden_size", "num_layers"}
    (default: read from the installed backbones' configs, nothing loaded). A
    deep prompt's width is taken as the hidden size (an upper bound: SmolLM2's
    key/value width is smaller)."""
    sizes = sizes or _backbone_sizes()
    total = 0
    for item in items:
        s = sizes.get(item.backbone)
        if not s or not s.get("hidden_size"):
            raise PandaError(f"the size of backbone {item.backbone!r} is unknown here; install it (make setup)")
        n, d = item.config.prompt_length, int(s["hidden_size"])
        numel = n * d if item.prompt_type == "input" else int(s["num_layers"]) * 2 * n * d
        total += 4 * numel + HEADER_ALLOWANCE
    return total


def _backbone_sizes() -> dict[str, dict[str, int]]:
    from ..backbones import list_backbones

    return {r["name"]: {"hidden_size": r["hidden_size"], "num_layers": r["num_layers"]} for r in list_backbones()
            if r.get("hidden_size")}
