"""v-prediction: the denoiser wrappers turn v into eps (eps = sigma*x_t + alpha*v)."""

from __future__ import annotations

import pytest
import torch

from model.denoiser import eps_from_v, joint_denoiser, sr_denoiser, v_target
from model.schedule import DiscreteSchedule
from model.state import AV


def _scales(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sched = DiscreteSchedule.linear()
    return (sched.gather("sqrt_alphas_cumprod", t),
            sched.gather("sqrt_one_minus_alphas_cumprod", t))


def test_conversion_recovers_eps_on_the_linear_schedule() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 10, 250, 500, 999])
    alpha, sigma = _scales(t)
    x0 = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    a, s = alpha.double().view(-1, 1, 1, 1), sigma.double().view(-1, 1, 1, 1)
    x_t = a * x0 + s * eps  # q(x_t | x0) of model/schedule.py
    v = a * eps - s * x0  # the direct computation of the target
    assert torch.allclose(v_target(x0, eps, alpha.double(), sigma.double()), v)
    assert torch.allclose(eps_from_v(x_t, v, alpha.double(), sigma.double()), eps, atol=1e-6)
    x0_back = a * x_t - s * v  # and x0 = alpha*x_t - sigma*v
    assert torch.allclose(x0_back, x0, atol=1e-6)


def test_joint_and_sr_wrappers_convert_only_for_v() -> None:
    g = torch.Generator().manual_seed(1)
    x = AV(torch.randn(2, 3, 3, 4, 4, generator=g), torch.randn(2, 1, 64, generator=g))
    out = AV(torch.randn(2, 3, 3, 4, 4, generator=g), torch.randn(2, 1, 64, generator=g))
    alpha, sigma = _scales(torch.tensor([100, 900]))
    t = torch.tensor([100, 900])

    def net(video: torch.Tensor, audio: torch.Tensor, tt: torch.Tensor):
        return out.video, out.audio

    eps, var = joint_denoiser(net, "eps")(x, t, alpha, sigma)
    assert var is None and torch.equal(eps.video, out.video)
    eps, _ = joint_denoiser(net, "v")(x, t, alpha, sigma)
    assert torch.allclose(eps.video, sigma.view(-1, 1, 1, 1, 1) * x.video
                          + alpha.view(-1, 1, 1, 1, 1) * out.video)
    assert torch.allclose(eps.audio, sigma.view(-1, 1, 1) * x.audio
                          + alpha.view(-1, 1, 1) * out.audio)
    xs = torch.randn(2, 3, 8, 8, generator=g)
    v6 = torch.randn(2, 6, 8, 8, generator=g)  # learned-range channels pass through

    def sr_net(xx: torch.Tensor, tt: torch.Tensor, low_res: torch.Tensor) -> torch.Tensor:
        return v6

    e, var = sr_denoiser(sr_net, torch.zeros(2, 3, 4, 4), "v")(xs, t, alpha, sigma)
    assert torch.allclose(e, sigma.view(-1, 1, 1, 1) * xs + alpha.view(-1, 1, 1, 1) * v6[:, :3])
    assert var is not None and torch.equal(var, v6[:, 3:])


def test_unknown_prediction_is_rejected() -> None:
    with pytest.raises(ValueError, match="'eps' or 'v'"):
        joint_denoiser(lambda v, a, t: (v, a), "x0")  # type: ignore[arg-type]
