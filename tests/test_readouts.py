"""Readouts (`prompts.readouts.READOUTS`): how the prompt-driven states are read
and scored; sentence pairs keep their segment ids on the way to the model."""

from __future__ import annotations

import pytest
import torch

from panda_core.backbones import get_backbone, kinds
from panda_core.data import Example, TaskSpec
from panda_core.prompts import PromptScorer, init_prompt

PAIRS = TaskSpec(
    name="toy_pairs", family="nli", labels=("entailment", "neutral", "contradiction"),
    descriptions=("The claim follows.", "Unrelated.", "The claim is false."), verbalizers=("yes", "maybe", "no"),
    source="user", license="test", citation="", description="toy", pair=True,
)
PAIR_EXAMPLES = [Example("A man plays guitar.", 0, "Someone makes music."),
                 Example("A cat sleeps on the warm mat.", 2, "The cat runs."),
                 Example("It rains.", 1, "The match was cancelled because of the weather.")]


@pytest.fixture(scope="module")
def minilm():
    return get_backbone("minilm")


# ------------------------------------------------------------- segment ids
def test_sentence_pairs_carry_their_segment_ids_to_the_model(minilm):
    scorer = PromptScorer(minilm, PAIRS, prompt_length=3)
    enc = scorer.encode(PAIR_EXAMPLES)
    tok = minilm.tokenizer
    for ex, ids, seg in zip(PAIR_EXAMPLES, enc.ids, enc.segments, strict=True):
        assert seg == tok(ex.text_a, ex.text_b)["token_type_ids"] and ids == tok(ex.text_a, ex.text_b)["input_ids"]
        assert 1 in seg and seg[0] == 0
    batch = next(scorer.batches(enc, 8))
    assert batch.token_type_ids is not None and batch.token_type_ids.shape == batch.input_ids.shape
    assert torch.equal(batch.token_type_ids * batch.attention_mask, batch.token_type_ids)  # padding is 0
    prompt = init_prompt(minilm.embeddings(), 3, "vocab", seed=0)
    with torch.no_grad():
        got = scorer.features(batch, prompt)
        # by hand: [CLS] <soft x 3> rest, with the prompt rows in segment 0 and the model given token_type_ids
        emb = minilm.embeddings()(batch.input_ids)
        embeds = torch.cat([emb[:, :1], prompt.expand(3, -1, -1), emb[:, 1:]], 1)
        ones = torch.ones(3, 3, dtype=torch.long)
        mask = torch.cat([batch.attention_mask[:, :1], ones, batch.attention_mask[:, 1:]], 1)
        types = torch.cat([batch.token_type_ids[:, :1], 0 * ones, batch.token_type_ids[:, 1:]], 1)
        hidden = minilm.model(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types).last_hidden_state
        ignored = minilm.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    want = scorer.kind_impl.pool(hidden, mask, 1, 3)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got, scorer.kind_impl.pool(ignored, mask, 1, 3), atol=1e-3)  # segments matter


def test_single_texts_have_no_segments_and_score_as_before(minilm):
    single = [Example("a wonderful film", 1), Example("dull and long", 0)]
    scorer = PromptScorer(minilm, PAIRS, prompt_length=2)
    enc = scorer.encode(single)
    assert enc.segments is None and next(scorer.batches(enc, 4)).token_type_ids is None


def test_segments_without_token_types_come_from_the_separators():
    # MPNet-style <s> a </s></s> b </s>: segment 1 starts after the run of separators
    assert kinds._segments_after_sep([0, 7, 8, 2, 2, 9, 2], 2) == [0, 0, 0, 0, 0, 1, 1]
    assert kinds._segments_after_sep([101, 7, 102, 9, 102], 102) == [0, 0, 0, 1, 1]
    from transformers import MPNetConfig, MPNetModel

    mpnet = MPNetModel(MPNetConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16))
    encoder = kinds.KINDS.get("encoder")
    assert encoder.segment_embeddings(mpnet) is None  # MPNet's embeddings have no token types


