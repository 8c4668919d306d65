"""Less padding (issue 12): inference batches grouped by length give the same
predictions in the split's order, length-grouped training batches keep the
stream seeded and exactly resumable, and PANDA's teacher pass covers every
example the run meets before training starts."""

from __future__ import annotations

import pytest
import torch

from panda_core.backbones import get_backbone
from panda_core.data import get_task, load_split
from panda_core.prompts import PromptScorer, init_prompt
from panda_core.prompts.encoding import Encoded, batches, by_length, padding_stats
from panda_core.training import TrainConfig, train
from panda_core.training.trainer import GROUP_BATCHES, Stream

TASK = "yelp_uci"


@pytest.fixture(autouse=True)
def _own_cache(private_cache):
    return private_cache


def _encoded(lengths: list[int]) -> Encoded:
    enc = Encoded(ids=[[1] * n for n in lengths], labels=torch.zeros(len(lengths), dtype=torch.long))
    enc.pad(0)
    return enc


# ------------------------------------------------------------------ inference
def test_length_sorted_batches_cover_each_item_once_longest_first():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (103,), generator=g).tolist()
    enc = _encoded(lengths)
    seen = [b.index for b in batches(enc, 16, lambda e, i: type("B", (), {"index": i})(), limit=90,
                                     sort_by_length=True)]
    assert all(len(b) * int(enc.lengths[b].max()) <= 4096 for b in seen)
    assert all(int(enc.lengths[b].min()) >= 0.9 * int(enc.lengths[b].max()) for b in seen)
    flat = torch.cat(seen)
    assert sorted(flat.tolist()) == list(range(90))
    assert torch.equal(flat, by_length(enc, 90))
    assert all(lengths[a] >= lengths[b] for a, b in zip(flat[:-1].tolist(), flat[1:].tolist(), strict=True))
    real, padded_random = padding_stats(enc, 16, sort_by_length=False)
    real_sorted, padded_sorted = padding_stats(enc, 16, sort_by_length=True, token_budget=None, min_fill=0.0)
    assert real == real_sorted == sum(lengths) and padded_sorted < padded_random
    assert real / padded_sorted > 0.85 > real / padded_random


def test_sorted_evaluation_gives_the_unsorted_predictions_in_the_split_order():
    bb = get_backbone("minilm")
    scorer = PromptScorer(bb, get_task(TASK), 4)
    enc = scorer.encode(load_split(TASK, "test"))
    prompt = init_prompt(bb.embeddings(), 4, "vocab", seed=3).to(bb.device)
    sorted_items = scorer.correct_items(enc, prompt, limit=150)
    with torch.inference_mode():  # the order the split is in, as evaluation ran before
        unsorted = torch.cat([(scorer.logits(b, prompt).argmax(-1) == b.labels).cpu()
                              for b in scorer.batches(enc, 64, limit=150)])
    assert sorted_items.dtype == torch.bool and torch.equal(sorted_items, unsorted)
    real, computed = padding_stats(enc, 128, sort_by_length=True, limit=150)
    real_before, computed_before = padding_stats(enc, 64, sort_by_length=False, limit=150)
    assert real == real_before and real / computed > 0.95 > 0.9 > real / computed_before


# ------------------------------------------------------------------ training
def _stream_lengths(n: int, seed: int = 5) -> torch.Tensor:
    return torch.randint(3, 120, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("n", "batch_size"), [(40, 4), (41, 4), (900, 8), (5, 8)])
