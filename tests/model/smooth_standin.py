"""A stand-in denoiser with structure in time, for the windowed (long-clip) measurements.

``smooth_standin(video [B,F,C,H,W], audio [B,Ca,L], t [B]) -> (eps_v, eps_a)``: the exact
posterior-mean denoiser of a Gaussian process along time in each modality whose mean follows the
other modality locally (see the function). Self-contained (the linear schedule of the analytic
stand-ins in standins.py, SAMPLING.md section 10.1), so it does not depend on where those live.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_ACP = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), dim=0)


def _coefs(t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """``(sqrt(abar), sqrt(1 - abar))`` in float32, shaped ``[B, 1, ..., 1]`` like ``like``."""
    shape = (-1, *([1] * (like.dim() - 1)))
    abar = _ACP[t.long()].to(torch.float32).reshape(shape)
    return (torch.sqrt(abar.to(torch.float64)).to(torch.float32),  # correctly rounded
            torch.sqrt((1 - abar).to(torch.float64)).to(torch.float32))


def _gp_mean(r: Tensor, alpha: Tensor, sigma: Tensor, ell: float, var: float, dim: int
             ) -> Tensor:
    """Posterior mean of ``r0`` given ``r = alpha r0 + sigma eps`` for a stationary Gaussian
    process ``r0`` along ``dim`` (zero mean, variance ``var``, Gaussian correlation of length
    ``ell`` steps); computed on the mirror-extended signal (no wrap-around at the edges)."""
    n = r.shape[dim]
    ext = torch.cat([r, r.flip(dim)], dim=dim)
    f = torch.fft.rfftfreq(2 * n, dtype=torch.float64)
    lam = torch.exp(-2 * math.pi**2 * ell**2 * f**2)
    total = lam[0] + 2 * lam[1:-1].sum() + lam[-1]
    lam = (lam * var * 2 * n / total).to(r.dtype)
    shape = [1] * r.dim()
    shape[dim] = lam.shape[0]
    lam = lam.reshape(shape)
    gain = alpha * lam / (alpha**2 * lam + sigma**2)
    return torch.fft.irfft(torch.fft.rfft(ext, dim=dim) * gain, n=2 * n, dim=dim).narrow(dim, 0, n)


def smooth_standin(video: Tensor, audio: Tensor, t: Tensor, *, ell_frames: float = 1.5,
                   ell_samples: float = 24.0) -> tuple[Tensor, Tensor]:
    """A stand-in with structure in time, for the windowed (long-clip) measurements.

    Data: each video pixel and the audio are Gaussian processes along time (variance 0.25,
    Gaussian correlation of ``ell_frames`` frames / ``ell_samples`` samples) around a mean that
    follows the other modality locally: ``mu_a = 0.5 tanh(4 m_v(frame of the sample))`` and
    ``mu_v(f) = 0.5 tanh(4 m_a(samples of frame f))`` with ``m`` the per-frame mean of the
    noisy input (as the analytic ``joint_standin`` does). eps is the exact posterior mean's
    noise for that process given the window (mirror-extended at the window edges), so a window
    sees only itself, like the network. Audio length must be a multiple of the frame count.
    """
    b, f = video.shape[:2]
    spf = audio.shape[-1] // f
    m_v = video.mean(dim=(2, 3, 4))  # [B, F]
    m_a = audio.reshape(b, audio.shape[1], f, spf).mean(dim=(1, 3))  # [B, F]
    mu_a = (0.5 * torch.tanh(4 * m_v)).repeat_interleave(spf, dim=1).unsqueeze(1)
    mu_v = (0.5 * torch.tanh(4 * m_a)).reshape(b, f, 1, 1, 1)
    out = []
    for x, mu, ell, dim in ((video, mu_v, ell_frames, 1), (audio, mu_a, ell_samples, 2)):
        sa, sn = _coefs(t, x)
        x0 = mu + _gp_mean(x - sa * mu, sa, sn, ell, 0.25, dim)
        out.append((x - sa * x0) / sn)
    return out[0], out[1]
