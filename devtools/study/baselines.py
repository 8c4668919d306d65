"""The baselines every accuracy is read against, as per-item correctness on
the same test items as the trained prompts, so each difference can be paired:

- majority: always the most common label among the scored items (data only);
- untrained: the fresh prompt a PT run starts from (vocabulary rows, the task's
  seed `task_seed(task, seed)`), scored as it is;
- random: a Gaussian prompt at the embedding table's scale, same seed.

Prompt evaluations cost a pass over a test split, so their items are cached
under the cache folder (`report/baselines.json`, keyed by everything that
decides them): a killed report resumes without scoring them again.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from panda_core import atomic, paths
from panda_core.data import load_split
from panda_core.stats import decode_items, encode_items
from panda_core.training import TrainConfig


def majority_items(task: str, n: int | None = None) -> np.ndarray:
    """(N,) bool: is each of the first `n` test items (all when None) of the most common label among them."""
    labels = [ex.label for ex in load_split(task, "test")]
    labels = labels[:n] if n is not None else labels
    if not labels:
        return np.zeros(0, dtype=bool)
    top = Counter(labels).most_common(1)[0][0]
    return np.array([label == top for label in labels], dtype=bool)


class PromptBaselines:
    """Untrained and random prompts scored on a task's test items, cached by their key."""

    def __init__(self, backbone: Any) -> None:
        self.bb = backbone
        self.path = paths.cache_dir() / "report" / "baselines.json"
        self.cache: dict[str, str] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def items(self, task: str, how: str, seed: int, cfg: TrainConfig) -> np.ndarray:
        """(N,) bool over the first `cfg.test_limit` test items of `task` for a fresh prompt
        initialised `how` ("vocab" or "random") with `seed`, scored as `cfg` scores."""
        key = json.dumps([self.bb.name, task, how, int(seed), cfg.prompt_length, cfg.test_limit, cfg.max_length,
                          cfg.temperature, cfg.readout])
        if key not in self.cache:
            from panda_core.prompts import init_prompt
            from panda_core.training import evaluate_items

            prompt = init_prompt(self.bb.embeddings(), cfg.prompt_length, how, seed=seed)
            correct = evaluate_items(self.bb, task, prompt, "test", limit=cfg.test_limit, max_length=cfg.max_length,
                                     temperature=cfg.temperature, readout=cfg.readout)
            self.cache[key] = encode_items(correct)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(self.path, json.dumps(self.cache))
        return decode_items(self.cache[key])
