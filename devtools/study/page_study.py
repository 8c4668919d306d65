"""The PANDA vs PoT part of the page: the verdict (worded from the numbers
alone, so it follows them whichever way they fall) and the study's tables."""

from __future__ import annotations

from typing import Any

from .analysis import NEGATIVE, PRIMARY
from .config import AA, PANDA, PANDA_RANDOM, POT, PT
from .page_format import ARM_ORDER, NOISE_NOTE, acc, arm_label, diff, fmt, md_table, pval, reading, test_items

ALPHA = 0.05
PAPER_EFFECT = 0.023  # PANDA's average gain over PoT in the paper (points / 100)

#: comparison name -> what it answers, in the order of the summary table
QUESTIONS = {
    PRIMARY: "PANDA - PoT (primary)",
    NEGATIVE: "PANDA - PoT on the negative-transfer sources",
    "pot_vs_pt": "PoT - PT (is transfer positive?)",
    "panda_vs_pt": "PANDA - PT",
    "panda_random_vs_pot": "PANDA (random-init student) - PoT",
    "aa": "A/A: PoT - PoT (independent seeds)",
    "mt_vs_pt": "model tuning - PT",
    "pt_vs_untrained": "PT - untrained prompt",
    "pt_vs_random": "PT - random prompt",
    "pt_vs_majority": "PT - majority class",
    "deep_pt_vs_pt": "deep PT - input-level PT",
    "deep_pot_vs_pot": "deep PoT - input-level PoT",
    "deep_panda_vs_panda": "deep PANDA - input-level PANDA",
}


def _stat(o: dict[str, Any]) -> str:
    return (f"Mean paired PANDA - PoT {o['diff']:+.3f}, 95% hierarchical bootstrap interval "
            f"[{o['low']:+.3f}, {o['high']:+.3f}] (targets -> sources -> seeds -> test items), exact sign-flip "
            f"p = {pval(o['p_value'])} over {o['n_cells']} (target, source) cells ({o['n_runs']} paired runs, "
            f"{o['n_items']} paired test items)")


def verdict(stats: dict[str, Any] | None) -> list[str]:
    """The answer in words. Decided only when the hierarchical interval excludes 0
    AND the sign-flip test rejects at 5%; when only one of the two says so, not
    decided (and which way it leans); otherwise within noise. Unless PANDA won,
    the page says plainly that it did not beat PoT."""
    comps = (stats or {}).get("comparisons") or {}
    if PRIMARY not in comps:
        return ["**Verdict: not run.** The PANDA vs PoT study has no paired runs in this report.", ""]
    o = comps[PRIMARY]["overall"]
    if o["low"] > 0 and o["p_value"] < ALPHA:
        head = "**Verdict: PANDA beat vanilla PoT.**"
    elif o["high"] < 0 and o["p_value"] < ALPHA:
        head = "**Verdict: PANDA lost to vanilla PoT.**"
    elif o["low"] > 0 or o["high"] < 0:
        head = ("**Verdict: not decided.** The bootstrap interval excludes 0, but the sign-flip test over the "
                f"cells does not reject \"no difference\" at {ALPHA} (the smallest p it can give with "
                f"{o['n_cells']} cells is {pval(o['min_p'])}).")
    elif o["p_value"] < ALPHA:
        side = "below" if o["diff"] < 0 else "above"
        head = (f"**Verdict: not decided; PANDA leans {side} vanilla PoT.** The sign-flip test over the cells "
                f"rejects \"no difference\" at {ALPHA} (PANDA is {side} PoT in more cells than chance allows), but "
                "the hierarchical bootstrap interval still covers 0, so by the page's rule the difference is "
                "within noise.")
    else:
        head = "**Verdict: PANDA and vanilla PoT are within noise of each other.**"
    half = (o["high"] - o["low"]) / 2
    power = (f"The interval's half-width is {half:.3f}, so a gain the size of the paper's average "
             f"(+{PAPER_EFFECT:.3f}) {'would' if half < PAPER_EFFECT else 'would not'} have been told apart "
             "from 0 by a study of this size.")
    lines = [f"{head} {_stat(o)}. {power}"]
    if not (o["low"] > 0 and o["p_value"] < ALPHA):
        lines.append("**On our data, PANDA did not beat vanilla PoT.**")
    if NEGATIVE in comps:
        n = comps[NEGATIVE]["overall"]
        lines.append(f"On the sources chosen in advance for their negative transfer under PoT, PANDA - PoT is "
                     f"{diff(n)} ({reading(n, 'PANDA', 'PoT')}).")
    aa = comps.get("aa")
    if aa is None:
        lines.append("No A/A control was run, so the intervals' calibration is unchecked.")
    elif aa["overall"]["low"] <= 0 <= aa["overall"]["high"]:
        lines.append(f"The A/A control (PoT against PoT under independent seeds) gives {diff(aa['overall'])}: "
                     "its interval covers 0, as it must.")
    else:
        lines.append(f"**Warning: the A/A control gives {diff(aa['overall'])}, an interval that excludes 0: the "
                     "intervals understate the noise, and the verdict above should not be trusted.**")
    return [" ".join(lines), ""]


