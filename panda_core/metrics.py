"""Transferability indicators between soft prompts (METHODS.md section 4) and
their validation against measured transfer.

Every indicator has the same contract: K prompts in, a (K, K) matrix out,
entry [s, t] = predicted transferability from source s to target t.
Embedding indicators are symmetric; the PANDA metric is not (it uses the
target task's inputs).

- e_concat  1 / (1 + ||vec(P1) - vec(P2)||)
- e_avg     1 / (1 + mean_ij ||p1_i - p2_j||)
- c_concat  cos(vec(P1), vec(P2))
- c_avg     mean_ij cos(p1_i, p2_j)  (= dot of the mean unit rows)
- spot      cos(mean_i p1_i, mean_j p2_j)
- on        cosine of binarised FFN activations (overlap of activated neurons)
- panda     cos(e_s, e_t), e_k = mean prompt-driven representation of target inputs
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import PandaError
from .prompts import SoftPrompt


class Metric(str, enum.Enum):
    E_CONCAT = "e_concat"
    E_AVG = "e_avg"
    C_CONCAT = "c_concat"
    C_AVG = "c_avg"
    SPOT = "spot"
    ON = "on"
    PANDA = "panda"


EMBEDDING_METRICS = (Metric.E_CONCAT, Metric.E_AVG, Metric.C_CONCAT, Metric.C_AVG, Metric.SPOT)
METRIC_LABELS = {
    "e_concat": "Euclidean (flattened)",
    "e_avg": "Euclidean (token-averaged)",
    "c_concat": "Cosine (flattened)",
    "c_avg": "Cosine (token-averaged)",
    "spot": "SPoT (cosine of mean token)",
    "on": "ON: overlap of activated neurons",
    "panda": "PANDA task-embedding cosine",
}


@dataclass
class OnOptions:
    """Where ON reads the FFN: the `<mask>` (or last, causal) position of the
    prompt alone (Su et al.), or averaged over task inputs; which layers."""

    layers: tuple[int, int] | None = None  # [start, end) window; None = all layers
    with_inputs: str | None = None  # task whose inputs are averaged over (choice)
    n_inputs: int = 32


def _stack(prompts: Sequence[torch.Tensor | SoftPrompt]) -> torch.Tensor:
    tensors = [p.tensor if isinstance(p, SoftPrompt) else p for p in prompts]
    if not tensors:
        raise PandaError("no prompts to compare; train prompts first")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise PandaError(f"prompts have different shapes {sorted(shapes)}; compare prompts of one backbone and length")
    backbones = {p.backbone for p in prompts if isinstance(p, SoftPrompt)}
    if len(backbones) > 1:
        raise PandaError(f"prompts come from different backbones {sorted(backbones)}; compare one backbone at a time")
    return torch.stack([t.detach().float().cpu() for t in tensors])


# ------------------------------------------------------------ embedding ones
def e_concat(P: torch.Tensor) -> torch.Tensor:
    flat = P.reshape(P.shape[0], -1).double()
    return 1.0 / (1.0 + torch.cdist(flat, flat))


def e_avg(P: torch.Tensor) -> torch.Tensor:
    k, n, d = P.shape
    rows = P.reshape(k * n, d).double()
    dist = torch.cdist(rows, rows).reshape(k, n, k, n).mean(dim=(1, 3))
    return 1.0 / (1.0 + dist)


def c_concat(P: torch.Tensor) -> torch.Tensor:
    flat = F.normalize(P.reshape(P.shape[0], -1).double(), dim=-1)
    return flat @ flat.T


def c_avg(P: torch.Tensor) -> torch.Tensor:
    mean_unit = F.normalize(P.double(), dim=-1).mean(1)  # (K, d)
    return mean_unit @ mean_unit.T


def spot(P: torch.Tensor) -> torch.Tensor:
    mean = F.normalize(P.double().mean(1), dim=-1)
    return mean @ mean.T


EMBEDDING_FUNCS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "e_concat": e_concat, "e_avg": e_avg, "c_concat": c_concat, "c_avg": c_avg, "spot": spot,
}


# ------------------------------------------------------------------------ ON
def binary_cosine(A: torch.Tensor) -> torch.Tensor:
    """|Ai n Aj| / sqrt(|Ai| |Aj|) for rows of a 0/1 (or frequency) matrix."""
    A = A.double()
    inter = A @ A.T
    norms = inter.diagonal().clamp(min=1e-12).sqrt()
    return inter / norms[:, None] / norms[None, :]


@torch.inference_mode()
def ffn_activations(backbone, prompt: torch.Tensor, options: OnOptions | None = None) -> torch.Tensor:
    """Binarised FFN activations (num_layers, ffn_size) of the frozen backbone
    driven by `prompt`, read at the `<mask>` position (the last position for a
    causal LM). With `options.with_inputs`, the activation *frequency* over
    that task's inputs is returned instead."""
    options = options or OnOptions()
    captured: list[torch.Tensor] = []

    def hook(_module, _inp, out):
        captured.append(out.detach())

    handles = [m.register_forward_hook(hook) for m in backbone.ffn_modules()]
    try:
        if options.with_inputs:
            acts = _activations_on_inputs(backbone, prompt, options, captured)
        else:
            embeds, position = _prompt_alone(backbone, prompt.to(backbone.device))
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
            _forward_trunk(backbone, embeds, mask)
            acts = torch.stack([c[0, position] for c in captured]) > 0
    finally:
        for h in handles:
            h.remove()
    return acts.float().cpu()


