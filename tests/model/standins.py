"""Analytic stand-in denoisers of SAMPLING.md section 10.1 (the formulas stored in the golden file).

``joint_standin(video [B,F,C,H,W], audio [B,Ca,L], t [B]) -> (eps_v, eps_a)``: the exact
posterior-mean denoiser for data ~ N(mu, 0.25 I) with ``mu_v = 0.5 tanh(4 mean(audio))`` and
``mu_a = 0.5 tanh(4 mean(video))``, plus a small nonlinear term.
``sr_standin(x [N,3,H,W], t [N], low_res=[N,3,h,w]) -> [N,6,H,W]`` (learned range).
"""

from __future__ import annotations

import torch
from torch import Tensor

_ACP = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), dim=0)


def _sqrt(x: Tensor) -> Tensor:
    """IEEE (correctly rounded) float32 square root: taken in float64, rounded once to float32
    (exact for sqrt). The float32 ``torch.sqrt`` kernel of some CPU builds is off by 1 ulp for
    ~17% of inputs, and the golden stand-in used the correctly rounded value (at i = 999 that
    ulp of ``sn`` moved predicted x0 by 6e-5)."""
    return torch.sqrt(x.to(torch.float64)).to(x.dtype)


def _coefs(t: Tensor, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(sa, sn, D)`` in float32, shaped ``[B, 1, ..., 1]`` like ``like``."""
    shape = (-1, *([1] * (like.dim() - 1)))
    abar = _ACP[t.long()].to(torch.float32).reshape(shape)
    return _sqrt(abar), _sqrt(1 - abar), 1 - 0.75 * abar


def _batch_mean(x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(1, x.dim())))


def joint_standin(video: Tensor, audio: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    mu_v = 0.5 * torch.tanh(4 * _batch_mean(audio))
    mu_a = 0.5 * torch.tanh(4 * _batch_mean(video))
    out = []
    for x, mu in ((video, mu_v), (audio, mu_a)):
        sa, sn, d = _coefs(t, x)
        mu = mu.reshape(-1, *([1] * (x.dim() - 1)))
        out.append(sn * (x - sa * mu) / d + 0.1 * sa * sn * torch.tanh(x))
    return out[0], out[1]


def sr_standin(x: Tensor, t: Tensor, *, low_res: Tensor) -> Tensor:
    s = x.shape[-1] // low_res.shape[-1]
    up = low_res.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)
    sa, sn, d = _coefs(t, x)
    eps = sn * (x - sa * up) / d + 0.1 * sa * sn * torch.tanh(x)
    return torch.cat([eps, torch.tanh(0.3 * x - 0.2 * up)], dim=1)