def test_the_tiny_mlm_uses_segments_through_its_base_model():
    from panda_core.backbones import tiny_mlm

    bb = tiny_mlm()
    table = bb.kind_impl.segment_embeddings(bb.model)
    assert table is bb.model.bert.embeddings.token_type_embeddings


# --------------------------------------------------------------- readouts
from panda_core.backbones import tiny_mlm  # noqa: E402
from panda_core.errors import PandaError  # noqa: E402
from panda_core.prompts import readouts  # noqa: E402
from panda_core.prompts.readouts import READOUTS, read_at  # noqa: E402
from panda_core.training import TrainConfig  # noqa: E402

TINY_STEP = dict(steps=2, eval_every=1, batch_size=4, prompt_length=3, train_limit=8, dev_limit=8, test_limit=12)


@pytest.fixture(scope="module")
def tiny():
    return tiny_mlm(0)


def _backbone_for(name: str, tiny):
    """tiny-mlm reads every readout of bidirectional models; the causal LM's own readout needs smollm2."""
    return tiny if "mlm" in READOUTS.get(name).kinds else get_backbone("smollm2")


@pytest.mark.parametrize("name", READOUTS.names())
def test_every_readout_trains_and_scores(name, tiny, private_cache):
    from panda_core.training import train

    bb = _backbone_for(name, tiny)
    result = train(bb, "epistemic", TrainConfig(**TINY_STEP, readout=name), resume=False)
    readout = READOUTS.get(name)
    assert result.readout == name and result.steps == 2 and 0.0 <= result.test_acc <= 1.0
    assert len(result.test_correct) == 12
    prompt_size = 3 * bb.hidden_size
    if readout.has_params:  # counted and kept like a head: C x d class vectors, or the pair head
        extra = sum(v.numel() for v in result.head.values())
        assert extra == (2 * bb.hidden_size if name.endswith("vectors") else 2 * 4 * bb.hidden_size + 2)
        assert result.trainable_params == prompt_size + extra
    else:
        assert result.head is None and result.trainable_params == prompt_size


def test_the_original_readouts_score_exactly_as_the_kinds_did(tiny, minilm):
    """Nothing existing changes meaning: "auto" is each kind's original readout."""
    import torch.nn.functional as F

    for bb, name in ((minilm, "mean-desc"), (tiny, "verbalizer")):
        scorer = PromptScorer(bb, PAIRS, prompt_length=3)
        assert scorer.readout.name == name == readouts.LEGACY[bb.kind]
        batch = next(scorer.batches(scorer.encode(PAIR_EXAMPLES), 8))
        prompt = init_prompt(bb.embeddings(), 3, "vocab", seed=4)
        with torch.no_grad():
            embeds, mask, start = scorer.splice(batch, prompt)
            kind = scorer.kind_impl
            out = kind.forward_outputs(bb.model, embeds, mask, start, 3)
            if bb.kind == "encoder":
                want = scorer.temperature * F.normalize(out.float(), dim=-1) @ scorer.label_keys().T
            else:
                want = out.float()[:, scorer.verbalizer_ids()]
            assert torch.equal(scorer.logits(batch, prompt), want)
            assert torch.equal(scorer.features(batch, prompt), kind.pool(kind.trunk(bb.model, embeds, mask),
                                                                          mask, start, 3))


def test_an_unknown_readout_is_refused_when_the_config_is_built():
    with pytest.raises(PandaError, match="invalid readout='nope': must be one of auto, mean-desc"):
        TrainConfig(readout="nope")
    with pytest.raises(PandaError, match="readout"):
        TrainConfig(head=True, readout="pair")  # the pair head is its own head
    cfg = TrainConfig()
    with pytest.raises(PandaError, match="invalid readout"):
        cfg.readout = "nope"
    with pytest.raises(PandaError, match="cannot read a causal backbone"):
        readouts.resolve("mask-desc", "causal")


