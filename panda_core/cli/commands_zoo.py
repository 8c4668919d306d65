"""`zoo`: the prompt zoo shipped with the tool (docs/zoo.md).

    zoo build [--backbones ...] [--tasks ...] [--prompt-types ...] [--dry-run]
    zoo list
    zoo install
    zoo bundle [--backbone B] [--prompt-type T]

`build` trains (or reuses) what the zoo lacks and writes its files and
manifest; `install` registers the zoo's prompts in the cache (what `make
setup` runs); `bundle` computes the study bundle from the zoo's prompts.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import PandaError
from .base import command, log

ACTIONS = ("build", "list", "install", "bundle", "check")


def _zoo_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", choices=ACTIONS,
                    help="build: train or reuse what the zoo lacks; list: its prompts; install: register them in "
                         "the cache; bundle: compute the study bundle from them; check: the zoo's consistency")
    sp.add_argument("--backbones", nargs="*", help="build: only these backbones of the zoo's plan")
    sp.add_argument("--tasks", nargs="*", help="build: only these tasks")
    sp.add_argument("--prompt-types", nargs="*", help="build: only these prompt types (input, deep)")
    sp.add_argument("--dry-run", action="store_true", help="build: say what would be kept, reused and trained")
    sp.add_argument("--backbone", default="minilm", help="bundle: the backbone of the bundled prompts")
    sp.add_argument("--prompt-type", default="input", help="bundle: the prompt type of the bundled prompts")


def _canonical(args: argparse.Namespace) -> str:
    """The command line that does this again (recorded in every zoo file)."""
    parts = ["python -m panda_core zoo", args.action]
    for flag, values in (("--backbones", args.backbones), ("--tasks", args.tasks),
                         ("--prompt-types", args.prompt_types)):
        if values:
            parts.append(" ".join([flag, *values]))
    return " ".join(parts)


@command("zoo", "the prompt zoo shipped with the tool: build, list, install, bundle, check", _zoo_arguments)
def cmd_zoo(args: argparse.Namespace) -> Any:
    if args.action == "list":
        from ..zoo.install import zoo_list

        return zoo_list()
    if args.action == "install":
        from ..zoo.install import install

        out = install()
        for line in out["problems"]:
            log(f"warning: {line}")
        return out
    if args.action == "check":
        from ..zoo import zoo_dir, zoo_problems

        problems = zoo_problems()
        if problems:
            raise PandaError(f"the zoo at {zoo_dir()} is inconsistent: {problems[0]}"
                             + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        return {"zoo": str(zoo_dir()), "ok": True}
    if args.action == "bundle":
        from ..zoo.bundle_build import build_bundle

        return build_bundle(backbone=args.backbone, prompt_type=args.prompt_type, log=log,
                            command=f"python -m panda_core zoo bundle --backbone {args.backbone} "
                                    f"--prompt-type {args.prompt_type}")
    from ..zoo.build import build
    from ..zoo.plan import zoo_plan

    items = zoo_plan(args.backbones or None, args.tasks or None, args.prompt_types or None)  # refuses bad names first
    return build(items, dry_run=args.dry_run, command=_canonical(args), log=log)