def test_length_grouped_stream_visits_every_example_and_resumes_anywhere(n, batch_size):
    lengths = _stream_lengths(n)
    stream = Stream(n, batch_size, 3, lengths=lengths)
    per_epoch = max(n // batch_size, 1)
    epoch = torch.cat([next(stream) for _ in range(per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch) == min(per_epoch * batch_size, n)
    for k in [0, 1, per_epoch - 1, per_epoch, per_epoch + 3]:
        whole, cut = Stream(n, batch_size, 3, lengths), Stream(n, batch_size, 3, lengths)
        for _ in range(k):
            next(whole), next(cut)
        again = Stream(n, batch_size, 3, lengths)
        again.restore(cut.epoch_gen, cut.offset)
        for _ in range(2 * per_epoch + 1):
            assert torch.equal(next(again), next(whole)), k


def test_length_grouped_batches_hold_similar_lengths_in_shuffled_order():
    n, bs = 2000, 16
    lengths = _stream_lengths(n)
    grouped, random = Stream(n, bs, 0, lengths), Stream(n, bs, 0)

    def waste(stream: Stream) -> float:
        rows = [next(stream) for _ in range(n // bs)]
        real = sum(int(lengths[r].sum()) for r in rows)
        return sum(int(lengths[r].max()) * len(r) for r in rows) / real

    assert waste(grouped) < 1.1 < waste(random)
    first = [next(Stream(n, bs, seed, lengths)) for seed in range(6)]
    assert len({int(lengths[b].max()) for b in first}) > 1  # not always the longest batch first
    assert GROUP_BATCHES == 50


def test_a_length_grouped_run_resumes_exactly(private_cache):
    from panda_core.training import Cancelled

    bb = get_backbone("minilm")
    cfg = TrainConfig(steps=10, eval_every=2, batch_size=8, dev_limit=40, test_limit=40, prompt_length=4,
                      batching="length")
    assert cfg.to_dict()["batching"] == "length" and "batching" not in TrainConfig().to_dict()
    whole = train(bb, TASK, cfg)
    calls = []
    with pytest.raises(Cancelled):
        train(bb, TASK, cfg, should_stop=lambda: len(calls) >= 5, progress=calls.append)
    seen = []
    again = train(bb, TASK, cfg, progress=seen.append)
    assert seen[0]["step"] == 5
    assert torch.allclose(again.prompt, whole.prompt, atol=1e-6) and again.dev_curve == whole.dev_curve


# ------------------------------------------------------------------ PANDA's teacher
def test_the_teacher_pass_covers_the_run_and_matches_the_lazy_teacher():
    from panda_core.training.objectives import TeacherCache

    bb = get_backbone("minilm")
    scorer = PromptScorer(bb, get_task(TASK), 4)
    enc = scorer.encode(load_split(TASK, "train")[:120])
    teacher = init_prompt(bb.embeddings(), 4, "vocab", seed=9).to(bb.device)
    stream = Stream(len(enc), 8, 0)
    visits = stream.visits(20)
    assert len(visits) == 120 and torch.equal(next(stream), next(Stream(len(enc), 8, 0)))  # not advanced
    eager, lazy = TeacherCache(scorer, enc, teacher), TeacherCache(scorer, enc, teacher)
    assert eager.prefill(Stream(len(enc), 8, 0).visits(5)) == 40
    run = Stream(len(enc), 8, 0)
    for _ in range(5):
        index = next(run)
        batch = scorer.collate(enc, index)
        assert bool(eager.have[index].all())  # nothing left to run during training
        torch.testing.assert_close(eager(batch), lazy(batch), atol=1e-4, rtol=1e-4)


def test_batching_study_table_pairs_the_arms_and_marks_reused_seconds():
    from devtools.batching_study import render

    def arm(batching: str, items: str, reused: bool = False) -> dict:
        return {"task": "mr", "batching": batching, "items": items, "train_seconds": 600.0 if reused else 420.0,
                "real_token_fraction": 0.5 if batching == "random" else 0.93, "reused": reused}

    data = {"backbone": "minilm", "steps": 300, "seed": 0, "tasks": ["mr"],
            "runs": {"random|mr": arm("random", "1100" * 50, reused=True), "length|mr": arm("length", "1110" * 50)}}
    table = render(data)
    row = next(line for line in table.splitlines() if line.startswith("| mr"))
    assert "+0.250 [" in row and "| 600* / 420 |" in row and "0.50 / 0.93" in row
    assert "measured then, not beside the length arm" in table
