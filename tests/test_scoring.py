"""How a backbone is driven by a prompt and how classes are scored."""

from __future__ import annotations

import pytest
import torch

from panda_core.backbones import get_backbone, tiny_mlm
from panda_core.data import Example, TaskSpec
from panda_core.prompts import PromptScorer, init_prompt

SENTIMENT = TaskSpec(
    name="toy", family="sentiment", labels=("negative", "positive"),
    descriptions=("A negative opinion.", "A positive opinion."), verbalizers=("bad", "good"),
    source="user", license="test", citation="", description="toy",
)
PAIRS = TaskSpec(
    name="toy_pairs", family="nli", labels=("entailment", "neutral", "contradiction"),
    descriptions=("The claim follows.", "Unrelated.", "The claim is false."), verbalizers=("yes", "maybe", "no"),
    source="user", license="test", citation="", description="toy", pair=True,
)
EXAMPLES = [Example("a wonderful, moving film", 1), Example("dull and far too long", 0),
            Example("I loved every minute", 1)]
PAIR_EXAMPLES = [Example("A man plays guitar.", 0, "Someone makes music."),
                 Example("A cat sleeps.", 2, "The cat is running a marathon.")]


def test_masked_lm_scores_verbalizers_at_the_mask_position():
    bb = tiny_mlm()
    scorer = PromptScorer(bb, SENTIMENT, prompt_length=4)
    prompt = init_prompt(bb.embeddings(), 4, "random", seed=1)
    batch = next(scorer.batches(scorer.encode(EXAMPLES), 8))
    logits = scorer.logits(batch, prompt)
    assert logits.shape == (3, 2)
    # by hand: [CLS] prompt [MASK] rest ... ; the mask sits right after the prompt
    embeds, mask, start = scorer.splice(batch, prompt)
    full = bb.model(inputs_embeds=embeds, attention_mask=mask).logits
    ids = scorer.verbalizer_ids()
    assert torch.allclose(logits, full[:, start + 4][:, ids].float(), atol=1e-5)
    mask_row = bb.embeddings()(torch.tensor([bb.tokenizer.mask_token_id]))[0]
    assert torch.allclose(embeds[0, start + 4], mask_row)


def test_encoder_prompt_spliced_after_cls_and_pooling_skips_it():
    bb = get_backbone("minilm")
    scorer = PromptScorer(bb, SENTIMENT, prompt_length=5)
    prompt = init_prompt(bb.embeddings(), 5, "vocab", seed=0)
    batch = next(scorer.batches(scorer.encode(EXAMPLES), 8))
    embeds, mask, start = scorer.splice(batch, prompt)
    assert start == 1 and embeds.shape[1] == batch.input_ids.shape[1] + 5
    assert torch.allclose(embeds[:, 1:6], prompt.expand(3, -1, -1))
    assert mask.sum().item() == batch.attention_mask.sum().item() + 15


def test_per_example_prompts_equal_a_shared_prompt():
    bb = get_backbone("minilm")
    scorer = PromptScorer(bb, SENTIMENT, prompt_length=3)
    prompt = init_prompt(bb.embeddings(), 3, "vocab", seed=2)
    batch = next(scorer.batches(scorer.encode(EXAMPLES), 8))
    with torch.no_grad():
        shared = scorer.logits(batch, prompt)
        each = scorer.logits(batch, prompt.unsqueeze(0).expand(3, -1, -1).clone())
    assert torch.allclose(shared, each, atol=1e-5)


def test_encoder_scores_are_temperature_times_cosine_to_label_descriptions():
    import torch.nn.functional as F

    bb = get_backbone("minilm")
    scorer = PromptScorer(bb, SENTIMENT, prompt_length=2, temperature=7.0)
    prompt = init_prompt(bb.embeddings(), 2, "vocab", seed=3)
    batch = next(scorer.batches(scorer.encode(EXAMPLES), 8))
    with torch.no_grad():
        logits = scorer.logits(batch, prompt)
        feats = scorer.features(batch, prompt)
        desc = bb.tokenizer(list(SENTIMENT.descriptions), padding=True, return_tensors="pt")
        h = bb.model(**desc).last_hidden_state
        m = desc["attention_mask"].unsqueeze(-1).float()
        keys = F.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert torch.allclose(logits, 7.0 * F.normalize(feats, dim=-1) @ keys.T, atol=1e-4)


def test_sentence_pairs_are_encoded_as_two_segments():
    bb = get_backbone("minilm")
    scorer = PromptScorer(bb, PAIRS, prompt_length=2)
    enc = scorer.encode(PAIR_EXAMPLES)
    sep = bb.tokenizer.sep_token_id
    assert all(ids.count(sep) == 2 for ids in enc.ids)
    with torch.no_grad():
        logits = scorer.logits(next(scorer.batches(enc, 4)), init_prompt(bb.embeddings(), 2, "vocab"))
    assert logits.shape == (2, 3)


def test_causal_lm_scores_label_words_at_the_last_position():
    bb = get_backbone("smollm2")
    scorer = PromptScorer(bb, SENTIMENT, prompt_length=2)
    prompt = init_prompt(bb.embeddings(), 2, "vocab", seed=0)
    batch = next(scorer.batches(scorer.encode(EXAMPLES), 8))
    with torch.no_grad():
        logits = scorer.logits(batch, prompt)
        embeds, mask, _ = scorer.splice(batch, prompt)
        full = bb.model(inputs_embeds=embeds, attention_mask=mask).logits
    last = mask.sum(1) - 1
    expected = full[torch.arange(3), last][:, scorer.verbalizer_ids()]
    assert logits.shape == (3, 2)
    assert torch.allclose(logits, expected.float(), atol=1e-4)


def test_prompt_of_the_wrong_hidden_size_is_refused():
    from panda_core.errors import PandaError

    bb = get_backbone("minilm")
    scorer = PromptScorer(bb, SENTIMENT, prompt_length=2)
    batch = next(scorer.batches(scorer.encode(EXAMPLES), 8))
    with pytest.raises(PandaError, match="hidden size"):
        scorer.logits(batch, torch.randn(2, 768))


def test_readout_and_prompt_alone_follow_the_kind():
    bb = tiny_mlm()
    scorer = PromptScorer(bb, SENTIMENT, prompt_length=3)
    prompt = init_prompt(bb.embeddings(), 3, "vocab", seed=0)
    batch = next(scorer.batches(scorer.encode(EXAMPLES), 8))
    embeds, mask, start = scorer.splice(batch, prompt)
    positions = scorer.readout_positions(mask, start, 3)
    assert positions.tolist() == [start + 3] * 3  # the <mask> slot right after the prompt
    alone, at = scorer.prompt_alone(prompt)
    assert alone.shape == (1, 3 + 3, bb.hidden_size) and at == 4  # [CLS] <soft x 3> [MASK] [SEP]
    torch.testing.assert_close(alone[0, 1:4], prompt)
    causal = get_backbone("smollm2")
    alone, at = PromptScorer(causal, SENTIMENT, 3).prompt_alone(init_prompt(causal.embeddings(), 3, "vocab"))
    assert alone.shape == (1, 3, causal.hidden_size) and at == 2
