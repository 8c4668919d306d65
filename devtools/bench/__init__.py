"""The performance harness: `python -m panda_core bench [--quick] [--json]
[--backbones ...] [--write-docs]`.

Every case measures our code against a *peer* (another way to do the same
work) and, where one exists, a *floor* (the least the hardware must do), in
one process, on the same backbone, batch, sequence and prompt length, with
interleaved repetitions (each repetition runs every variant once, in rotating
order) and the median reported:

| case               | ours                              | peer                          | floor |
|--------------------|-----------------------------------|-------------------------------|-------|
| pt_step:B          | our prompt-tuning step            | PEFT PromptTuningConfig step  | bare forward+backward to the input embeddings |
| panda_step:B       | PANDA step, teacher cache warm    | PoT step                      | as pt_step |
| panda_step_cold:B  | PANDA step, teacher cache cold    | PoT step                      | as pt_step |
| batched_prompts    | K=8 prompts in mixed batches      | K sequential runs             | forward+backward of the mixed batch |
| indicators_on      | ON matrix, 12 prompts             | pair-by-pair loop             | - |
| indicators_panda   | PANDA-metric matrix, 12 prompts   | pair-by-pair loop             | - |
| indicators_embedding | the 5 embedding metrics         | pair-by-pair loop             | - |
| sweep_local        | 4x4 sweep, local, 2 workers       | the same, 1 worker            | - |
| sweep_ray          | 4x4 sweep, Ray, 2 workers         | local, 1 worker               | - |
| eval_throughput    | 1 prompt zero-shot on every offline test split, length-sorted (real tokens/s) | the old batches of 64 in split order | splice + bare forward of the same sorted batches |
| pt_to_accuracy     | seconds of MR prompt tuning to dev accuracy 0.70 (default random batches) | PEFT PromptTuningConfig + transformers.Trainer | - |
| zero_shot_matrix   | K x K zero-shot matrix at 200 test items, sorted; same predictions required | the old batches of 64 | as eval_throughput |
| click_to_result    | PANDA at the Transfer page's defaults, call to result, by phase | - | - |
| page_render        | Similarity (every indicator), Clusters (UMAP), Transfer: render with caches warm | - | - |
| int8_inference     | dynamic int8 Linear layers, evaluation (full runs only; decides, wires nothing) | fp32 | - |

The long cases below the sweeps run once per variant in a full run (the
evaluation passes up to 3 times within a time budget): a whole training run
or transfer is not worth repeating to shave noise off minutes.

Units are examples/s or real tokens/s (higher is better) or seconds (lower
is better); every ratio is a speed-up, > 1 meaning ours is faster. Each case
also reports the peak resident memory (RSS) while it ran (for sweeps: of the
whole process tree, Ray's daemons included). The JSON (one document on stdout) is
``{"machine": {...}, "settings": {...}, "cases": [{"name", "ours", "peer",
"floor", "ratio_vs_peer", "ratio_vs_floor", "unit", "goal", "meets_goal",
"rss_mb", ...}]}``; a table goes to stderr; `--write-docs` renders
docs/performance.md from the run.

Modules: `harness` (BenchConfig, Case, interleaved timing, PeakRSS, machine),
`steps` (pt_step with the PEFT peer, panda_step, batched_prompts),
`indicators` (the indicator cases), `sweeps` (the sweep cases), `floors`
(the evaluation cases against the forward floor: eval_throughput,
zero_shot_matrix, int8_inference), `waits` (what a user waits for end to end:
pt_to_accuracy, click_to_result, page_render), `docs` (tables and
docs/performance.md) and `run` (the driver, `run_bench`). A quick run skips
the cases in `QUICK_SKIPPED`.
"""

from __future__ import annotations

from .docs import DOC_END, DOC_START, describe_machine, render_results, render_table, write_docs
from .harness import BenchConfig, Case, PeakRSS, interleaved, machine, median
from .run import CASE_NAMES, QUICK_SKIPPED, run_bench

__all__ = ["CASE_NAMES", "DOC_END", "QUICK_SKIPPED", "DOC_START", "BenchConfig", "Case", "PeakRSS", "describe_machine", "interleaved",
           "machine", "median", "render_results", "render_table", "run_bench", "write_docs"]