def _prompt_alone(backbone, prompt: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Input embeddings of `[CLS] <soft> [MASK] [SEP]` (encoders, masked LMs)
    or `<soft>` (causal), and the position ON reads."""
    emb = backbone.embeddings()
    tok = backbone.tokenizer
    p = prompt.to(emb.weight.dtype).unsqueeze(0)
    if backbone.kind == "causal":
        return p, p.shape[1] - 1
    ids = lambda i: emb(torch.tensor([[i]], device=p.device))  # noqa: E731
    cls_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    if tok.mask_token_id is None:
        return torch.cat([ids(cls_id), p, ids(sep_id)], 1), 1
    return torch.cat([ids(cls_id), p, ids(tok.mask_token_id), ids(sep_id)], 1), 1 + p.shape[1]


def _forward_trunk(backbone, embeds: torch.Tensor, mask: torch.Tensor):
    model = backbone.model
    base = model if backbone.kind == "encoder" else getattr(model, "base_model", model)
    return base(inputs_embeds=embeds, attention_mask=mask)


def _activations_on_inputs(backbone, prompt, options: OnOptions, captured: list) -> torch.Tensor:
    from .scoring import PromptScorer
    from .tasks import get_task, load_split

    task = get_task(options.with_inputs)
    scorer = PromptScorer(backbone, task, prompt.shape[0])
    enc = scorer.encode(load_split(task.name, "dev"))
    total = None
    count = 0
    for batch in scorer.batches(enc, 16, limit=options.n_inputs):
        captured.clear()
        embeds, mask, start = scorer._splice(batch, prompt.to(backbone.device))
        _forward_trunk(backbone, embeds, mask)
        n = prompt.shape[0]
        if backbone.kind == "causal":
            pos = mask.sum(1) - 1
        elif backbone.kind == "mlm":
            pos = torch.full((mask.shape[0],), start + n, device=mask.device)
        else:
            pos = torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)  # [CLS]
        rows = torch.arange(mask.shape[0], device=mask.device)
        acts = torch.stack([c[rows, pos] for c in captured], 1) > 0  # (B, L, F)
        total = acts.float().sum(0) if total is None else total + acts.float().sum(0)
        count += acts.shape[0]
    return total / max(count, 1)


def on_matrix(backbone, prompts: Sequence[torch.Tensor | SoftPrompt], options: OnOptions | None = None,
              cache: dict | None = None) -> torch.Tensor:
    """ON over K prompts: one forward per prompt (activations cached by prompt
    id when `cache` is given), then one matrix product."""
    options = options or OnOptions()
    _stack(prompts)
    rows = []
    for p in prompts:
        key = (getattr(p, "prompt_id", None), options.with_inputs, options.n_inputs)
        if cache is not None and key[0] and key in cache:
            acts = cache[key]
        else:
            acts = ffn_activations(backbone, p.tensor if isinstance(p, SoftPrompt) else p, options)
            if cache is not None and key[0]:
                cache[key] = acts
        if options.layers is not None:
            lo, hi = options.layers
            if not 0 <= lo < hi <= acts.shape[0]:
                raise PandaError(f"layer window [{lo}, {hi}) is outside the backbone's {acts.shape[0]} layers")
            acts = acts[lo:hi]
        rows.append(acts.reshape(-1))
    return binary_cosine(torch.stack(rows))


# --------------------------------------------------------------------- PANDA
@torch.inference_mode()
def task_embedding(backbone, prompt: torch.Tensor, task_name: str, n_inputs: int = 32) -> torch.Tensor:
    """Mean prompt-driven representation of `n_inputs` dev inputs of a task (d,)."""
    from .scoring import PromptScorer
    from .tasks import get_task, load_split

    scorer = PromptScorer(backbone, get_task(task_name), prompt.shape[0])
    enc = scorer.encode(load_split(task_name, "dev"))
    feats = [scorer.features(b, prompt.to(backbone.device)) for b in scorer.batches(enc, 32, limit=n_inputs)]
    return torch.cat(feats).float().mean(0).cpu()


def panda_matrix(backbone, prompts: Sequence[SoftPrompt], tasks: Sequence[str], n_inputs: int = 32) -> torch.Tensor:
    """M[s, t] = cos(e_s, e_t) with both task embeddings computed on target t's
    inputs: how similarly the two prompts make the frozen model see t."""
    _stack(prompts)
    k = len(prompts)
    M = torch.zeros(k, k, dtype=torch.float64)
    for t, target in enumerate(tasks):
        embs = torch.stack([task_embedding(backbone, p.tensor, target, n_inputs) for p in prompts])
        embs = F.normalize(embs.double(), dim=-1)
        M[:, t] = embs @ embs[t]
    return M


def panda_pair(backbone, source: torch.Tensor, target: torch.Tensor, target_task: str, n_inputs: int = 32) -> float:
    """The PANDA metric of one (source prompt, target prompt) pair on the target task."""
    e_s = task_embedding(backbone, source, target_task, n_inputs)
    e_t = task_embedding(backbone, target, target_task, n_inputs)
    return float(F.cosine_similarity(e_s.double(), e_t.double(), dim=0))


# ------------------------------------------------------------- entry point
def similarity(
    metric: str, prompts: Sequence[SoftPrompt], backbone=None, tasks: Sequence[str] | None = None,
    on_options: OnOptions | None = None, n_inputs: int = 32, cache: dict | None = None,
) -> np.ndarray:
    """The (K, K) indicator matrix for `metric` over `prompts`."""
    try:
        metric = Metric(metric).value
    except ValueError:
        raise PandaError(f"unknown metric '{metric}'; choose from {[m.value for m in Metric]}") from None
    if metric in EMBEDDING_FUNCS:
        return EMBEDDING_FUNCS[metric](_stack(prompts)).numpy()
    if backbone is None:
        raise PandaError(f"metric '{metric}' needs the backbone the prompts were trained on")
    if metric == "on":
        return on_matrix(backbone, prompts, on_options, cache).numpy()
    tasks = list(tasks or [p.task for p in prompts])
    return panda_matrix(backbone, prompts, tasks, n_inputs).numpy()


# -------------------------------------------------------------- validation
def rank_correlation(predicted: np.ndarray, measured: np.ndarray, exclude_diagonal: bool = True) -> dict:
    """How well an indicator ranks sources, as PANDA evaluates it: Spearman and
    Kendall per target (column) over sources, their mean, and pooled over all pairs.

    Both arrays are (sources, targets); NaN in `measured` marks a missing run."""
    from scipy.stats import kendalltau, spearmanr

    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    per_target = []
    pooled_p, pooled_m = [], []
    for t in range(measured.shape[1]):
        keep = ~np.isnan(measured[:, t])
        if exclude_diagonal and t < measured.shape[0]:
            keep[t] = False
        p, m = predicted[keep, t], measured[keep, t]
        pooled_p.extend(p)
        pooled_m.extend(m)
        if len(p) >= 3 and np.ptp(p) > 0 and np.ptp(m) > 0:
            per_target.append((float(spearmanr(p, m)[0]), float(kendalltau(p, m)[0])))
        else:
            per_target.append((float("nan"), float("nan")))
    sp = [s for s, _ in per_target if not np.isnan(s)]
    kt = [k for _, k in per_target if not np.isnan(k)]
    pooled_ok = len(pooled_p) >= 3 and np.ptp(pooled_p) > 0 and np.ptp(pooled_m) > 0
    return {
        "spearman_per_target": [s for s, _ in per_target],
        "kendall_per_target": [k for _, k in per_target],
        "spearman_mean": float(np.mean(sp)) if sp else float("nan"),
        "kendall_mean": float(np.mean(kt)) if kt else float("nan"),
        "spearman_pooled": float(spearmanr(pooled_p, pooled_m)[0]) if pooled_ok else float("nan"),
        "kendall_pooled": float(kendalltau(pooled_p, pooled_m)[0]) if pooled_ok else float("nan"),
        "n_pairs": len(pooled_p),
    }
