"""What every recorded accuracy carries: its 95% interval, the majority-class
baseline on the same test items, and the items themselves.

A test accuracy alone cannot be read: 0.52 on an NLI task may be chance, and
two methods' accuracies can only be compared on the same items. So `train`
and `transfer` results (CLI JSON, run rows, the app) add, next to `test_acc`:

- ``test_acc_ci``: [low, high], the Wilson 95% interval;
- ``majority_test_acc``: the share of the most common label among the scored items;
- ``n_test``: how many test items were scored (the first `test_limit` of the split);
- ``test_correct``: each item right ('1') or wrong ('0'), in the split's order,
  for paired comparisons (`panda_core.stats.paired_difference`).
"""

from __future__ import annotations

from typing import Any

from ..stats import RESULT_KEY, encode_items, wilson_interval
from ..stats.items import as_bool_array


def accuracy_summary(task: str, correct: Any, digits: int = 4) -> dict[str, Any]:
    """The interval, baseline and items of `correct` ((N,) bool over the first N test items of `task`)."""
    from ..data.lookup import majority_of_test

    items = as_bool_array(correct)
    n = len(items)
    low, high = wilson_interval(int(items.sum()), n)
    return {"test_acc_ci": [round(low, digits), round(high, digits)], "n_test": n,
            "majority_test_acc": majority_of_test(task, n, digits),
            RESULT_KEY: encode_items(items)}

