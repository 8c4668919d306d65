"""Readouts: how the states a soft prompt drives are read and turned into
class scores (`READOUTS`; docs/readouts.md has the measurements behind the
defaults).

A readout says

- which positions it reads (`positions`: (B,) one position per row, or
  (B, k) several, -1 where a row has fewer); the ON indicator reads exactly
  these through `PromptScorer.readout_positions`;
- what it reads there (`features`: a label-independent (B, f) tensor, or the
  LM head's vocabulary logits for the label-word readouts);
- how classes are scored from that (`scores`), and which trainable
  parameters it adds for its task (`make_params`; counted, checkpointed and
  saved like the optional linear head, under the prompt file's ``head.*``).

The soft prompt stays the main trained parameter: the class vectors add
C x d numbers, the pair head C x (4d + 1); a 20-token prompt on MiniLM is
20 x 384.

`LEGACY` is each backbone kind's readout from before readouts were a choice
(a stored prompt that records none is scored with it); `DEFAULT` is what
``readout="auto"`` (the `TrainConfig` default) means on each kind. Adding a
readout is one registered subclass here plus its test.

Importing this module does not import torch (configs validate names with it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import PandaError
from ..lazy import lazy_module
from ..registry import Registry

if TYPE_CHECKING:
    from .scorer import PromptScorer

torch = lazy_module("torch")
F = lazy_module("torch.nn.functional")

AUTO = "auto"
#: each kind's readout before readouts were a choice (stored prompts without a recorded readout)
LEGACY = {"encoder": "mean-desc", "mlm": "verbalizer", "causal": "label-word"}
#: what "auto" means on each kind (measured: docs/readouts.md)
DEFAULT = dict(LEGACY)


class Readout:
    """One way of reading and scoring. Instances are stateless singletons.

    Attributes:
        name, label: the registry name and one line for humans.
        kinds: the backbone kinds it can read.
        slot: it reads a ``[MASK]`` right after the prompt; a kind without
            one (the encoder) gets it inserted, a masked LM's own is reused.
        lm_head: it scores the LM head's vocabulary logits.
        has_params: it adds trainable per-task parameters (`make_params`).
        segments: it needs each position's segment id (`features` gets them).
    """

    name: str = ""
    label: str = ""
    kinds: tuple[str, ...] = ("encoder", "mlm")
    slot: bool = False
    lm_head: bool = False
    has_params: bool = False
    segments: bool = False

    def positions(self, scorer: PromptScorer, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """The positions read: (B,), or (B, k) with -1 where a row reads fewer."""
        raise NotImplementedError

    def features(self, scorer: PromptScorer, hidden: torch.Tensor, mask: torch.Tensor, start: int, n: int,
                 segments: torch.Tensor | None = None) -> torch.Tensor:
        """(B, f) label-independent features read from the last hidden states."""
        return read_at(hidden, self.positions(scorer, mask, start, n))

    def scores(self, scorer: PromptScorer, outputs: torch.Tensor, params: Any = None) -> torch.Tensor:
        """(B, C) class scores from `features` rows (or vocabulary logits)."""
        raise NotImplementedError

    def param_shapes(self, hidden: int, classes: int) -> dict[str, tuple[int, ...]]:
        """The shapes of the parameters `make_params` adds, by state-dict name
        (what a prompt file stores under ``head.*``); checked when a file is read."""
        return {}

    def make_params(self, scorer: PromptScorer) -> torch.nn.Module | None:
        """A fresh per-task parameter module (None: the readout adds none)."""
        return None


READOUTS: Registry[Readout] = Registry("readout")


def resolve(name: str | None, kind: str) -> Readout:
    """The readout `name` ("auto"/None: the kind's default) for a backbone kind,
    or a one-line refusal when it cannot read that kind."""
    readout = READOUTS.get(DEFAULT.get(kind, LEGACY["encoder"]) if name in (None, AUTO) else name)
    if kind not in readout.kinds:
        ok = [r.name for r in READOUTS if kind in r.kinds]
        raise PandaError(f"readout '{readout.name}' cannot read a {kind} backbone; choose from {', '.join(ok)}")
    return readout


def recorded(meta: Any, kind: str) -> str:
    """The readout a stored prompt was trained with: recorded in its metadata
    (``extra.readout``, else ``extra.config.readout``), else its kind's
    `LEGACY` readout (prompts from before readouts were a choice)."""
    extra = getattr(meta, "extra", None)
    if extra is None and isinstance(meta, dict):
        extra = meta.get("extra", meta)
    extra = extra if isinstance(extra, dict) else {}
    config = extra.get("config") if isinstance(extra.get("config"), dict) else {}
    name = extra.get("readout") or config.get("readout")
    if name in (None, AUTO):
        return LEGACY.get(kind, LEGACY["encoder"])
    return READOUTS.get(name).name


# ------------------------------------------------------------------ helpers
def read_at(states: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, F) from (B, L, F) `states` at (B,) positions, or the mean over (B, k)
    positions (entries < 0 skipped)."""
    rows = torch.arange(states.shape[0], device=states.device)
    if positions.dim() == 1:
        return states[rows, positions]
    valid = (positions >= 0).unsqueeze(-1).to(states.dtype)
    gathered = states.gather(1, positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, states.shape[-1]))
    return (gathered * valid).sum(1) / valid.sum(1).clamp(min=1.0)


