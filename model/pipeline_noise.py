"""The pipeline's randomness: per-purpose seeds derived from the request seed and sampler
``noise_fn`` callables that draw on the CPU (so one seed gives the same sample on any device)
and move the draws to the state's device. See SAMPLING.md §6-§8 and :mod:`model.pipeline`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from model.state import AV


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` derived from the request seed (stable across versions)."""
    digest = hashlib.sha256(f"mmd:{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def cpu_generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def cpu_noise(generator: torch.Generator) -> Callable[[int, object], object]:
    """A sampler ``noise_fn``: standard normal drawn on the CPU, moved to the state's device."""

    def draw(step: int, like: object) -> object:
        def one(x: Tensor) -> Tensor:
            return torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)

        return like.map(one) if isinstance(like, AV) else one(like)  # type: ignore[attr-defined]

    return draw


def group_noise(generators: Sequence[torch.Generator], counts: Sequence[int]
                 ) -> Callable[[int, object], object]:
    """A sampler ``noise_fn`` for a batch: job ``j`` draws its rows ``[counts[j], ...]`` from its
    own generator, video before audio, exactly the draws it makes alone."""
    if len(generators) == 1:
        return cpu_noise(generators[0])

    def draw(step: int, like: object) -> object:
        def one(x: Tensor) -> Tensor:
            parts = [
                torch.randn((c, *x.shape[1:]), generator=g)
                for g, c in zip(generators, counts, strict=True)
            ]
            return torch.cat(parts).to(device=x.device, dtype=x.dtype)

        return like.map(one) if isinstance(like, AV) else one(like)  # type: ignore[attr-defined]

    return draw


def no_noise(step: int, like: object) -> object:
    raise RuntimeError("a batched SR stage must use a deterministic sampler (see batch_key)")
