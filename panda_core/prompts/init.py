"""How a fresh prompt tensor is initialised (vocabulary rows, noise, or a
copy of a source prompt for prompt transfer)."""

from __future__ import annotations

import enum
import hashlib
from typing import TYPE_CHECKING, Any

from ..errors import PandaError

if TYPE_CHECKING:
    import torch

    from .soft_prompt import SoftPrompt


class PromptInit(str, enum.Enum):
    """How a fresh prompt is initialised."""

    VOCAB = "vocab"  # rows copied from embeddings of sampled vocabulary tokens (Lester et al.)
    RANDOM = "random"  # normal noise at the scale of the embedding table
    SOURCE = "source"  # a copy of a source prompt (prompt transfer)


def init_prompt(
    embeddings: torch.nn.Embedding,
    length: int,
    how: PromptInit | str = PromptInit.VOCAB,
    seed: int = 0,
    source: torch.Tensor | None = None,
) -> torch.Tensor:
    """A fresh (length, d) prompt tensor on the embeddings' device.

    `vocab` copies rows of sampled ordinary vocabulary tokens, which trains
    faster and more stably than noise on small backbones.
    """
    import torch

    how = PromptInit(how)
    weight = embeddings.weight.detach()
    gen = torch.Generator().manual_seed(seed)
    if how is PromptInit.SOURCE:
        if source is None:
            raise PandaError("prompt init 'source' needs a source prompt")
        return source.detach().clone().to(weight.device, torch.float32)
    if how is PromptInit.RANDOM:
        std = float(weight.float().std())
        return (torch.randn(length, weight.shape[1], generator=gen) * std).to(weight.device)
    vocab = weight.shape[0]
    lo, hi = min(1000, vocab // 10), min(6000, vocab)  # skip special/rare ids at the ends
    ids = torch.randint(lo, hi, (length,), generator=gen)
    return weight[ids.to(weight.device)].float().clone()


def task_seed(task: str, seed: int) -> int:
    """The seed of `task`'s fresh prompt under a run's `seed`.

    Derived from the task name, so the PT prompts of different tasks do not
    share one starting point (with a shared start, embedding indicators partly
    measure the distance from it); deterministic, so runs stay reproducible."""
    digest = hashlib.sha256(f"{task}\0{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # in [0, 2^63)


def recorded_init(prompt: SoftPrompt) -> tuple[str, int]:
    """(init method, init seed) a stored PT prompt started from. Prompts saved
    before per-task seeds record no "init_seed": they started from `seed`."""
    extra: dict[str, Any] = prompt.extra or {}
    config = extra.get("config") or {}
    if "init" not in config:
        raise PandaError(f"prompt {prompt.prompt_id or prompt.task!r} records no initialisation "
                         "(imported, or not trained by `train`): the change from the initialisation needs it")
    how = PromptInit(config["init"])
    if how is PromptInit.SOURCE:
        raise PandaError(f"prompt {prompt.prompt_id or prompt.task!r} started from another prompt, not a fresh one")
    return how.value, int(extra.get("init_seed", prompt.seed))


def initial_tensor(prompt: SoftPrompt, backbone: Any) -> torch.Tensor:
    """The exact tensor a stored PT prompt was initialised from (CPU float32),
    of its prompt type; `backbone` is the `Backbone` (an input prompt's
    embedding table is accepted too)."""
    from .types import PROMPT_TYPES

    how, seed = recorded_init(prompt)
    if not hasattr(backbone, "embeddings"):  # the embedding table itself
        return init_prompt(backbone, prompt.length, how, seed=seed).float().cpu()
    return PROMPT_TYPES.get(prompt.prompt_type).init(backbone, prompt.length, how, seed=seed).float().cpu()


def check_init(init: torch.Tensor, config: Any, task: str | None = None) -> None:
    """Refuse (one line) an initial prompt of another type or length than the
    run's `config` (a `TrainConfig`): a deep prompt never starts an
    input-level run, nor the reverse."""
    from .types import prompt_type_of

    where = f"initial prompt of '{task}'" if task else "initial prompt"
    kind = prompt_type_of(init).name
    if kind != config.prompt_type:
        raise PandaError(f"{where} is a {kind} prompt but the run trains a {config.prompt_type} prompt; "
                         "transfer between prompts of one type")
    if init.shape[-2] != config.prompt_length:
        raise PandaError(f"{where} has {init.shape[-2]} tokens but prompt_length is {config.prompt_length}")
