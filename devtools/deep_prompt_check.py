"""Does a deep prompt train? A plain torch loop over `prompts.deep.deep_forward`
on minilm for `mr`, scored the encoder's way (mean of the text states, 20 x
cosine to the label-description embeddings, `PromptScorer.class_scores`),
compared with the untrained deep prompt and with no prompt on a dev subset.

Run alone (one process, it uses both cores)::

    python -m devtools.deep_prompt_check [--steps 150] [--length 10] [--lr 0.01] [--dev 300]

Prints one JSON object: accuracies with their counts (correct / n).
This is a check of the mechanism, not a result table: the integrated
Trainer (best-dev, patience, checkpoints) is not used.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from panda_core.backbones import get_backbone
from panda_core.data import get_task, load_split
from panda_core.prompts.deep import deep_forward
from panda_core.prompts.scorer import PromptScorer
from panda_core.prompts.types import PROMPT_TYPES


def class_scores(scorer: PromptScorer, batch, deep: torch.Tensor | None) -> torch.Tensor:
    """(B, C) encoder scores of a batch driven by `deep` (None: no prompt)."""
    model = scorer.model
    if deep is None:
        hidden = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    else:
        hidden = deep_forward(model, batch.input_ids, batch.attention_mask, deep).last_hidden_state
    return scorer.class_scores(scorer.pool(hidden, batch.attention_mask, 0, 0).float())


@torch.no_grad()
def accuracy(scorer: PromptScorer, enc, deep: torch.Tensor | None) -> tuple[int, int]:
    """(correct, total) on a tokenised split."""
    correct = total = 0
    for batch in scorer.batches(enc, 64):
        correct += int((class_scores(scorer, batch, deep).argmax(-1) == batch.labels).sum())
        total += len(batch.labels)
    return correct, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mr")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--dev", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    start = time.time()
    bb = get_backbone("minilm")
    task = get_task(args.task)
    scorer = PromptScorer(bb, task, prompt_length=args.length)
    train = scorer.encode(load_split(args.task, "train"))
    dev = scorer.encode(load_split(args.task, "dev")[: args.dev])

    init = PROMPT_TYPES.get("deep").init(bb, args.length, "vocab", seed=args.seed)
    deep = init.clone().requires_grad_(True)
    opt = torch.optim.AdamW([deep], lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    stream = scorer.batches(train, args.batch, shuffle=True, generator=gen, limit=args.steps * args.batch)
    losses = []
    for batch in stream:
        loss = F.cross_entropy(class_scores(scorer, batch, deep), batch.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))

    rows = {"no prompt": accuracy(scorer, dev, None), "untrained deep": accuracy(scorer, dev, init),
            "trained deep": accuracy(scorer, dev, deep.detach())}
    k = max(1, len(losses) // 10)
    print(json.dumps({
        "task": args.task, "backbone": "minilm", "prompt": list(init.shape), "steps": len(losses),
        "batch": args.batch, "lr": args.lr, "seed": args.seed,
        "loss_first_last_tenth": [round(sum(losses[:k]) / k, 4), round(sum(losses[-k:]) / k, 4)],
        "dev_accuracy": {name: {"acc": round(c / n, 4), "correct": c, "n": n} for name, (c, n) in rows.items()},
        "seconds": round(time.time() - start, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