def text_keep(scorer: PromptScorer, mask: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """(B, L) bool: the text positions (special tokens included), not the
    prompt rows nor the slot after them."""
    keep = mask.bool().clone()
    keep[:, start : start + n + scorer.slot_tokens] = False
    return keep


def positions_of(keep: torch.Tensor) -> torch.Tensor:
    """(B, k) the True positions of each row of `keep`, in order, -1-padded."""
    k = max(int(keep.sum(1).max()), 1)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k]
    return order.masked_fill(~keep.gather(1, order), -1)


def mean_over(hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, d) mean of the states where `keep` is True."""
    w = keep.unsqueeze(-1).to(hidden.dtype)
    return (hidden * w).sum(1) / w.sum(1).clamp(min=1.0)


def cosine_scores(scorer: PromptScorer, outputs: torch.Tensor, unit_keys: torch.Tensor) -> torch.Tensor:
    """``temperature * cos(outputs, keys)``, (B, C), for keys of norm 1."""
    return scorer.temperature * F.normalize(outputs, dim=-1) @ unit_keys.T


# ------------------------------------------------------------ what is read
class _TextMean(Readout):
    """The mean of the text states (the prompt rows and slot left out)."""

    def positions(self, scorer, mask, start, n):
        return positions_of(text_keep(scorer, mask, start, n))

    def features(self, scorer, hidden, mask, start, n, segments=None):
        return mean_over(hidden, text_keep(scorer, mask, start, n))


class _Cls(Readout):
    """The first position (``[CLS]``), which the prompt steers through attention."""

    def positions(self, scorer, mask, start, n):
        return torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)


class _Slot(Readout):
    """A ``[MASK]`` right after the prompt, which the prompt steers through attention."""

    slot = True

    def positions(self, scorer, mask, start, n):
        return torch.full((mask.shape[0],), start + n, dtype=torch.long, device=mask.device)


# ----------------------------------------------------------- how it scores
class _Descriptions(Readout):
    """``temperature * cos(features, frozen embedding of each label's description)``."""

    def scores(self, scorer, outputs, params=None):
        return cosine_scores(scorer, outputs, scorer.label_keys())


class _Vectors(Readout):
    """``temperature * cos(features, learnable class vector)``; the C x d vectors
    start at the label descriptions' embeddings (so step 0 scores like them)."""

    has_params = True

    def param_shapes(self, hidden, classes):
        return {"vectors": (classes, hidden)}

    def make_params(self, scorer):
        module = torch.nn.Module()
        module.vectors = torch.nn.Parameter(scorer.label_keys().detach().clone())
        return module.to(scorer.device)

    def scores(self, scorer, outputs, params=None):
        if params is None:
            return cosine_scores(scorer, outputs, scorer.label_keys())
        return cosine_scores(scorer, outputs, F.normalize(params.vectors, dim=-1))


def params_problem(params: dict[str, Any], hidden: int) -> str | None:
    """Why stored readout parameters (a prompt file's ``head.*`` other than a
    linear head) fit no registered readout, or None when one readout's names
    and shapes match them exactly (the class count is read off the tensors)."""
    for readout in READOUTS:
        if not readout.has_params:
            continue
        first = next(iter(readout.param_shapes(hidden, 1)))
        classes = params[first].shape[0] if first in params and params[first].dim() >= 1 else 0
        want = readout.param_shapes(hidden, classes)
        if classes >= 1 and set(want) == set(params) and all(tuple(params[k].shape) == s for k, s in want.items()):
            return None
    names = ", ".join(sorted(k[:40] for k in params)[:6])
    return f"its readout parameters ({names}) fit no readout for hidden size {hidden}"


# ------------------------------------------------------------ the registry
def _combine(name: str, label: str, read: type[Readout], score: type[Readout]) -> Readout:
    """A registered readout that reads like `read` and scores like `score`."""
    cls = type(f"{read.__name__.strip('_')}{score.__name__.strip('_')}", (read, score), {"name": name, "label": label})
    return READOUTS.register(cls())


# what is read x how it is scored
_combine("mean-desc", "mean of the text states, cosine to the label descriptions (the encoders' original readout)",
         _TextMean, _Descriptions)


@READOUTS.add
class Verbalizer(Readout):
    name = "verbalizer"
    label = "verbalizer logits at <mask> (the masked LMs' readout, Su et al.)"
    kinds = ("mlm",)
    lm_head = True

    def positions(self, scorer, mask, start, n):
        return scorer.kind_impl.readout_positions(mask, start, n)

    def features(self, scorer, hidden, mask, start, n, segments=None):
        return scorer.kind_impl.pool(hidden, mask, start, n)

    def scores(self, scorer, outputs, params=None):
        return scorer.kind_impl.class_scores(scorer, outputs)


@READOUTS.add
class LabelWord(Verbalizer):
    name = "label-word"
    label = "label-word logits at the last position (the causal LMs' readout)"
    kinds = ("causal",)


_combine("cls-desc", "the [CLS] state, cosine to the label descriptions", _Cls, _Descriptions)
_combine("mask-desc", "a [MASK] inserted after the prompt, cosine to the label descriptions", _Slot, _Descriptions)
_combine("mean-vectors", "mean of the text states, cosine to learnable class vectors (from the descriptions)",
         _TextMean, _Vectors)
_combine("mask-vectors", "a [MASK] inserted after the prompt, cosine to learnable class vectors (from the "
         "descriptions)", _Slot, _Vectors)


@READOUTS.add
class PairFeatures(_TextMean):
    """SBERT's pair features from one joint forward: u and v are the mean states
    of segment 0 (``[CLS] text_a [SEP]``) and segment 1 (``text_b [SEP]``);
    a linear head scores ``[u, v, |u - v|, u * v]``. A single text has v = u."""

    name = "pair"
    label = "SBERT pair features (u, v, |u-v|, u*v) of the two segments, linear head"
    has_params = True
    segments = True

    def features(self, scorer, hidden, mask, start, n, segments=None):
        keep = text_keep(scorer, mask, start, n)
        if segments is None:
            u = v = mean_over(hidden, keep)
        else:
            second = keep & (segments == 1)
            u = mean_over(hidden, keep & ~second)
            v = torch.where(second.any(1, keepdim=True), mean_over(hidden, second), u)
        return torch.cat([u, v, (u - v).abs(), u * v], -1)

    def param_shapes(self, hidden, classes):
        return {"pair.weight": (classes, 4 * hidden), "pair.bias": (classes,)}

    def make_params(self, scorer):
        module = torch.nn.Module()
        module.pair = torch.nn.Linear(4 * scorer.backbone.hidden_size, len(scorer.task.labels))
        return module.to(scorer.device)

    def scores(self, scorer, outputs, params=None):
        if params is None:
            raise PandaError("the pair readout scores through its trained head; none was given")
        return params.pair(outputs)
