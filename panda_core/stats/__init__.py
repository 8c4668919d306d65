"""Statistics on every comparison the tool shows (issue 11, item 5).

numpy + scipy.stats only, and no torch. scipy.stats is imported inside the
functions that use it: it costs about a second, and the CLI reaches this
package (through `ops` and the indicators) on every call, refusals included.

- `items`: per-item correctness as a compact '0'/'1' string (runs store it
  under ``result["test_correct"]``);
- `intervals`: Wilson intervals of accuracies, the majority-class baseline,
  a bootstrap interval of a mean (over seeds, over targets);
- `paired`: the paired difference of two methods on the same test items, its
  bootstrap interval and exact McNemar p-value;
- `hierarchical`: a study's mean paired difference with a bootstrap over
  targets -> sources -> seeds -> items, and the sign-flip test over its cells;
- `ranking`: rank correlations with bootstrap intervals, NDCG@k and
  "does the top-ranked source beat the median one".
"""

from __future__ import annotations

from .hierarchical import HierarchicalDifference, cell_means, hierarchical_bootstrap, sign_flip_test
from .intervals import accuracy_with_ci, bootstrap_mean_ci, majority_accuracy, wilson_interval
from .items import RESULT_KEY, common_prefix, decode_items, encode_items, result_items
from .paired import PairedDifference, mcnemar_exact, paired_difference, paired_ratio_ci
from .ranking import ndcg_at_k, rank_correlation_ci, retrieval_summary, target_columns, top_beats_median

__all__ = [
    "RESULT_KEY", "HierarchicalDifference", "PairedDifference", "accuracy_with_ci", "bootstrap_mean_ci",
    "cell_means", "common_prefix", "decode_items", "encode_items", "hierarchical_bootstrap", "majority_accuracy",
    "mcnemar_exact", "ndcg_at_k", "paired_difference", "paired_ratio_ci", "rank_correlation_ci", "result_items",
    "retrieval_summary", "sign_flip_test", "target_columns", "top_beats_median", "wilson_interval",
]
