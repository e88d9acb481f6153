"""Network -> sampler adapters.

Samplers call a *denoiser*: ``denoiser(x, t_model, alpha, sigma) -> (eps, var_values)`` where
``x`` is a state (AV pair or tensor), ``t_model [B]`` the integer timestep the network sees,
``alpha``/``sigma [B]`` (float32) the signal and noise scales of ``x`` at that evaluation
(``x = alpha*x0 + sigma*eps``), ``eps`` a state of noise predictions and ``var_values`` the
learned-range variance channels in ``[-1, 1]`` (a state) or ``None``. The scales are used by
wrappers (the conditional samplers re-noise the condition with them, a v-prediction network's
output is converted with them); the network never sees them.

What the network predicts (``prediction``): ``"eps"`` (every official model) or ``"v"``
(``v = alpha*eps - sigma*x0``, the VP velocity). With ``x = alpha*x0 + sigma*eps`` and
``alpha^2 + sigma^2 = 1``: ``sigma*x + alpha*v = alpha*sigma*x0 + sigma^2*eps + alpha^2*eps -
alpha*sigma*x0 = eps``, so :func:`eps_from_v` is ``eps = sigma*x + alpha*v``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from torch import Tensor

from model.state import AV, State, bcast

Prediction = Literal["eps", "v"]


class Denoiser(Protocol):
    def __call__(
        self, x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
    ) -> tuple[State, State | None]: ...


def eps_from_v(x: Tensor, v: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """``eps = sigma*x + alpha*v`` for ``x``/``v`` of any rank and per-sample ``alpha``,
    ``sigma [B]`` (see module docstring)."""
    return bcast(sigma, x).to(x.dtype) * x + bcast(alpha, x).to(x.dtype) * v


def v_target(x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """The v-prediction training target ``v = alpha*eps - sigma*x0`` (``alpha, sigma [B]``)."""
    return bcast(alpha, x0) * eps - bcast(sigma, x0) * x0


def _check_prediction(prediction: str) -> None:
    if prediction not in ("eps", "v"):
        raise ValueError(f"prediction must be 'eps' or 'v' (the config's prediction field); "
                         f"got {prediction!r}")


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


def joint_denoiser(
    eps_fn: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
    prediction: Prediction = "eps",
) -> Denoiser:
    """Adapt ``eps_fn(video [B,F,C,H,W], audio [B,Ca,L], t [B]) -> (out_v, out_a)``.

    Outputs with doubled channels (``[B,F,2C,H,W]``, ``[B,2Ca,L]``) are split into the
    prediction and learned-range values. Outputs are cast to the input dtype (a half-precision
    head returns float16; the official samplers then mixed it with float32 coefficients).
    ``prediction="v"``: the network's outputs are v, returned as eps (:func:`eps_from_v`).
    """
    _check_prediction(prediction)

    def denoise(
        x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
    ) -> tuple[State, State | None]:
        assert isinstance(x, AV)
        ev, ea = eps_fn(x.video, x.audio, t_model)
        ev, vv = _split(ev.to(x.video.dtype), x.video.shape[2], 2)
        ea, va = _split(ea.to(x.audio.dtype), x.audio.shape[1], 1)
        if prediction == "v":
            ev = eps_from_v(x.video, ev, alpha, sigma)
            ea = eps_from_v(x.audio, ea, alpha, sigma)
        var = None if vv is None or va is None else AV(vv, va)
        return AV(ev, ea), var

    return denoise


def sr_denoiser(
    eps_fn: Callable[..., Tensor], low_res: Tensor, prediction: Prediction = "eps"
) -> Denoiser:
    """Adapt ``eps_fn(x [N,C,H,W], t [N], low_res=[N,C,h,w]) -> [N,C or 2C,H,W]`` (eps or v,
    plus learned-range values when doubled); ``prediction="v"`` converts as
    :func:`joint_denoiser` does."""
    _check_prediction(prediction)

    def denoise(
        x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
    ) -> tuple[State, State | None]:
        assert isinstance(x, Tensor)
        out = eps_fn(x, t_model, low_res=low_res).to(x.dtype)
        pred, var = _split(out, x.shape[1], 1)
        if prediction == "v":
            pred = eps_from_v(x, pred, alpha, sigma)
        return pred, var

    return denoise
