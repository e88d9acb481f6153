"""High-level sampler entry points (see model/samplers/__init__.py).

What the network sees: DDPM/DDIM pass ``timestep_map[k]`` (int64, so DDIM-25 feeds 960, 920,
..., 0); DPM-Solver passes ``int32(truncate((t - 1/N) * N))`` (0..999). Real networks that
want float timesteps should cast inside ``eps_fn``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from model.denoiser import Denoiser, Prediction, joint_denoiser, sr_denoiser
from model.prompted import PromptGuidance, prompt_denoiser
from model.samplers.common import Callback, NoiseFn
from model.samplers.ddim import ddim_sample
from model.samplers.ddpm import ddpm_sample
from model.samplers.dpm_methods import adaptive, multistep, singlestep
from model.samplers.dpm_solver import Solver
from model.samplers.spec import SamplerSpec
from model.schedule import TRAIN_STEPS, ContinuousSchedule, DiscreteSchedule
from model.state import AV, State, check_state

JointEps = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
SREps = Callable[..., Tensor]


def discrete_schedule(spec: SamplerSpec) -> DiscreteSchedule:
    """The respaced process of a ddim/ddpm spec (``ddimN`` stride rule for ddim, one section of
    N evenly spread steps for ddpm; 1000 steps = the full process). A ddim step count the
    stride rule cannot give exactly (1, or e.g. 95 of 1000: no integer stride keeps 95) falls
    back to N evenly spread steps, as ddpm; every count the official rule allows is unchanged."""
    base = DiscreteSchedule.linear(TRAIN_STEPS)
    if spec.steps == TRAIN_STEPS:
        return base
    if spec.name == "ddim":
        try:
            return base.respaced(f"ddim{spec.steps}")
        except ValueError:  # no integer stride keeps exactly spec.steps (space_timesteps)
            pass
    return base.respaced(str(spec.steps))


def continuous_schedule(acp_dtype: torch.dtype = torch.float32) -> ContinuousSchedule:
    acp = torch.tensor(DiscreteSchedule.linear(TRAIN_STEPS).alphas_cumprod, dtype=torch.float64)
    return ContinuousSchedule(acp.to(acp_dtype))


def start_coefficients(spec: SamplerSpec) -> tuple[float, float]:
    """``(alpha, sigma)`` at the first step of ``spec``'s solve: a conditional sampler starts
    from ``alpha * condition + sigma * noise`` on the given modality (DDIM: the discrete
    schedule's last entry; the DPM-Solvers: the continuous schedule at ``t_T``)."""
    if spec.name == "ddim":
        sched = discrete_schedule(spec)
        return (float(sched.sqrt_alphas_cumprod[-1]),
                float(sched.sqrt_one_minus_alphas_cumprod[-1]))
    ns = continuous_schedule()
    t_T = torch.tensor([ns.t_T])
    return float(ns.alpha(t_T)), float(ns.sigma(t_T))


def run_spec(
    denoiser: Denoiser,
    x_T: State,
    spec: SamplerSpec,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    noise_fn: NoiseFn | None = None,
    acp_dtype: torch.dtype = torch.float32,
) -> State:
    """Run the sampler ``spec`` names on a state (the one dispatch point)."""
    if spec.name == "ddpm":
        return ddpm_sample(denoiser, discrete_schedule(spec), x_T, generator=generator,
                           noise_fn=noise_fn, callback=callback)
    if spec.name == "ddim":
        return ddim_sample(denoiser, discrete_schedule(spec), x_T, eta=spec.eta,
                           resample=spec.resample, generator=generator, noise_fn=noise_fn,
                           callback=callback)
    solver = Solver(
        denoiser=denoiser,
        ns=continuous_schedule(acp_dtype),
        predict_x0=spec.name == "dpm_solver++",
        thresholding=spec.thresholding,
        clip_x0=spec.clip_x0,
        audio_quirk=spec.official_compat,
    )
    kw = dict(steps=spec.steps, order=spec.order, skip_type=spec.skip_type, callback=callback)
    if spec.method == "singlestep":
        return singlestep(solver, x_T, **kw)  # type: ignore[arg-type]
    if spec.method == "multistep":
        return multistep(solver, x_T, **kw)  # type: ignore[arg-type]
    if spec.order != 2:
        raise ValueError(f"adaptive DPM-Solver needs order=2, got {spec.order}")
    return adaptive(solver, x_T, expected_steps=spec.steps, callback=callback)


def sample_joint(
    eps_fn: JointEps,
    x_T: AV,
    spec: SamplerSpec,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    noise_fn: NoiseFn | None = None,
    prediction: Prediction = "eps",
    prompt: PromptGuidance | None = None,
) -> AV:
    """Unconditional joint sampling from ``x_T = AV(video [B,F,C,H,W], audio [B,C,L])``.

    ``eps_fn(video, audio, t [B]) -> (eps_video, eps_audio)`` (doubled channels = learned
    variance, split off). Official: ``SamplerSpec()`` (DPM-Solver, 20 steps, order 3,
    singlestep, logSNR; NFE 20). ``official_compat=True`` reproduces the audio first-order
    update defect of the official multimodal DPM-Solver (noise prediction only).
    ``prediction``: what ``eps_fn`` returns, ``"eps"`` or ``"v"`` (see model/denoiser.py).
    ``prompt``: steer both modalities toward a prompt (model/prompted.py; every sampler, one
    backward pass per network evaluation, counted by :func:`count_nfe` as ``backward``).
    """
    check_state(x_T, "x_T")
    denoiser = joint_denoiser(eps_fn, prediction)
    if prompt is not None:
        denoiser = prompt_denoiser(denoiser, prompt)
    with torch.no_grad():
        out = run_spec(denoiser, x_T, spec, generator=generator,
                       callback=callback, noise_fn=noise_fn)
    assert isinstance(out, AV)
    return out


def sample_sr(
    eps_fn: SREps,
    x_T: Tensor,
    spec: SamplerSpec,
    *,
    low_res: Tensor,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    noise_fn: NoiseFn | None = None,
    prediction: Prediction = "eps",
) -> Tensor:
    """Super-resolution of ``low_res [N,3,h,w]`` from ``x_T [N,3,H,W]``.

    ``eps_fn(x, t [N], low_res=...) -> [N,6,H,W]`` (eps + learned-range values). Official:
    ``SamplerSpec(name="ddim", steps=25)`` (NFE 25). With a DPM-Solver spec,
    ``official_compat=True`` uses the float16 alphas_cumprod table of the official
    multimodal_sample_sr script (alpha_bar_0 rounds to 1: the last update is NaN).
    """
    check_state(x_T, "x_T")
    if low_res.shape[0] != x_T.shape[0]:
        raise ValueError(
            f"low_res batch {low_res.shape[0]} != x_T batch {x_T.shape[0]} "
            "(one low-res frame per row)"
        )
    dtype = torch.float16 if spec.official_compat else torch.float32
    with torch.no_grad():
        out = run_spec(sr_denoiser(eps_fn, low_res, prediction), x_T, spec, generator=generator,
                       callback=callback, noise_fn=noise_fn, acp_dtype=dtype)
    assert isinstance(out, Tensor)
    return out


def sample_conditional(
    eps_fn: JointEps,
    x_T: AV,
    spec: SamplerSpec,
    *,
    condition: Tensor,
    direction: Literal["video-to-audio", "audio-to-video"],
    guidance: Literal["replacement", "gradient"] = "gradient",
    scale: float = 3.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    noise_fn: NoiseFn | None = None,
    loss_scale: float = 1.0,
    prediction: Prediction = "eps",
    prompt: PromptGuidance | None = None,
) -> AV:
    """Zero-shot video-to-audio / audio-to-video (see model/conditional.py).

    ``condition``: clean video ``[B,F,C,H,W]`` or audio ``[B,C,L]`` in [-1, 1], shaped like the
    condition modality of ``x_T``; ``x_T``'s condition modality is the fixed re-noising noise.
    ``spec.name == "ddpm"``: the official conditional loop (1000 steps = official; NFE 1000
    forward, plus 1000 backward with gradient guidance); ``loss_scale=2**20`` reproduces the
    official fp16 loss-scale quirk; ``spec.official_compat`` returns the condition modality as
    the official loop did (else the clean condition). ``ddim`` / ``dpm_solver(++)``: the fast
    conditional samplers (NFE = the sampler's, plus as many backward passes with gradient).
    The returned condition modality always equals ``condition`` except in the official-compat
    DDPM case. ``prompt``: also steer the generated modality toward a prompt (one backward
    pass per evaluation, shared with gradient guidance; see model/conditional.py).
    """
    # imported here: model.conditional builds on this package (avoids an import cycle)
    from model.conditional import conditional_denoiser, modalities, official_conditional_loop

    check_state(x_T, "x_T")
    c, _ = modalities(direction)
    if guidance not in ("replacement", "gradient"):
        raise ValueError(f"guidance {guidance!r} is unknown; expected 'replacement' or 'gradient'")
    z_c = getattr(x_T, c)
    if tuple(condition.shape) != tuple(z_c.shape):
        raise ValueError(
            f"condition has shape {tuple(condition.shape)}; expected {tuple(z_c.shape)} "
            f"(the {c} shape of x_T)"
        )
    condition = condition.to(z_c.dtype)
    denoiser = joint_denoiser(eps_fn, prediction)
    if spec.name == "ddpm":
        return official_conditional_loop(
            denoiser, discrete_schedule(spec), x_T, condition=condition, direction=direction,
            guidance=guidance, scale=scale, loss_scale=loss_scale, generator=generator,
            noise_fn=noise_fn, callback=callback, official_output=spec.official_compat,
            prompt=prompt,
        )
    wrapped = conditional_denoiser(denoiser, condition=condition, z_c=z_c, direction=direction,
                                   guidance=guidance, scale=scale, prompt=prompt)
    a0, s0 = start_coefficients(spec)
    start = x_T.replace(c, a0 * condition + s0 * z_c)
    with torch.no_grad():
        out = run_spec(
            wrapped, start, spec, generator=generator, callback=callback, noise_fn=noise_fn
        )
    assert isinstance(out, AV)
    return out.replace(c, condition)


def shared_clip_noise(
    batch: int,
    frames: int,
    shape: tuple[int, int, int],
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One noise image per clip shared by its frames (the official SR x_T).

    Returns ``[batch*frames, *shape]``; row ``b*frames + f`` holds noise image ``b``.
    """
    if batch < 1 or frames < 1:
        raise ValueError(f"batch and frames must be >= 1, got {batch} and {frames}")
    noise = torch.randn((batch, *shape), generator=generator)
    return noise.repeat_interleave(frames, dim=0)
