"""Golden cases of tests/fixtures/golden/sampling.pt reproduced through the public samplers.

Tolerance 1e-5 absolute on sampler outputs (SAMPLING.md section 10.4: a 2e-7 relative
perturbation of x_T moves these outputs by <= 3e-6), predicted x0 included: the stand-ins take
their square roots correctly rounded like the golden ones, so eps agrees to the ulp even at
i = 999, where ``sqrt(1/abar - 1)`` = 157 would amplify a 1-ulp eps difference to 6e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.denoiser import joint_denoiser, sr_denoiser
from model.samplers import SamplerSpec, count_nfe, sample_joint, sample_sr
from model.samplers.ddpm import p_sample
from model.schedule import DiscreteSchedule
from model.state import AV
from tests.helpers.standins import joint_standin, sr_standin

TOL = 1e-5
# b2 call times: all 48 agree exactly but one (an accepted t near t_0 = 1e-3, a few ulps of
# 0.0075: measured 5.1e-9); the model-input integers agree exactly.
B2_T_TOL = 1e-8


@pytest.fixture(scope="module")
def golden(golden_dir: Path) -> dict:
    return torch.load(golden_dir / "sampling.pt", weights_only=True)


def _maxdiff(a: AV | torch.Tensor, b: AV | dict | torch.Tensor) -> float:
    if isinstance(a, AV):
        b = AV(**b) if isinstance(b, dict) else b
        return max(_maxdiff(x, y) for x, y in zip(a, b, strict=False))
    return float((a - b).abs().max())


class Recorder:
    """Records the timesteps the network saw."""

    def __init__(self, fn):
        self.fn, self.t = fn, []

    def __call__(self, *args, **kwargs):
        self.t.append(args[-1] if "low_res" not in kwargs else args[1])
        return self.fn(*args, **kwargs)


def test_schedule_tables_match_golden(golden: dict) -> None:
    s = DiscreteSchedule.linear()
    # the stored betas differ from numpy's linspace in the last ulp; the products agree exactly
    np.testing.assert_allclose(s.betas, golden["schedule"]["betas"].numpy(), rtol=1e-12, atol=0)
    assert np.array_equal(s.alphas_cumprod, golden["schedule"]["alphas_cumprod"].numpy())


def test_a_official_joint_dpm_solver(golden: dict) -> None:
    case = golden["cases"]["a_mm_dpm_singlestep_o3_20_logSNR"]
    net = count_nfe(Recorder(joint_standin))
    steps: list[AV] = []
    out = sample_joint(
        net, AV(**case["x_T"]), SamplerSpec(), callback=lambda i, n, x: steps.append(x)
    )
    assert net.forward == case["nfe"] == 20
    assert torch.equal(torch.stack(net.fn.t), case["eval_t_input"])  # truncation, not rounding
    assert len(steps) == len(case["orders"]) == 7
    for mine, ref in zip(steps, case["step_outputs"], strict=False):
        assert _maxdiff(mine, ref) <= TOL
    assert _maxdiff(out, case["out"]) <= TOL


@pytest.mark.parametrize(
    "key", ["c_mm_dpm_multistep_o2_10_time_uniform", "c2_mm_dpmpp_multistep_o2_10_time_uniform"]
)
def test_c_multistep(golden: dict, key: str) -> None:
    case = golden["cases"][key]
    name = "dpm_solver++" if case["settings"]["predict_x0"] else "dpm_solver"
    spec = SamplerSpec(
        name=name,
        steps=10,
        order=2,
        method="multistep",
        skip_type="time_uniform",
        official_compat=True,
    )
    net = count_nfe(Recorder(joint_standin))
    steps: list[AV] = []
    out = sample_joint(net, AV(**case["x_T"]), spec, callback=lambda i, n, x: steps.append(x))
    assert net.forward == 10
    assert torch.equal(torch.stack(net.fn.t), case["eval_t_input"])
    for mine, ref in zip(steps, case["step_outputs"], strict=False):
        assert _maxdiff(mine, ref) <= TOL
    assert _maxdiff(out, case["out"]) <= TOL


def test_c_audio_first_order_quirk_is_fixed_by_default(golden: dict) -> None:
    """Case c contains the official audio first-order defect: the default (fixed) path must
    differ (by ~3.3e-2 in audio) and agree with DPM-Solver++ case c2's ODE far better."""
    case = golden["cases"]["c_mm_dpm_multistep_o2_10_time_uniform"]
    spec = SamplerSpec(steps=10, order=2, method="multistep", skip_type="time_uniform")
    fixed = sample_joint(joint_standin, AV(**case["x_T"]), spec)
    ref = AV(**case["out"])
    assert float((fixed.audio - ref.audio).abs().max()) > 1e-2
    # the fixed noise-prediction solver approximates the same ODE as the data-prediction one
    pp = AV(**golden["cases"]["c2_mm_dpmpp_multistep_o2_10_time_uniform"]["out"])
    assert float((fixed.audio - pp.audio).abs().max()) < float((ref.audio - pp.audio).abs().max())