def test_the_default_keeps_the_keys_of_stored_runs():
    from dataclasses import asdict

    from panda_core.transfer import TransferConfig

    legacy = {k: v for k, v in asdict(TrainConfig()).items() if k not in ("readout", "prompt_type", "batching")}
    if readouts.DEFAULT == readouts.LEGACY:
        assert TrainConfig().to_dict() == legacy  # a run stored before readouts existed has this config
        import hashlib
        import json

        blob = json.dumps(["pot", "mr", "tweets", "minilm", {"train": legacy}, []], sort_keys=True, default=str)
        assert TransferConfig().key("pot", "mr", "tweets", "minilm") == hashlib.sha256(blob.encode()).hexdigest()[:20]
    assert TrainConfig(readout="pair").to_dict()["readout"] == "pair"
    assert TransferConfig(train=TrainConfig(readout="pair")).key("pot", "mr", "tweets", "minilm") != \
        TransferConfig().key("pot", "mr", "tweets", "minilm")
    assert TrainConfig.from_dict(TrainConfig(readout="mask-vectors").to_dict()).readout == "mask-vectors"


@pytest.mark.parametrize("name", ["mask-vectors", "pair"])
def test_a_stored_prompt_scores_the_same_after_save_and_load(name, private_cache):
    from panda_core import store
    from panda_core.ops import train_prompt
    from panda_core.training import evaluate_items

    cfg = TrainConfig(**TINY_STEP, readout=name)
    out = train_prompt("epistemic", "tiny-mlm", cfg)
    prompt = store.load_prompt(out["prompt_id"])
    assert readouts.recorded(prompt, "mlm") == name and prompt.head is not None
    bb = tiny_mlm(0)
    again = evaluate_items(bb, "epistemic", prompt.tensor, "test", head=prompt.head, limit=12, readout=name)
    assert float(again.float().mean()) == pytest.approx(out["test_acc"], abs=1e-4)
    # a prompt stored before readouts existed records none: it is read with its kind's original readout
    assert readouts.recorded({"extra": {"config": {"steps": 300}}}, "encoder") == "mean-desc"
    assert readouts.recorded({"extra": {}}, "mlm") == "verbalizer"


def test_a_stored_head_is_loaded_exactly(tiny, private_cache):
    from panda_core.training import train
    from panda_core.training.tuning import load_head

    result = train(tiny, "epistemic", TrainConfig(**TINY_STEP, readout="mask-vectors"), resume=False)
    scorer = PromptScorer(tiny, _task("epistemic"), 3, readout="mask-vectors")
    head = load_head(scorer, result.head)
    torch.testing.assert_close(head.vectors.detach().cpu(), result.head["vectors"])
    fresh = load_head(scorer, {"vectors": torch.zeros(5, tiny.hidden_size)})  # another label set: a fresh start
    torch.testing.assert_close(fresh.vectors.detach(), scorer.label_keys())


def test_stored_readout_parameters_must_fit_a_readout_exactly(tmp_path):
    from safetensors.torch import save_file

    from panda_core.prompts.formats import read_prompt_file

    d, c = 16, 3
    assert readouts.params_problem({"vectors": torch.zeros(c, d)}, d) is None
    assert readouts.params_problem({"pair.weight": torch.zeros(c, 4 * d), "pair.bias": torch.zeros(c)}, d) is None
    for bad in ({"vectors": torch.zeros(c, d + 1)}, {"weight": torch.zeros(c, d)},
                {"pair.weight": torch.zeros(c, 4 * d)}, {"vectors": torch.zeros(c, d), "extra": torch.zeros(1)}):
        assert "fit no readout" in readouts.params_problem(bad, d)
    path = tmp_path / "p.safetensors"
    save_file({"prompt": torch.zeros(4, d), "head.weight": torch.zeros(c, d)}, str(path))  # a head without its bias
    with pytest.raises(PandaError, match="fit no readout"):
        read_prompt_file(path)


def _task(name):
    from panda_core.data import get_task

    return get_task(name)


