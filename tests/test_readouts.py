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