def _design(d: dict, cfg: dict) -> list[str]:
    design, fam, sizes = cfg["design"], d["families"], d["test_sizes"]
    rows = [[t, fam.get(t), sizes.get(t), "; ".join(f"{s} ({fam.get(s)}: {design['why'].get(t, {}).get(s, '')})"
                                                     for s in srcs)]
            for t, srcs in design["sources"].items()]
    subset = "; ".join(f"{t}: {', '.join(s)}" for t, s in design["subset"].items())
    tr = design["train"]
    return [md_table(["target", "family", "test items", "sources, fixed in advance (why)"], rows), "",
            f"Seeds {', '.join(map(str, d['panda_vs_pot']['seeds']))}; each seed changes the fresh prompt's "
            "initialisation, the batch order and PANDA's PoT teacher. Budget of every run: "
            f"{tr['train_limit']} training examples, {tr['steps']} steps of batch {tr['batch_size']}, dev "
            f"evaluation every {tr['eval_every']} steps on {tr['dev_limit']} dev examples (best-dev prompt), "
            f"{test_items(tr['test_limit'])}. The subset of the control arms (random-init student, A/A): "
            f"{subset}, every seed.", ""]


def _accuracy(stats: dict) -> list[str]:
    arms = [a for a in ARM_ORDER if a in stats["arms"]]
    rows = [[t, *(acc(v["accuracy"].get(a)) for a in arms)] for t, v in stats["targets"].items()]
    return ["Accuracy per target: mean over seeds (and over sources for the transfer arms), with a 95% "
            "interval from the bootstrap over sources, seeds and test items (a single run: Wilson).", "",
            md_table(["target", *map(arm_label, arms)], rows), ""]


def _comparisons(comps: dict) -> list[str]:
    rows = []
    for name, question in QUESTIONS.items():
        if name in comps:
            o = comps[name]["overall"]
            a, b = comps[name]["a"], comps[name]["b"]
            rows.append([question, o["n_cells"], o["n_runs"], diff(o, p=False), pval(o["p_value"]),
                         pval(o["min_p"]), reading(o, arm_label(a), arm_label(b))])
    return ["Every comparison, paired on the same test items (mean over cells; hierarchical bootstrap "
            "interval; exact sign-flip p over the cells, and the smallest p the test can give with that many):", "",
            md_table(["comparison", "cells", "paired runs", "difference [95% interval]", "sign-flip p",
                      "smallest possible p", "reading"], rows), ""]


def _cells(d: dict, stats: dict) -> list[str]:
    comps, fam = stats["comparisons"], d["families"]
    shown = [n for n in (PRIMARY, "pot_vs_pt", "panda_random_vs_pot", "aa") if n in comps]
    per = {n: {(c["target"], c["source"]): c for c in comps[n]["cells"]} for n in shown}
    rows = []
    for t, v in stats["targets"].items():
        for s, cell in v["cells"].items():
            a = cell["accuracy"]
            rows.append([t, f"{s} ({fam.get(s)})", acc(v["accuracy"].get(PT)), acc(a.get(POT)), acc(a.get(PANDA)),
                         fmt(cell["kd_weight"]), *(diff(per[n].get((t, s))) for n in shown)])
    head = ["target", "source", arm_label(PT), arm_label(POT), arm_label(PANDA), "lambda (mean)",
            *(QUESTIONS[n].replace(" (primary)", "") for n in shown)]
    return ["Per cell (mean over seeds; a difference's interval resamples the cell's seeds and items, its p is "
            "the exact McNemar test on the pooled items):", "", md_table(head, rows), ""]


def _per_target(stats: dict) -> list[str]:
    comps = stats["comparisons"]
    shown = [n for n in (PRIMARY, "pot_vs_pt", "mt_vs_pt") if n in comps]
    per = {n: {r["target"]: r for r in comps[n]["per_target"]} for n in shown}
    rows = [[t, *(diff(per[n].get(t)) for n in shown)] for t in stats["targets"]]
    return ["Per target (exact sign-flip p over the target's sources; a target with one cell, such as model "
            "tuning - PT, has the exact McNemar p of its pooled items instead):", "",
            md_table(["target", *(QUESTIONS[n].replace(" (primary)", "") for n in shown)], rows), ""]


def _deep(pvp: dict) -> list[str]:
    deep, comps = pvp.get("deep") or {}, pvp["stats"]["comparisons"]
    lines = ["### Deep vs input-level prompts", ""]
    if not deep.get("ran"):
        why = deep.get("skipped_because") or "it was not requested in the study's config"
        return lines + [f"The deep-prompt arm was skipped: {why}.", ""]
    cells = "; ".join(f"{t}: {', '.join(s)}" for t, s in (deep.get("subset") or {}).items())
    lines += [f"PT, PoT and PANDA with deep prompts (per-layer key/value prefixes, P-tuning v2) on {cells}, every "
              "seed, paired with the same arms with input-level prompts on the same items (the deep source "
              "prompts were trained with the source prompts' budget).", ""]
    rows = [[QUESTIONS[n], diff(comps[n]["overall"]),
             reading(comps[n]["overall"], arm_label(comps[n]["a"]), arm_label(comps[n]["b"]))]
            for n in ("deep_pt_vs_pt", "deep_pot_vs_pot", "deep_panda_vs_panda") if n in comps]
    return lines + [md_table(["comparison (subset)", "difference [95% interval]", "reading"], rows), ""]


def study_section(d: dict) -> list[str]:
    pvp = d["panda_vs_pot"]
    stats = pvp["stats"]
    lines = [f"## {arm_label(PANDA)} vs vanilla {arm_label(POT)}", "", NOISE_NOTE, ""]
    lines += _design(d, d["config"]) + _accuracy(stats) + _comparisons(stats["comparisons"])
    lines += _per_target(stats) + _cells(d, stats) + _deep(pvp)
    if PANDA_RANDOM not in stats["arms"] and AA not in stats["arms"]:
        lines += ["The random-init student and the A/A control were not run.", ""]
    return lines
