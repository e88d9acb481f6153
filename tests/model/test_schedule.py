"""Discrete tables, respacing rules and the continuous-time view (SAMPLING.md sections 2,
6.1-6.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.samplers.api import continuous_schedule
from model.samplers.dpm_methods import singlestep_orders, time_grid
from model.schedule import DiscreteSchedule, linear_betas, space_timesteps


def test_linear_tables() -> None:
    s = DiscreteSchedule.linear()
    assert s.betas.dtype == np.float64 and s.betas[0] == 1e-4 and s.betas[-1] == 0.02
    assert s.alphas_cumprod[0] == pytest.approx(0.9999, abs=1e-15)
    assert s.alphas_cumprod[-1] == pytest.approx(4.0358e-5, rel=1e-4)
    assert s.posterior_variance[0] == 0.0
    assert s.posterior_log_variance_clipped[0] == s.posterior_log_variance_clipped[1]
    assert s.fixed_large_log_variance[0] == np.log(s.posterior_variance[1])
    assert np.array_equal(s.fixed_large_log_variance[1:], np.log(s.betas[1:]))
    assert (
        s.posterior_mean_coef1[0] == pytest.approx(1.0, abs=1e-12)
        and s.posterior_mean_coef2[0] == 0.0
    )
    with pytest.raises(ValueError):
        s.betas[0] = 1.0  # tables are read-only
    assert np.allclose(linear_betas(250), np.linspace(4e-4, 0.08, 250))


def test_gather_casts_after_indexing_and_wraps() -> None:
    s = DiscreteSchedule.linear()
    idx = torch.tensor([999, 0, -1])
    got = s.gather("alphas_cumprod", idx)
    assert got.dtype == torch.float32
    assert torch.equal(got, torch.tensor(s.alphas_cumprod[[999, 0, -1]]).float())


def test_ddim_respacing() -> None:
    assert space_timesteps(1000, "ddim25") == list(range(0, 1000, 40))  # largest kept is 960
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(1000, "ddim100") == list(range(0, 1000, 10))
    with pytest.raises(ValueError, match="integer stride"):
        space_timesteps(1000, "ddim999")


def test_section_count_respacing() -> None:
    assert space_timesteps(1000, "") == list(range(1000))
    assert space_timesteps(1000, "10") == [round(j * 999 / 9) for j in range(10)]
    # 100 steps in 3 sections of 34, 33, 33; 1 step keeps the section start
    assert space_timesteps(100, "2,1,3") == [0, 33, 34, 67, 83, 99]
    assert space_timesteps(100, [2, 1, 3]) == space_timesteps(100, "2,1,3")
    with pytest.raises(ValueError, match="cannot keep"):
        space_timesteps(10, "20")


def test_respaced_process() -> None:
    base = DiscreteSchedule.linear()
    r = base.respaced("ddim25")
    assert r.num_steps == 25 and list(r.timestep_map) == list(range(0, 1000, 40))
    assert np.allclose(r.alphas_cumprod, base.alphas_cumprod[r.timestep_map], rtol=1e-12, atol=0)
    assert torch.equal(r.model_timesteps(torch.tensor([24, 0])), torch.tensor([960, 0]))


def test_continuous_schedule_endpoints() -> None:
    ns = continuous_schedule()
    lam = ns.lam(torch.tensor([1.0, 1e-3]))
    assert lam[0].item() == pytest.approx(-5.0588, abs=1e-4)
    assert lam[1].item() == pytest.approx(4.6050, abs=1e-4)
    assert ns.sigma(torch.tensor([1e-3])).item() == pytest.approx(0.01, rel=1e-3)
    t = torch.linspace(1.0, 1e-3, 50)
    assert torch.allclose(ns.inverse_lambda(ns.lam(t)), t, atol=1e-5)
    # truncation, not rounding: 0.9509851 -> 949.985 -> 949
    assert ns.model_time(torch.tensor([0.9509851, 1.0, 1e-3])).tolist() == [949, 999, 0]
    assert ns.model_time(torch.tensor([1.0])).dtype == torch.int32


def test_float16_table_defect() -> None:
    """The official SR script's float16 alphas_cumprod: abar_0 rounds to 1 -> sigma(t_0) = 0."""
    ns = continuous_schedule(torch.float16)
    assert ns.sigma(torch.tensor([1e-3])).item() == 0.0
    assert torch.isinf(ns.lam(torch.tensor([1e-3]))).all()


def test_time_grids_and_orders() -> None:
    ns = continuous_schedule()
    uni = time_grid(ns, "time_uniform", 10)
    assert ns.model_time(uni[:-1]).tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    quad = time_grid(ns, "time_quadratic", 10)
    assert quad[0].item() == pytest.approx(1.0) and quad[-1].item() == pytest.approx(1e-3, rel=1e-4)
    lam = ns.lam(time_grid(ns, "logSNR", 20))
    assert torch.allclose(lam.diff(), lam.diff().mean().expand(20), atol=1e-4)
    assert singlestep_orders(20, 3) == [3] * 6 + [2]
    assert singlestep_orders(21, 3) == [3] * 6 + [2, 1]
    assert singlestep_orders(22, 3) == [3] * 7 + [1]
    assert singlestep_orders(5, 2) == [2, 2, 1]
    with pytest.raises(ValueError, match="skip_type"):
        time_grid(ns, "bogus", 10)  # type: ignore[arg-type]


def test_ddim_sampler_schedule_keeps_the_stride_rule_and_spreads_counts_it_cannot_give() -> None:
    """The DDIM sampler's process: the official ``ddimN`` stride rule wherever it gives exactly N
    steps (25 -> stride 40), else N evenly spread steps (1 and 95 have no integer stride)."""
    from model.samplers import SamplerSpec
    from model.samplers.api import discrete_schedule

    assert discrete_schedule(SamplerSpec(name="ddim", steps=25)).timestep_map.tolist() == \
        list(range(0, 1000, 40))
    for steps in (1, 95):
        with pytest.raises(ValueError, match="integer stride"):
            space_timesteps(1000, f"ddim{steps}")
        kept = discrete_schedule(SamplerSpec(name="ddim", steps=steps)).timestep_map.tolist()
        assert kept == space_timesteps(1000, str(steps)) and len(kept) == steps
