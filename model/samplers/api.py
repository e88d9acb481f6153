"""High-level sampler entry points (see model/samplers/__init__.py)."""

from __future__ import annotations

from typing import Callable, Literal, Optional

import torch
from torch import Tensor

from model.samplers.common import Callback, NoiseFn
from model.samplers.spec import SamplerSpec
from model.state import AV

JointEps = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
SREps = Callable[..., Tensor]


def sample_joint(
    eps_fn: JointEps,
    x_T: AV,
    spec: SamplerSpec,
    *,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    noise_fn: Optional[NoiseFn] = None,
) -> AV:
    raise NotImplementedError


def sample_sr(
    eps_fn: SREps,
    x_T: Tensor,
    spec: SamplerSpec,
    *,
    low_res: Tensor,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    noise_fn: Optional[NoiseFn] = None,
) -> Tensor:
    raise NotImplementedError


def sample_conditional(
    eps_fn: JointEps,
    x_T: AV,
    spec: SamplerSpec,
    *,
    condition: Tensor,
    direction: Literal["video-to-audio", "audio-to-video"],
    guidance: Literal["replacement", "gradient"] = "gradient",
    scale: float = 3.0,
    generator: Optional[torch.Generator] = None,
    callback: Optional[Callback] = None,
    noise_fn: Optional[NoiseFn] = None,
    loss_scale: float = 1.0,
) -> AV:
    raise NotImplementedError


def shared_clip_noise(
    batch: int, frames: int, shape: tuple[int, int, int], *, generator: Optional[torch.Generator] = None
) -> Tensor:
    """One noise image per clip shared by its frames: ``[batch*frames, *shape]``, row ``b*F+f``
    holds noise ``b`` (the official SR x_T)."""
    noise = torch.randn((batch, *shape), generator=generator)
    return noise.repeat_interleave(frames, dim=0)
