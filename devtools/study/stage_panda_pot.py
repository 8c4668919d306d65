"""Stage `transfers`: the PANDA vs PoT study (design and sizing in
`config.Design`; the stage keeps the CLI's name "transfers").

Seed by seed (so a stopped report already holds whole seeds): per target PT
from scratch and the baselines on the same test items, per cell PoT and PANDA
(its PoT teacher is the PoT run of the same cell and seed, reused by its key);
then model tuning per target and seed; then the subset's arms: PANDA with a
random-init student and the A/A control (PoT under seed i + number of seeds);
then, when the library trains deep prompts, the deep-prompt arms on their subset. `analysis.summarize`
turns the runs into the page's numbers.
"""

from __future__ import annotations

from dataclasses import fields, replace

from panda_core.errors import PandaError
from panda_core.training import TrainConfig

from .analysis import summarize
from .baselines import majority_items
from .config import AA, DEEP_PREFIX, MAJORITY, MT, PANDA, PANDA_RANDOM, POT, PT, RANDOM, UNTRAINED
from .context import Study

#: TrainConfig fields that could select the prompt type, in the order they are looked for
PROMPT_TYPE_FIELDS = ("prompt_type", "prompt_kind")


def deep_support() -> tuple[str | None, str]:
    """(the TrainConfig field that selects the prompt type, "") when the library
    trains deep prompts, else (None, why not) for the page."""
    try:
        from panda_core.prompts.types import PROMPT_TYPES
    except ImportError:
        return None, "the library has no prompt-type registry (panda_core.prompts.types)"
    if "deep" not in PROMPT_TYPES.names():
        return None, "no 'deep' prompt type is registered in panda_core.prompts.types"
    names = {f.name for f in fields(TrainConfig)}
    name = next((n for n in PROMPT_TYPE_FIELDS if n in names), None)
    if name is None:
        return None, ("TrainConfig has no field selecting the prompt type yet: deep prompts are registered "
                      "(panda_core.prompts.types) but not wired into training, so PT, PoT and PANDA cannot "
                      "train one")
    return name, ""


def panda_vs_pot(study: Study) -> None:
    from panda_core.prompts import task_seed

    d, log = study.cfg.design, study.log
    for t in d.targets:  # refused before any run: a target the study cannot score well
        if t not in study.tasks or study.test_sizes.get(t, 0) < d.min_test:
            raise PandaError(f"study target {t!r} is not an available offline task with at least {d.min_test} "
                             f"test examples (has {study.test_sizes.get(t)})")
    seeds = d.seed_list(study.cfg.seed)
    train = {seed: replace(d.train, seed=seed) for seed in seeds}
    runs: list[dict] = []

    def run(arm: str, source: str | None, target: str, seed: int, method: str, cfg: TrainConfig,
            **knobs) -> None:
        log(f"{arm}: {source or '-'} -> {target}, seed {seed} {study.elapsed()}")
        res = study.transfer(source, target, method, cfg, **knobs)
        runs.append(study.record(arm, target, source, seed, res, run_seed=cfg.seed))

    for seed in seeds:
        for t in d.targets:
            run(PT, None, t, seed, PT, train[seed])
            untrained = study.baselines.items(t, "vocab", task_seed(t, seed), train[seed])  # PT's fresh prompt
            # one random prompt per target (the base seed's), set beside every seed's runs
            rand = study.baselines.items(t, "random", task_seed(t, seeds[0]), train[seeds[0]])
            runs.append(study.scored(UNTRAINED, t, None, seed, untrained))
            runs.append(study.scored(RANDOM, t, None, seed, rand))
            runs.append(study.scored(MAJORITY, t, None, seed, majority_items(t, len(untrained))))
            for s in d.sources[t]:
                run(POT, s, t, seed, POT, train[seed])
                run(PANDA, s, t, seed, PANDA, train[seed])
    if d.model_tuning:
        for seed in seeds:
            for t in d.targets:
                run(MT, None, t, seed, MT, train[seed])
    for seed in seeds:
        for t, s in d.cells(subset=True):
            if d.random_init:
                run(PANDA_RANDOM, s, t, seed, PANDA, train[seed], student_init="random")
            if d.aa_control:  # an independent replicate of PoT: seed i against seed i + seeds
                run(AA, s, t, seed, POT, replace(d.train, seed=seed + d.seeds))
    field, why = deep_support()
    deep = {"requested": d.deep, "ran": bool(d.deep and field), "skipped_because": None if field else why,
            "subset": d.deep_subset}
    if d.deep and field:
        _deep_arms(study, field, seeds, train, run)
    study.data["panda_vs_pot"] = {"seeds": seeds, "runs": runs, "deep": deep,
                                  "stats": summarize(runs, study.items, d.sources, d.negative)}


def _deep_arms(study: Study, field: str, seeds: list[int], train: dict[int, TrainConfig], run) -> None:
    """PT, PoT and PANDA with deep prompts on the deep subset. The deep PT prompts
    they read (each source's, and each target's for PANDA's metric) are trained
    first with the PT stage's config, unless the store has them."""
    from panda_core.ops import train_prompt

    from ..pt_table import done_train_run

    d = study.cfg.design
    pt_cfg = replace(study.cfg.pt, seed=study.cfg.seed, **{field: "deep"})
    for task in dict.fromkeys(x for cell in d.cells(deep=True) for x in cell):
        if done_train_run(task, study.bb.name, pt_cfg) is None:
            study.log(f"deep PT prompt of {task} ({pt_cfg.steps} steps) {study.elapsed()}")
            train_prompt(task, study.bb.name, pt_cfg)
    for seed in seeds:
        cfg = replace(train[seed], **{field: "deep"})
        for t in d.deep_subset:
            run(DEEP_PREFIX + PT, None, t, seed, PT, cfg)
        for t, s in d.cells(deep=True):
            run(DEEP_PREFIX + POT, s, t, seed, POT, cfg)
            run(DEEP_PREFIX + PANDA, s, t, seed, PANDA, cfg)