def test_b_official_adaptive_dpm_solver_pp(golden: dict) -> None:
    case = golden["cases"]["b_mm_dpmpp_adaptive_o2_threshold"]
    spec = SamplerSpec(name="dpm_solver++", order=2, method="adaptive", thresholding=True)
    net = count_nfe(Recorder(joint_standin))
    progress: list[tuple[int, int]] = []
    out = sample_joint(
        net, AV(**case["x_T"]), spec, callback=lambda i, n, x: progress.append((i, n))
    )
    assert net.forward == case["nfe"] == 26
    assert torch.equal(torch.stack(net.fn.t), case["eval_t_input"])
    assert _maxdiff(out, case["out"]) <= TOL
    assert [p[0] for p in progress] == list(range(1, len(progress) + 1))
    assert progress[-1][0] == progress[-1][1]


def test_b2_adaptive_tight_tolerances(golden: dict) -> None:
    """Non-official tight tolerances (atol 1e-3, rtol 1e-2). The first error estimate E ~ 2.5e-5
    is float32 rounding noise (the thresholded x0 is clamped to +-1), so the step-size controller
    turns any ulp in the stand-in or in the continuous-time scalars into different step sizes:
    this case pins the exact float32 operation order (correctly rounded sqrt/exp/log on the
    scalar path, see ``model.schedule.ieee_log``)."""
    from model.samplers.api import continuous_schedule
    from model.samplers.dpm_methods import adaptive
    from model.samplers.dpm_solver import Solver

    case = golden["cases"]["b2_mm_dpmpp_adaptive_o2_threshold_tight"]
    times: list[torch.Tensor] = []

    class TimedSolver(Solver):
        def model(self, x, t):  # type: ignore[override]
            times.append(t.clone())
            return super().model(x, t)

    net = count_nfe(Recorder(joint_standin))
    solver = TimedSolver(
        joint_denoiser(net), continuous_schedule(), predict_x0=True, thresholding=True
    )
    with torch.no_grad():
        out = adaptive(solver, AV(**case["x_T"]), atol=1e-3, rtol=1e-2)
    assert net.forward == case["nfe"] == 48  # 24 iterations, 7 rejected
    assert torch.equal(torch.stack(net.fn.t), case["eval_t_input"])
    mine = torch.stack(times)
    assert bool((mine == mine[:, :1]).all())  # one shared time per call
    assert float((mine[:, 0] - case["eval_t_continuous"]).abs().max()) <= B2_T_TOL
    assert _maxdiff(out, case["out"]) <= TOL


def test_d_sr_ddim25(golden: dict) -> None:
    case = golden["cases"]["d_sr_ddim25"]
    net = count_nfe(Recorder(sr_standin))
    out = sample_sr(net, case["x_T"], SamplerSpec(name="ddim", steps=25), low_res=case["low_res"])
    assert net.forward == 25
    assert torch.equal(torch.stack(net.fn.t), case["model_t_input"])  # 960, 920, ..., 0
    assert _maxdiff(out, case["out"]) <= TOL
    assert float(out.abs().max()) <= 1.0  # the last DDIM step returns the clipped x0


