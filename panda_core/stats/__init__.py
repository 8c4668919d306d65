"""Statistics on every comparison the tool shows (issue 11, item 5).

numpy + scipy.stats only (no torch at import), so the CLI, the report and the
app's pages can import it cheaply:

- `items`: per-item correctness as a compact '0'/'1' string (runs store it
  under ``result["test_correct"]``);
- `intervals`: Wilson intervals of accuracies, the majority-class baseline;
- `paired`: the paired difference of two methods on the same test items, its
  bootstrap interval and exact McNemar p-value.
"""

from __future__ import annotations

from .intervals import accuracy_with_ci, bootstrap_mean_ci, majority_accuracy, wilson_interval
from .items import RESULT_KEY, common_prefix, decode_items, encode_items, result_items
from .paired import PairedDifference, mcnemar_exact, paired_difference

__all__ = [
    "RESULT_KEY", "PairedDifference", "accuracy_with_ci", "bootstrap_mean_ci", "common_prefix", "decode_items",
    "encode_items", "majority_accuracy", "mcnemar_exact", "paired_difference", "result_items", "wilson_interval",
]
