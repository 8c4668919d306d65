"""Cross-model prompt transfer through a trained projector (METHODS.md 5).

    flatten -> Linear(n*d_s, h) -> Tanh -> Linear(h, n*d_t) -> reshape -> LayerNorm(d_t)

Two ways to train it (Su et al.):
- distance: minimise ||Proj(P_s) - P_t|| to a prompt P_t trained on the target
  backbone for the same task;
- task: drive the frozen target backbone with Proj(P_s) and train the
  projector with the task loss (transfers better zero-shot).
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from collections.abc import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save

from . import atomic, paths, store
from .backbones import get_backbone
from .errors import PandaError
from .prompts import PromptInit, init_prompt
from .scoring import PromptScorer
from .tasks import get_task, load_split
from .train import evaluate, lr_lambda
from .transfer import source_prompt


class ProjectorMethod(str, enum.Enum):
    DISTANCE = "distance"
    TASK = "task"


class PromptProjector(torch.nn.Module):
    """Maps an (n, d_s) prompt of backbone A to an (n, d_t) prompt of backbone B.

    Example:
        >>> proj = PromptProjector(20, 384, 768)
        >>> proj(torch.randn(20, 384)).shape
        torch.Size([20, 768])
    """

    def __init__(self, length: int, d_source: int, d_target: int, hidden: int = 768) -> None:
        super().__init__()
        self.length, self.d_source, self.d_target, self.hidden = length, d_source, d_target, hidden
        self.net = torch.nn.Sequential(
            torch.nn.Linear(length * d_source, hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, length * d_target),
        )
        self.norm = torch.nn.LayerNorm(d_target)

    def forward(self, prompt: torch.Tensor) -> torch.Tensor:
        if prompt.shape[-2:] != (self.length, self.d_source):
            raise PandaError(
                f"projector expects prompts of shape ({self.length}, {self.d_source}), got {tuple(prompt.shape)}"
            )
        flat = prompt.reshape(*prompt.shape[:-2], self.length * self.d_source)
        out = self.net(flat).reshape(*prompt.shape[:-2], self.length, self.d_target)
        return self.norm(out)

    def config(self) -> dict:
        return {"length": self.length, "d_source": self.d_source, "d_target": self.d_target, "hidden": self.hidden}


def projector_path(projector_id: str):
    return store.prompt_path(projector_id).parent.parent / "projectors" / f"{projector_id}.safetensors"


def save_projector(proj: PromptProjector, meta: dict) -> str:
    pid = f"proj-{meta['source_backbone']}-{meta['target_backbone']}-{meta['method']}-{uuid.uuid4().hex[:6]}"
    path = paths.sub("projectors") / f"{pid}.safetensors"
    tensors = {k: v.detach().cpu().contiguous() for k, v in proj.state_dict().items()}
    header = {"panda_projector": json.dumps(meta | proj.config(), default=str)}
    atomic.write_bytes(path, save(tensors, metadata=header))
    atomic.write_json(path.with_suffix(".json"), meta | proj.config() | {"sha256": store.sha256_file(path)})
    return pid


def load_projector(projector_id: str) -> tuple[PromptProjector, dict]:
    path = paths.sub("projectors") / f"{projector_id}.safetensors"
    side = path.with_suffix(".json")
    if not path.exists() or not side.exists():
        raise PandaError(f"unknown projector '{projector_id}'")
    meta = json.loads(side.read_text())
    if store.sha256_file(path) != meta.get("sha256"):
        raise PandaError(f"projector '{projector_id}' failed its checksum; retrain it")
    proj = PromptProjector(meta["length"], meta["d_source"], meta["d_target"], meta["hidden"])
    proj.load_state_dict(load_file(str(path)))
    return proj, meta


def train_projector(
    source_backbone: str,
    target_backbone: str,
    train_task: str,
    method: str = "task",
    steps: int = 200,
    lr: float = 5e-3,
    hidden: int = 768,
    prompt_length: int = 20,
    batch_size: int = 16,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[PromptProjector, dict]:
    """Train a projector from the `train_task` prompt of the source backbone."""
    from .train import Cancelled

    method = ProjectorMethod(method).value
    torch.manual_seed(seed)
    bb_s, bb_t = get_backbone(source_backbone), get_backbone(target_backbone)
    p_s = source_prompt(train_task, bb_s.name, prompt_length).tensor.to(bb_t.device)
    proj = PromptProjector(prompt_length, bb_s.hidden_size, bb_t.hidden_size, hidden).to(bb_t.device)
    optim = torch.optim.AdamW(proj.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: lr_lambda(s, steps, int(0.06 * steps)))
    t0 = time.perf_counter()
    if method == "distance":
        p_t = source_prompt(train_task, bb_t.name, prompt_length).tensor.to(bb_t.device)
    else:
        scorer = PromptScorer(bb_t, get_task(train_task), prompt_length)
        enc = scorer.encode(load_split(train_task, "train"))
        gen = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        if should_stop and should_stop():
            raise Cancelled(f"cancelled at step {step - 1}/{steps}")
        if method == "distance":
            loss = (proj(p_s) - p_t).norm(dim=-1).mean()
        else:
            idx = torch.randint(0, len(enc), (batch_size,), generator=gen)
            batch = scorer.collate(enc, idx)
            loss = F.cross_entropy(scorer.logits(batch, proj(p_s)), batch.labels)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        if progress:
            progress({"step": step, "steps": steps, "loss": float(loss)})
    meta = {"source_backbone": bb_s.name, "target_backbone": bb_t.name, "train_task": train_task,
            "method": method, "steps": steps, "lr": lr, "seed": seed, "seconds": round(time.perf_counter() - t0, 1)}
    return proj.eval(), meta


_REFERENCE: dict[tuple, float] = {}


def _reference_acc(bb, task: str, which: tuple, prompt: torch.Tensor | None, limit: int | None) -> float:
    """Accuracy of a reference prompt (random, or the target backbone's own PT
    prompt), computed once per process: both projector methods compare to it."""
    key = (bb.name, task, which, limit)
    if key not in _REFERENCE:
        if prompt is None:
            prompt = store.load_prompt(which[1]).tensor
        _REFERENCE[key] = round(evaluate(bb, task, prompt, limit=limit), 4)
    return _REFERENCE[key]


def run_projection(
    source_backbone: str,
    target_backbone: str,
    train_task: str,
    method: str = "task",
    eval_tasks: list[str] | None = None,
    steps: int = 200,
    prompt_length: int = 20,
    seed: int = 0,
    test_limit: int | None = None,
    progress: Callable[[dict], None] | None = None,
    run_id: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Train, save and evaluate a projector: each eval task's source prompt is
    projected and scored zero-shot on the target backbone, next to a random
    prompt and (when one exists) the target backbone's own PT prompt."""
    proj, meta = train_projector(source_backbone, target_backbone, train_task, method, steps,
                                 prompt_length=prompt_length, seed=seed, progress=progress,
                                 should_stop=should_stop)
    pid = save_projector(proj, meta)
    bb_s, bb_t = get_backbone(source_backbone), get_backbone(target_backbone)
    rand = init_prompt(bb_t.embeddings(), prompt_length, PromptInit.RANDOM, seed=seed)
    results = []
    for task in eval_tasks or [train_task]:
        p_s = source_prompt(task, bb_s.name, prompt_length).tensor.to(bb_t.device)
        with torch.no_grad():
            projected = proj(p_s)
        row = {
            "task": task, "family": get_task(task).family,
            "test_acc": round(evaluate(bb_t, task, projected, limit=test_limit), 4),
            "random_prompt_acc": _reference_acc(bb_t, task, ("random", seed, prompt_length), rand, test_limit),
        }
        own = store.latest_prompt_id(task, bb_t.name, "pt", prompt_length)
        row["target_pt_acc"] = _reference_acc(bb_t, task, ("own", own), None, test_limit) if own else None
        results.append(row)
    run_id = run_id or store.create_run("project", method, train_task, bb_t.name, meta, source=bb_s.name)
    out = {"projector_id": pid, "run_id": run_id, **meta, "results": results}
    store.update_run(run_id, status="done", result=out)
    return out