@pytest.mark.parametrize("compat", [True, False])
def test_g_sr_dpm_solver_multistep(golden: dict, compat: bool) -> None:
    """g: float16 alphas_cumprod (official multimodal_sample_sr) -> all-NaN output, reproduced
    with official_compat=True; g2: float32 table, which is our default."""
    case = golden["cases"][
        "g_sr_dpm_multistep_o2_50_fp16_acp" if compat else "g2_sr_dpm_multistep_o2_50_fp32_acp"
    ]
    spec = SamplerSpec(
        steps=50, order=2, method="multistep", skip_type="time_uniform", official_compat=compat
    )
    net = count_nfe(Recorder(sr_standin))
    states: list[torch.Tensor] = []
    out = sample_sr(
        net, case["x_T"], spec, low_res=case["low_res"], callback=lambda i, n, x: states.append(x)
    )
    assert net.forward == 50
    assert torch.equal(torch.stack(net.fn.t), case["eval_t_input"])  # 999, 979, ..., 19
    assert torch.equal(out.isnan(), case["out"].isnan())
    assert bool(out.isnan().all()) is compat
    assert float((out - case["out"]).nan_to_num(0.0).abs().max()) <= TOL
    assert _maxdiff(states[-2], case["x_before_last_step"]) <= TOL
    assert bool(states[-2].isfinite().all())


def test_e1_p_sample_fixed_large(golden: dict) -> None:
    sched = DiscreteSchedule.linear()
    den = joint_denoiser(joint_standin)
    for st in golden["cases"]["e1_mm_p_sample_fixed_large"]["steps"]:
        index = torch.full((2,), st["t"])
        sample, out = p_sample(den, sched, AV(**st["x"]), index, AV(**st["noise"]))
        assert _maxdiff(sample, st["sample"]) <= TOL
        assert _maxdiff(out.mean, st["mean"]) <= TOL
        assert _maxdiff(out.pred_x0, st["pred_xstart"]) <= TOL
        for mod in ("video", "audio"):
            lv = getattr(out.log_variance, mod)
            assert torch.equal(lv.reshape(2, -1)[:, 0], st["log_variance"][mod])


@pytest.mark.parametrize(
    "key,spacing",
    [("e2_sr_p_sample_learned_range", ""), ("e3_sr_p_sample_learned_range_ddim25", "ddim25")],
)
def test_e2_e3_p_sample_learned_range(golden: dict, key: str, spacing: str) -> None:
    sched = DiscreteSchedule.linear().respaced(spacing)
    for st in golden["cases"][key]["steps"]:
        net = Recorder(sr_standin)
        index = torch.full((2,), st["t_index"])
        sample, out = p_sample(sr_denoiser(net, st["low_res"]), sched, st["x"], index, st["noise"])
        assert torch.equal(net.t[0], st["model_t_input"])
        assert _maxdiff(sample, st["sample"]) <= TOL
        assert _maxdiff(out.mean, st["mean"]) <= TOL
        assert _maxdiff(out.log_variance, st["log_variance"]) <= TOL
        assert _maxdiff(out.pred_x0, st["pred_xstart"]) <= TOL


def test_h_ddpm_unconditional_1000(golden: dict) -> None:
    bank = golden["cases"]["_bank"]
    net = count_nfe(joint_standin)
    out = sample_joint(
        net,
        AV(**bank["x_T"]),
        SamplerSpec(name="ddpm", steps=1000),
        noise_fn=lambda k, like: AV(bank["noise_video"][k], bank["noise_audio"][k]),
    )
    assert net.forward == 1000
    assert _maxdiff(out, golden["cases"]["h_mm_ddpm_uncond_1000"]["out"]) <= TOL
