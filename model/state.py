"""The sampler state: a (video, audio) pair or a single tensor, with helpers.

Every sampler is written once over a ``State``: either an :class:`AV` pair (the coupled
audio-video model; ``video [B, F, C, H, W]``, ``audio [B, C, L]``) or a plain tensor (the
super-resolution model; ``x [N, C, H, W]``). Arithmetic on a state goes through :func:`tmap`,
which applies a function modality by modality; per-batch scalars ``[B]`` are broadcast to each
modality's rank with :func:`bcast`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeAlias

import torch
from torch import Tensor


class AV(NamedTuple):
    """A coupled audio-video state: ``video [B, F, C, H, W]``, ``audio [B, C, L]``."""

    video: Tensor
    audio: Tensor

    def map(self, fn: Callable[..., Tensor], *others: AV) -> AV:
        """Apply ``fn(video, *other_videos)`` and ``fn(audio, *other_audios)``."""
        return AV(
            fn(self.video, *(o.video for o in others)),
            fn(self.audio, *(o.audio for o in others)),
        )

    @property
    def batch_size(self) -> int:
        return int(self.video.shape[0])

    def detach(self) -> AV:
        return AV(self.video.detach(), self.audio.detach())

    def replace(self, modality: str, value: Tensor) -> AV:
        """A new pair with ``modality`` ("video" or "audio") replaced by ``value``."""
        return self._replace(**{modality: value})


State: TypeAlias = "AV | Tensor"


def tmap(fn: Callable[..., Tensor], state: State, *others: State) -> State:
    """Apply ``fn`` to each modality of ``state`` (and the matching modalities of ``others``)."""
    if isinstance(state, AV):
        return state.map(fn, *others)  # type: ignore[arg-type]
    return fn(state, *others)


def leaves(state: State) -> tuple[Tensor, ...]:
    """The tensors of a state, video first."""
    return tuple(state) if isinstance(state, AV) else (state,)


def batch_size(state: State) -> int:
    return int(leaves(state)[0].shape[0])


def bcast(scalars: Tensor, like: Tensor) -> Tensor:
    """Reshape per-batch values ``[B]`` to ``[B, 1, ..., 1]`` with the rank of ``like``."""
    return scalars.reshape(scalars.shape[0], *([1] * (like.dim() - 1)))


def check_state(state: State, name: str = "state") -> None:
    """Raise ValueError unless ``state`` is a float tensor or an AV pair of equal batch size."""
    if isinstance(state, AV):
        if state.video.dim() != 5 or state.audio.dim() != 3:
            raise ValueError(
                f"{name}: expected video [B, F, C, H, W] and audio [B, C, L], got "
                f"{tuple(state.video.shape)} and {tuple(state.audio.shape)}"
            )
        if state.video.shape[0] != state.audio.shape[0]:
            raise ValueError(
                f"{name}: video batch {state.video.shape[0]} != audio batch {state.audio.shape[0]}"
            )
    elif isinstance(state, Tensor):
        if state.dim() < 2:
            raise ValueError(
                f"{name}: expected a batched tensor [N, ...], got {tuple(state.shape)}"
            )
    else:
        raise ValueError(f"{name}: expected an AV pair or a tensor, got {type(state).__name__}")
    for t in leaves(state):
        if not torch.is_floating_point(t):
            raise ValueError(f"{name}: expected floating-point tensors, got {t.dtype}")
