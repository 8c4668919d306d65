"""Deep prompts (per-layer key/value prefixes): the prompt-type registry, the
forward on BERT (minilm, tiny-mlm), MPNet and Llama (smollm2), and the PEFT
PREFIX_TUNING round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from panda_core.backbones import get_backbone, tiny_mlm
from panda_core.errors import PandaError
from panda_core.prompts.deep import PREFIX_MECHANISMS, deep_forward, deep_from_input, mechanism
from panda_core.prompts.peft_prefix import read_prefix_adapter, to_peft_embeddings, write_prefix_adapter
from panda_core.prompts.types import PROMPT_TYPES, PromptGeometry, prompt_type_of

DEEP = PROMPT_TYPES.get("deep")
TEXTS = ["a fine film, warm and funny", "dull"]


@pytest.fixture(scope="module", params=["tiny-mlm", "minilm", "mpnet", "smollm2"])
def bb(request):
    return tiny_mlm() if request.param == "tiny-mlm" else get_backbone(request.param)


def _batch(bb):
    return bb.tokenizer(TEXTS, padding=True, return_tensors="pt")


def _hidden(out) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _model(bb) -> torch.nn.Module:
    """The module the forward tests drive: smollm2's trunk (its 49k-word LM head at
    every position only slows the tests; `test_causal_lm_head_and_kwargs` covers it)."""
    return bb.model.model if bb.kind == "causal" else bb.model


def test_registry_shapes_and_rows(bb):
    geo = PromptGeometry.of(bb)
    assert PROMPT_TYPES.names() == ["input", "deep"]
    p = DEEP.init(bb, 3, "random", seed=1)
    assert p.shape == (bb.num_layers, 2, 3, geo.kv_width) and DEEP.length(p) == 3
    assert prompt_type_of(p) is DEEP and prompt_type_of(torch.zeros(3, 8)).name == "input"
    rows = DEEP.rows(p)  # one row per virtual token: every layer's key and value
    assert rows.shape == (3, bb.num_layers * 2 * geo.kv_width)
    assert torch.equal(rows[1, : geo.kv_width], p[0, 0, 1]) and torch.equal(rows[1, -geo.kv_width:], p[-1, 1, 1])
    assert torch.equal(DEEP.init(bb, 3, "vocab", seed=4), DEEP.init(bb, 3, "vocab", seed=4))
    inp = PROMPT_TYPES.get("input").init(bb, 3, "vocab")
    assert inp.shape == (3, bb.hidden_size)


def test_zero_prefix_is_the_plain_forward(bb):
    """The mechanism with n = 0 prefix positions reproduces the model exactly
    (on MPNet this checks our prefix-aware attention against transformers')."""
    enc, geo = _batch(bb), PromptGeometry.of(bb)
    empty = [(torch.zeros(2, geo.kv_heads, 0, geo.head_dim),) * 2 for _ in range(geo.num_layers)]
    model = _model(bb)
    with torch.no_grad():
        plain = _hidden(model(**enc))
        got = _hidden(mechanism(model).forward(model, {"input_ids": enc.input_ids}, enc.attention_mask, empty))
    assert torch.allclose(got, plain, atol=1e-5)
    assert "forward" not in vars(bb.model.get_submodule(_first_attention(bb)))  # MPNet patch restored


def _first_attention(bb) -> str:
    return next(n for n, m in bb.model.named_modules() if type(m).__name__.endswith("SelfAttention")
                or type(m).__name__ == "LlamaAttention")


def test_prefix_changes_outputs_and_respects_padding(bb):
    """A padded row gives what it gives alone: the mask is extended right."""
    enc = _batch(bb)
    p = DEEP.init(bb, 4, "vocab", seed=3)
    model = _model(bb)
    with torch.no_grad():
        plain_out = model(**enc)
        plain = _hidden(plain_out)
        both = deep_forward(model, enc.input_ids, enc.attention_mask, p)
        short = int(enc.attention_mask[1].sum())
        alone = deep_forward(model, enc.input_ids[1:, :short], enc.attention_mask[1:, :short], p)
    assert type(both) is type(plain_out) and _hidden(both).shape == plain.shape
    assert (_hidden(both) - plain).abs().max() > 1e-2
    assert torch.allclose(_hidden(both)[1, :short], _hidden(alone)[0], atol=1e-4)


def test_gradient_reaches_every_layer(bb):
    enc = _batch(bb)
    p = DEEP.init(bb, 2, "vocab").requires_grad_(True)
    embeds = bb.embeddings()(enc.input_ids)
    out = deep_forward(_model(bb), embeds, enc.attention_mask, p)
    _hidden(out).float().pow(2).mean().backward()
    per_slot = p.grad.abs().sum(dim=(2, 3))  # (L, 2): every layer's keys and values
    assert p.grad is not None and bool((per_slot > 0).all()), per_slot
    assert all(not q.requires_grad for q in bb.model.parameters())


def test_batched_prompts_one_per_row(bb):
    enc = _batch(bb)
    a, b = DEEP.init(bb, 2, "vocab", seed=5), DEEP.init(bb, 2, "vocab", seed=6)
    with torch.no_grad():
        stacked = _hidden(deep_forward(_model(bb), enc.input_ids, enc.attention_mask, torch.stack([a, b])))
        only_b = _hidden(deep_forward(_model(bb), enc.input_ids, enc.attention_mask, b))
    assert torch.allclose(stacked[1], only_b[1], atol=1e-4)


def test_wrong_shapes_refused_in_one_line(bb):
    enc, geo = _batch(bb), PromptGeometry.of(bb)
    bad = [torch.zeros(geo.num_layers + 1, 2, 3, geo.kv_width), torch.zeros(geo.num_layers, 2, 3, geo.kv_width + 1),
           torch.zeros(3, bb.hidden_size), torch.zeros(3, geo.num_layers, 2, 3, geo.kv_width),
           torch.full((geo.num_layers, 2, 3, geo.kv_width), float("nan"))]
    for tensor in bad:
        with pytest.raises(PandaError) as err:
            deep_forward(_model(bb), enc.input_ids, enc.attention_mask, tensor)
        assert "\n" not in str(err.value)
    with pytest.raises(PandaError, match=rf"shape \({geo.num_layers}, 2, n, {geo.kv_width}\), got"):
        DEEP.check(bad[1], geo)


def test_causal_deep_prefix_equals_input_prefix():
    """On a causal LM a deep prefix holding the keys/values an input-level
    prompt produces gives the same states as that prompt run as input tokens."""
    bb = get_backbone("smollm2")
    enc, n = _batch(bb), 5
    prompt = PROMPT_TYPES.get("input").init(bb, n, "vocab", seed=7)
    emb = bb.embeddings()(enc.input_ids)
    full = torch.cat([prompt.unsqueeze(0).expand(2, -1, -1), emb], 1)
    mask = torch.cat([torch.ones(2, n, dtype=torch.long), enc.attention_mask], 1)
    with torch.no_grad():
        ref = bb.model.model(inputs_embeds=full, attention_mask=mask).last_hidden_state[:, n:]
        got = deep_forward(bb.model.model, emb, enc.attention_mask, deep_from_input(bb.model, prompt))
    real = enc.attention_mask.bool()
    assert torch.allclose(got.last_hidden_state[real], ref[real], atol=1e-4)


def test_causal_lm_head_and_kwargs():
    """The full causal LM: model kwargs (logits_to_keep, as `CausalLMKind` passes
    them) reach the model, positions are the text's, the output type is kept."""
    bb = get_backbone("smollm2")
    enc = _batch(bb)
    p = DEEP.init(bb, 3, "vocab", seed=8)
    last = enc.attention_mask.sum(1) - 1
    keep, where = torch.unique(last, return_inverse=True)
    with torch.no_grad():
        out = deep_forward(bb.model, enc.input_ids, enc.attention_mask, p, logits_to_keep=keep)
        states = deep_forward(bb.model.model, enc.input_ids, enc.attention_mask, p).last_hidden_state
    assert type(out).__name__ == "CausalLMOutputWithPast"
    expected = bb.model.lm_head(states[torch.arange(2), last])
    assert torch.allclose(out.logits[torch.arange(2), where], expected, atol=1e-4)


def test_unsupported_architecture_refused():
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=10))
    with pytest.raises(PandaError, match="deep prompts run on bert, llama, mpnet models"):
        deep_forward(model, torch.zeros(1, 2, dtype=torch.long), None, torch.zeros(1, 2, 1, 8))
    assert PREFIX_MECHANISMS.names() == ["bert", "llama", "mpnet"]


