"""Network -> sampler adapters.

Samplers call a *denoiser*: ``denoiser(x, t_model, alpha, sigma) -> (eps, var_values)`` where
``x`` is a state (AV pair or tensor), ``t_model [B]`` the integer timestep the network sees,
``alpha``/``sigma [B]`` (float32) the signal and noise scales of ``x`` at that evaluation
(``x = alpha*x0 + sigma*eps``), ``eps`` a state of noise predictions and ``var_values`` the
learned-range variance channels in ``[-1, 1]`` (a state) or ``None``. The scales are only used by
wrappers (the conditional samplers re-noise the condition with them); the network never sees them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import Tensor

from model.state import AV, State


class Denoiser(Protocol):
    def __call__(
        self, x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
    ) -> tuple[State, State | None]: ...


def _split(out: Tensor, channels: int, dim: int) -> tuple[Tensor, Tensor | None]:
    """Split learned-sigma output (2C channels along ``dim``) into eps and variance values."""
    if out.shape[dim] == channels:
        return out, None
    if out.shape[dim] == 2 * channels:
        eps, var = out.split(channels, dim=dim)
        return eps, var
    raise ValueError(
        f"network output has {out.shape[dim]} channels on dim {dim}; expected {channels} "
        f"(eps) or {2 * channels} (eps + learned variance)"
    )


def joint_denoiser(eps_fn: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]) -> Denoiser:
    """Adapt ``eps_fn(video [B,F,C,H,W], audio [B,Ca,L], t [B]) -> (eps_v, eps_a)``.

    Outputs with doubled channels (``[B,F,2C,H,W]``, ``[B,2Ca,L]``) are split into eps and
    learned-range values. Outputs are cast to the input dtype (a half-precision head returns
    float16; the official samplers then mixed it with float32 coefficients).
    """

    def denoise(
        x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
    ) -> tuple[State, State | None]:
        assert isinstance(x, AV)
        ev, ea = eps_fn(x.video, x.audio, t_model)
        ev, vv = _split(ev.to(x.video.dtype), x.video.shape[2], 2)
        ea, va = _split(ea.to(x.audio.dtype), x.audio.shape[1], 1)
        var = None if vv is None or va is None else AV(vv, va)
        return AV(ev, ea), var

    return denoise


def sr_denoiser(eps_fn: Callable[..., Tensor], low_res: Tensor) -> Denoiser:
    """Adapt ``eps_fn(x [N,C,H,W], t [N], low_res=[N,C,h,w]) -> [N,2C,H,W]`` (learned range)."""

    def denoise(
        x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
    ) -> tuple[State, State | None]:
        assert isinstance(x, Tensor)
        out = eps_fn(x, t_model, low_res=low_res).to(x.dtype)
        return _split(out, x.shape[1], 1)

    return denoise
