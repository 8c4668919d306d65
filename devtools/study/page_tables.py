"""The page's other sections: prompt tuning per task, NLI against majority
and model tuning, the zero-shot matrix, indicator validation and the
projectors; each accuracy beside its baselines, with intervals."""

from __future__ import annotations

from panda_core.indicators import INDICATORS

from .page_format import acc, diff, fmt, md_table, test_items


def pt_section(d: dict) -> list[str]:
    rows = [[r["task"], r["family"], r["n_test"], acc(r["majority"]), acc(r["untrained"]), acc(r["random_prompt"]),
             r["dev_acc"], acc({"acc": r["test_acc"], "ci": r["test_acc_ci"]}), diff(r.get("pt_vs_random")),
             diff(r.get("pt_vs_majority")), f"{r['seconds']:.0f}"] for r in d["pt"]]
    return ["## Prompt tuning per task", "",
            f"The source prompts, each on {test_items(d['config']['pt']['test_limit'])} of its task beside the "
            "majority class, the untrained prompt it started from and a random Gaussian prompt at the embedding "
            "scale.", "",
            md_table(["task", "family", "test items", "majority", "untrained prompt", "random prompt", "PT dev",
                      "PT test", "PT - random prompt", "PT - majority", "seconds"], rows), ""]


def _nli_reading(r: dict) -> str:
    pt_vs_mt, mt_major, pt_major = r["pt_vs_mt"], r["mt_vs_majority"], r["pt_vs_majority"]
    words = ["PT above the majority class" if pt_major["low"] > 0 else "PT not above the majority class"]
    if mt_major["low"] <= 0:
        words.append("model tuning itself stays at chance")
    words.append(f"PT {'within' if pt_vs_mt['diff'] >= -0.10 else 'more than'} 0.10 of model tuning")
    return "; ".join(words)


def nli_section(d: dict) -> list[str]:
    nli, tr = d["nli"], d["nli"]["config"]
    rows = [[r["task"], r["n_test"], acc(r["majority"]), acc(r["untrained"]), acc(r["random_prompt"]), acc(r["pt"]),
             acc(r["model_tuning"]), diff(r["pt_vs_majority"]), diff(r["mt_vs_majority"]), diff(r["pt_vs_mt"]),
             _nli_reading(r)] for r in nli["rows"]]
    return ["## Sentence pairs (NLI) against the majority class and model tuning", "",
            f"PT and model tuning with the same data and budget ({tr['train_limit']} training examples, "
            f"{tr['steps']} steps, seed {tr['seed']}), on {test_items(tr['test_limit'])}. Model tuning starts from the "
            "same fresh prompt as PT and reads no source.", "",
            md_table(["task", "test items", "majority", "untrained prompt", "random prompt", "PT", "model tuning",
                      "PT - majority", "model tuning - majority", "PT - model tuning", "reading"], rows), ""]


def zero_shot_section(d: dict) -> list[str]:
    z, tasks = d["zero_shot"], d["tasks"]
    limit = d["config"]["zero_shot_test_limit"]

    def mean(m: dict | None) -> str:
        return "–" if not m else f"{m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}] over {m['n']} pairs"

    matrix = [[s] + [fmt(x, 2) for x in row] for s, row in zip(tasks, z["relative"], strict=True)]
    rand = {r["target"]: r for r in z["targets"]}
    matrix.append(["**random prompt**"] + [fmt(rand[t]["random_relative"], 2) for t in tasks])
    per = [[r["target"], acc(r["own"]), acc(r["random_prompt"]), fmt(r["random_relative"]),
            fmt(r["sources_mean_relative"]),
            f"{r['sources_above_random'][0]} of {r['sources_above_random'][1]}" if r["sources_above_random"] else "–"]
           for r in z["targets"]]
    return ["## Zero-shot cross-task transfer", "",
            f"Relative performance = accuracy on the target with the source prompt / with the target's own prompt, "
            f"on the same first {limit} test items. The last row is a random prompt's relative performance: "
            "transfer means something only above it.", "",
            f"- **within-family mean: {mean(z['within_family_mean'])}**, **cross-family mean: "
            f"{mean(z['cross_family_mean'])}** (bootstrap over pairs; Su et al. report about 0.81 vs 0.57 on "
            "RoBERTa-base).", "",
            md_table(["source \\ target", *tasks], matrix), "",
            "Per target: the own prompt and the random prompt with their intervals, and how many sources beat the "
            "random prompt (paired on the same items, interval above 0):", "",
            md_table(["target", "own prompt", "random prompt", "random relative", "sources' mean relative",
                      "sources above random"], per), ""]


def _corr(c: dict) -> str:
    return "–" if c["rho"] != c["rho"] else f"{c['rho']:.2f} [{c['low']:.2f}, {c['high']:.2f}]"


def indicators_section(d: dict) -> list[str]:
    labels, k = INDICATORS.labels(), d["config"]["retrieval_k"]
    lines = ["## Which indicator predicts transfer?", "",
             "Rank correlation between each indicator and measured transfer over all (source, target) pairs, "
             "with 95% bootstrap intervals over the pairs; the per-target Spearman (ranking one target's "
             "sources, as PANDA evaluates it) averaged over targets with a bootstrap interval over targets; and "
             f"the retrieval view: NDCG@{k} of each target's ranking and how often the top-ranked source beats "
             "the target's median source.", ""]
    for measure, label in d["indicator_measures"].items():
        rows = []
        for name, res in d["indicators"].items():
            r = res.get(measure)
            if r is None:
                continue
            lo, hi = r["spearman_mean_ci"]
            per_target = "–" if r["spearman_mean"] != r["spearman_mean"] else \
                f"{r['spearman_mean']:.2f} [{fmt(lo, 2)}, {fmt(hi, 2)}]"
            rows.append([labels.get(name, name), _corr(r["spearman_ci"]), _corr(r["kendall_ci"]), per_target,
                         r[f"ndcg_at_{k}"], r["top_beats_median_rate"], r["n_pairs"]])
        lines += [f"### Measure: {label}", "",
                  md_table(["indicator", "Spearman (pairs)", "Kendall (pairs)", "Spearman per target (mean)",
                            f"NDCG@{k}", "top beats median (rate)", "pairs"], rows), ""]
    return lines


def projectors_section(d: dict) -> list[str]:
    def a(r: dict, k: str) -> str:
        return acc({"acc": r[k], "ci": r[f"{k}_ci"]}) if r.get(k) is not None else "–"

    rows = [[f"{r['source_backbone']} -> {r['target_backbone']}", r["method"], r["train_task"], r["task"],
             r["family"], r["n_test"], r["majority"], a(r, "test_acc"), a(r, "random_prompt_acc"),
             a(r, "target_pt_acc"), diff(r.get("projected_vs_random"))] for r in d["projectors"]]
    return ["## Cross-model transfer through a projector", "",
            "Each accuracy with its Wilson 95% interval; projected - random is paired on the same test items "
            "(bootstrap interval, exact McNemar p).", "",
            md_table(["pair", "method", "trained on", "task", "family", "test items", "majority", "projected prompt",
                      "random prompt", "target's own PT prompt", "projected - random"], rows), ""]