# ------------------------------------------------------------------- PEFT
@pytest.mark.parametrize("name", ["tiny-mlm", "minilm", "smollm2"])
def test_peft_export_loads_and_matches(name, tmp_path):
    from peft import PeftModel

    bb = tiny_mlm() if name == "tiny-mlm" else get_backbone(name)
    p = DEEP.init(bb, 3, "vocab", seed=2)
    write_prefix_adapter(p, bb, tmp_path / "adapter", {"task": "mr"})
    back, info = read_prefix_adapter(tmp_path / "adapter", bb)
    assert torch.equal(back, p) and info["backbone"] == bb.name and info["panda_meta"]["task"] == "mr"
    enc = _batch(bb)
    peft_model = PeftModel.from_pretrained(bb.model, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        theirs = _hidden(peft_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask))
        ours = _hidden(deep_forward(bb.model, enc.input_ids, enc.attention_mask, p))
    real = enc.attention_mask.bool()
    assert torch.allclose(theirs[real], ours[real], atol=1e-5)


def test_peft_refusals_write_nothing(tmp_path):
    minilm, mpnet = get_backbone("minilm"), get_backbone("mpnet")
    with pytest.raises(PandaError, match="cannot take a PEFT prefix-tuning adapter"):
        write_prefix_adapter(DEEP.init(mpnet, 2, "random"), mpnet, tmp_path / "m")
    with pytest.raises(PandaError, match=r"has shape \(6, 2, n, 384\)"):
        write_prefix_adapter(torch.zeros(5, 2, 2, 384), minilm, tmp_path / "w")
    assert not (tmp_path / "m").exists() and not (tmp_path / "w").exists()

    smol = get_backbone("smollm2")
    folder = tmp_path / "smol"
    write_prefix_adapter(DEEP.init(smol, 2, "random"), smol, folder)
    with pytest.raises(PandaError, match="trained on 'smollm2', not 'minilm'"):
        read_prefix_adapter(folder, minilm)

    # a PEFT-made adapter (no record of its backbone: no sidecar, no hub id we know) of other sizes
    (folder / "panda.json").unlink(missing_ok=True)
    cfg = json.loads((folder / "adapter_config.json").read_text()) | {"base_model_name_or_path": "someone/else"}
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    save_file({"prompt_embeddings": torch.zeros(2, 30 * 2 * 192)}, str(folder / "adapter_model.safetensors"))
    with pytest.raises(PandaError, match=r"30 layers x 3 heads x 64, 'minilm' needs 6 x 12 x 32"):
        read_prefix_adapter(folder, minilm)
    (folder / "adapter_config.json").write_text(json.dumps(cfg | {"num_virtual_tokens": 4}))
    with pytest.raises(PandaError, match=r"the config says float \(4, 11520\)"):
        read_prefix_adapter(folder)
    (folder / "adapter_config.json").write_text(json.dumps(cfg | {"peft_type": "PROMPT_TUNING"}))
    with pytest.raises(PandaError, match="is not PREFIX_TUNING"):
        read_prefix_adapter(folder)
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(PandaError, match="not a readable PEFT config"):
        read_prefix_adapter(folder)


def test_peft_layout_is_ours():
    """PEFT's flat prompt_embeddings: per token, [layer0 key, layer0 value, layer1 key, ...]."""
    p = torch.arange(2 * 2 * 3 * 4, dtype=torch.float32).reshape(2, 2, 3, 4)
    flat = to_peft_embeddings(p)
    view = flat.view(3, 2 * 2, 4)  # (n, 2L, w) as PeftModel.get_prompt reads it
    assert torch.equal(view[:, 2 * 1 + 1], p[1, 1]) and torch.equal(view[:, 0], p[0, 0])
