"""``SamplerSpec.clip_x0``: DPM-Solver++ with its data prediction clipped to [-1, 1] (DDIM's
correction), and the default (off) path left exactly as it was."""

from __future__ import annotations

import pytest
import torch

from model.samplers import SamplerSpec, count_nfe, sample_sr
from model.samplers.api import continuous_schedule
from model.samplers.dpm_solver import Solver
from tests.helpers.standins import sr_standin

CLIPPED = SamplerSpec(name="dpm_solver++", steps=10, order=3, method="multistep", clip_x0=True)


def _eps_far(x: torch.Tensor, t: torch.Tensor, *, low_res: torch.Tensor) -> torch.Tensor:
    """An eps-network whose implied x0 lies far outside [-1, 1] (like an untrained one)."""
    return torch.cat([-3.0 * torch.ones_like(x), torch.zeros_like(x)], dim=1)


def _solver(clip: bool, eps_fn, low: torch.Tensor) -> Solver:
    from model.denoiser import sr_denoiser

    return Solver(denoiser=sr_denoiser(eps_fn, low), ns=continuous_schedule(), predict_x0=True,
                  clip_x0=clip)


def test_clip_bounds_every_data_prediction() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g) * 5
    low = torch.zeros(2, 3, 4, 4)
    seen: list[float] = []
    for t in (0.9, 0.5, 0.01):
        tt = torch.full((2,), t)
        raw = _solver(False, _eps_far, low).model(x, tt)
        clipped = _solver(True, _eps_far, low).model(x, tt)
        assert float(raw.abs().max()) > 1.5  # the test network does predict out of range
        assert float(clipped.abs().max()) <= 1.0
        assert torch.equal(clipped, raw.clamp(-1, 1))
        seen.append(float(clipped.abs().max()))
    assert max(seen) == 1.0


def test_clipped_sampler_stays_in_range_and_unclipped_does_not() -> None:
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(2, 3, 8, 8, generator=g)
    low = torch.zeros(2, 3, 4, 4)
    net = count_nfe(_eps_far)
    out = sample_sr(net, x_T, CLIPPED, low_res=low)
    assert net.forward == 10
    # the last update stops at t_0 = 1/N (sigma ~ 0.01) on a convex mix of clipped predictions
    assert float(out.abs().max()) <= 1.05, float(out.abs().max())
    free = sample_sr(_eps_far, x_T, SamplerSpec(name="dpm_solver++", steps=10, order=3,
                                                method="multistep"), low_res=low)
    assert float(free.abs().max()) > 10.0


def test_clip_is_identity_when_predictions_are_in_range() -> None:
    """The stand-in is an exact posterior mean: with a zero low-res image and a small x_T (the
    ODE maps it to x0 of about half its size) its x0 predictions stay inside [-1, 1] along the
    whole path, so clip on and off give the same bits; with a low-res image spanning [-2, 2]
    they leave the range and the clipped run differs."""
    g = torch.Generator().manual_seed(2)
    x_T = 0.3 * torch.randn(2, 3, 8, 8, generator=g)
    low = torch.zeros(2, 3, 4, 4)
    off = SamplerSpec(name="dpm_solver++", steps=10, order=3, method="multistep")
    assert torch.equal(sample_sr(sr_standin, x_T, CLIPPED, low_res=low),
                       sample_sr(sr_standin, x_T, off, low_res=low))
    wide = torch.rand(2, 3, 4, 4, generator=g) * 4 - 2  # stand-in x0 ~ up-sampled low-res
    assert not torch.equal(sample_sr(sr_standin, x_T, CLIPPED, low_res=wide),
                           sample_sr(sr_standin, x_T, off, low_res=wide))


def test_clip_off_is_the_default_path() -> None:
    """clip_x0=False (the default) computes exactly the unclipped data prediction."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 8, generator=g) * 5
    low = torch.zeros(2, 3, 4, 4)
    tt = torch.full((2,), 0.3)
    solver = _solver(False, _eps_far, low)
    _, alpha, sigma, _ = solver.coefs(tt)
    expect = (x - sigma.reshape(-1, 1, 1, 1) * -3.0) / alpha.reshape(-1, 1, 1, 1)
    assert torch.equal(solver.model(x, tt), expect)
    assert SamplerSpec().clip_x0 is False


def test_clip_validation() -> None:
    with pytest.raises(ValueError, match="clip_x0 needs name='dpm_solver\\+\\+'"):
        SamplerSpec(name="dpm_solver", clip_x0=True)
    with pytest.raises(ValueError, match="ddim/ddpm always clip"):
        SamplerSpec(name="ddim", clip_x0=True)
    with pytest.raises(ValueError, match="set only one"):
        SamplerSpec(name="dpm_solver++", clip_x0=True, thresholding=True)
