"""Deferred imports for the registries' modules.

The CLI refuses a bad name or number by reading the registries (methods,
indicators, backbone kinds), and it must do that in well under 2 s, before
any model loads. Importing torch alone takes 2-3 s of CPU, so the modules
that register an entry import torch through `lazy_module`: the name is bound
at import, the library is imported on first attribute access (the first real
computation). Annotations stay plain (`from __future__ import annotations`).
"""

from __future__ import annotations

import functools
import importlib
import types
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class _LazyModule(types.ModuleType):
    """A stand-in module that imports its target on first attribute access."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_target"] = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__dict__["_lazy_target"])
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_target']!r}>"


def lazy_module(name: str) -> Any:
    """`name`, imported when first used (e.g. ``torch = lazy_module("torch")``)."""
    return _LazyModule(name)


def inference_mode(fn: F) -> F:
    """`torch.inference_mode()` as a decorator that imports torch at call time
    (the decorator form of torch imports it at definition time)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