@pytest.mark.parametrize("name", [n for n in READOUTS.names() if "mlm" in READOUTS.get(n).kinds])
def test_the_read_positions_are_where_the_readout_reads(name, tiny):
    """`readout_positions` (what ON reads) are exactly the positions the features come from."""
    scorer = PromptScorer(tiny, PAIRS, prompt_length=3, readout=name)
    batch = next(scorer.batches(scorer.encode(PAIR_EXAMPLES), 8))
    prompt = init_prompt(tiny.embeddings(), 3, "vocab", seed=1)
    with torch.no_grad():
        embeds, mask, start = scorer.splice(batch, prompt)
        hidden = scorer.trunk(embeds, mask)
        positions = scorer.readout_positions(mask, start, 3)
        feats = scorer.features(batch, prompt)
    # by hand: [CLS] <soft x 3> [MASK] text ... on this masked LM
    assert start == 1 and embeds.shape[1] == batch.input_ids.shape[1] + 4
    text = [[0] + list(range(5, 4 + int(n))) for n in batch.attention_mask.sum(1)]
    if positions.dim() == 1:
        expected = {"cls-desc": [0] * 3}.get(name, [start + 3] * 3)
        assert positions.tolist() == expected
    else:
        assert [[p for p in row if p >= 0] for row in positions.tolist()] == text
    if name == "pair":
        d = tiny.hidden_size
        u, v = feats[:, :d], feats[:, d : 2 * d]
        torch.testing.assert_close(feats[:, 2 * d :], torch.cat([(u - v).abs(), u * v], -1))
        both = read_at(hidden, positions)  # u and v are the means of the two segments of these positions
        seg = scorer.spliced_segments(batch, mask.shape[1], start)
        n0 = torch.tensor([sum(1 for p in row if p >= 0 and seg[i, p] == 0) for i, row in enumerate(positions.tolist())])
        n1 = (positions >= 0).sum(1) - n0
        mix = (u * n0[:, None] + v * n1[:, None]) / (n0 + n1)[:, None]
        torch.testing.assert_close(mix, both, atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(feats, read_at(hidden, positions), atol=1e-5, rtol=1e-5)


def test_on_inputs_reads_the_readout_positions(tiny):
    from panda_core.indicators.on_inputs import at_readout

    scorer = PromptScorer(tiny, PAIRS, prompt_length=3, readout="mask-desc")
    batch = next(scorer.batches(scorer.encode(PAIR_EXAMPLES), 8))
    embeds, mask, start = scorer.splice(batch, init_prompt(tiny.embeddings(), 3, "vocab", seed=1))
    acts = torch.rand(3, embeds.shape[1], 7) > 0.5
    torch.testing.assert_close(at_readout(scorer, acts, mask, start, 3), acts[:, start + 3].float())
    mean = PromptScorer(tiny, PAIRS, prompt_length=3, readout="mean-desc")
    keep = mask.bool().clone()
    keep[:, start : start + 4] = False
    want = (acts.float() * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
    torch.testing.assert_close(at_readout(mean, acts, mask, start, 3), want)


def test_panda_teacher_is_scored_through_the_students_head(tiny):
    """With a head, the teacher's logits are the student's head applied to the teacher's features."""
    from panda_core.training import TeacherCache

    scorer = PromptScorer(tiny, PAIRS, prompt_length=3, readout="pair")
    enc = scorer.encode(PAIR_EXAMPLES)
    batch = next(scorer.batches(enc, 8))
    teacher = init_prompt(tiny.embeddings(), 3, "vocab", seed=7)
    head = scorer.new_head()
    cache = TeacherCache(scorer, enc, teacher, head)
    first = cache(batch)
    with torch.no_grad():
        torch.testing.assert_close(first, scorer.logits(batch, teacher, head), atol=1e-5, rtol=1e-5)
        head.pair.weight.add_(1.0)  # the student's head moves: the teacher's logits follow it
        torch.testing.assert_close(cache(batch), scorer.logits(batch, teacher, head), atol=1e-4, rtol=1e-4)
    assert not first.requires_grad
