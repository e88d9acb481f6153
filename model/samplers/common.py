"""Shared sampler plumbing: cancellation, callbacks, NFE counting, noise sources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import torch
from torch import Tensor

from model.state import AV, State, tmap

Callback: TypeAlias = Callable[[int, int, State], None]
"""``callback(step, total, state)``, called after every sampler step (1-based ``step``)."""

NoiseFn: TypeAlias = Callable[[int, State], State]
"""``noise_fn(step, like)`` -> standard-normal noise shaped like ``like`` for loop step ``step``
(0-based, in sampling order). Injects a noise bank instead of drawing from the generator."""


class SamplingCancelled(Exception):
    """Raised by a callback to stop a sampler at once; it propagates out of the sampler."""


class NFECounter:
    """Wraps a network callable and counts its evaluations.

    ``forward``: every call. ``backward``: calls made while autograd was recording (each is
    followed by one backward pass in the gradient-guided conditional samplers).
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.forward = 0
        self.backward = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.forward += 1
        if torch.is_grad_enabled() and any(
            isinstance(a, Tensor) and a.requires_grad for a in args
        ):
            self.backward += 1
        return self.fn(*args, **kwargs)

    def as_dict(self) -> dict[str, int]:
        return {"forward": self.forward, "backward": self.backward}


def count_nfe(fn: Callable[..., Any]) -> NFECounter:
    """Return a counting wrapper of ``fn`` to pass to a sampler in its place."""
    return NFECounter(fn)


def generator_noise(generator: torch.Generator | None) -> NoiseFn:
    """A noise source drawing ``randn`` from ``generator`` (video first, then audio)."""

    def one(x: Tensor) -> Tensor:
        device = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)

    def draw(step: int, like: State) -> State:
        return tmap(one, like)

    return draw


def notify(callback: Callback | None, step: int, total: int, state: State) -> None:
    if callback is not None:
        callback(step, total, state)


def as_av(state: State) -> AV:
    if not isinstance(state, AV):
        raise ValueError(f"expected an AV (video, audio) pair, got {type(state).__name__}")
    return state
