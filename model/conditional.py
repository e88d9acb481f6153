"""Zero-shot conditional generation: video-to-audio and audio-to-video.

Two families (``c`` = condition modality, ``g`` = generated modality):

* :func:`official_conditional_loop` -- the official ``conditional_p_sample_loop`` (DDPM, 1000
  steps, or a respaced process): every step re-noises the condition with the *fixed* condition
  x_T ``z_c`` (``q_sample(cond, i, z_c)``), then

  - ``replacement``: an ancestral step of both modalities;
  - ``gradient``: an ancestral step under autograd, the loss
    ``mean_b mean((s_c - q_sample(cond, i-1, z_c))^2) * loss_scale`` differentiated w.r.t. the
    step's input target, and ``x_g <- s_g - 1[i != 0] * grad * scale * sqrt(abar_i)``.
    ``loss_scale = 2**20`` reproduces the official ``use_fp16=True`` quirk (its fp16 loss scale
    was never divided out, so the effective guidance weight is ``3 * 2**20``); our default is 1.

* :func:`conditional_denoiser` -- the fast samplers (DDIM, DPM-Solver(++)) run unchanged on a
  wrapped denoiser: at every network evaluation the condition is re-noised to that evaluation's
  scales, ``x_c = alpha*cond + sigma*z_c``, and the denoiser reports ``eps_c = z_c`` so the
  solver's condition trajectory is exactly the re-noised condition. Guidance ``gradient``
  (reconstruction guidance, our definition; the official code has no fast conditional sampler):
  ``L_b = mean((x0_c(x) - cond)^2)`` with ``x0_c = (x_c - sigma*eps_c)/alpha`` the network's
  clean-condition prediction, and the target's noise prediction becomes
  ``eps_g + scale * sigma * dL_b/dx_g`` (the classifier-guidance form for a Gaussian
  likelihood of the condition given ``x_t``). One backward pass per network evaluation.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from model.denoiser import Denoiser
from model.prompted import (
    Objective,
    PromptGuidance,
    guided_eval,
    prompt_denoiser,
    prompt_objective,
)
from model.samplers.common import Callback, NoiseFn, generator_noise, notify
from model.samplers.ddpm import gather, index_tensor, p_sample
from model.schedule import DiscreteSchedule
from model.state import AV, State, bcast

Direction = Literal["video-to-audio", "audio-to-video"]
Guidance = Literal["replacement", "gradient"]


def modalities(direction: Direction) -> tuple[str, str]:
    """``(condition, generated)`` modality names for a direction."""
    if direction == "video-to-audio":
        return "video", "audio"
    if direction == "audio-to-video":
        return "audio", "video"
    raise ValueError(
        f"direction {direction!r} is unknown; expected 'video-to-audio' or 'audio-to-video'"
    )


def _batch_mse(a: Tensor, b: Tensor) -> Tensor:
    return ((a - b) ** 2).mean(dim=tuple(range(1, a.dim())))


def official_conditional_loop(
    denoiser: Denoiser,
    sched: DiscreteSchedule,
    x_T: AV,
    *,
    condition: Tensor,
    direction: Direction,
    guidance: Guidance,
    scale: float,
    loss_scale: float = 1.0,
    generator: torch.Generator | None = None,
    noise_fn: NoiseFn | None = None,
    callback: Callback | None = None,
    official_output: bool = False,
    start: AV | None = None,
    first_step: int = 0,
    stop_step: int | None = None,
    prompt: PromptGuidance | None = None,
) -> AV:
    """The official conditional DDPM loop (see module docstring).

    :param prompt: also steer the generated modality toward a prompt (:mod:`model.prompted`).
        Replacement guidance: the prompt gradient is part of eps (the loop runs on
        :func:`~model.prompted.prompt_denoiser`). Gradient guidance (one backward pass per
        step): the loop's objective gains ``-w * k_i * sum_b score_b(pred_x0)`` with ``k_i =
        posterior_mean_coef1_i * (1 - abar_i) / abar_i``, which makes its step on ``x_g`` equal,
        to first order, to the mean shift of the eps form (``eps - w * sigma * grad``).

    :param official_output: return the state exactly as the official loop did (replacement: the
        model's reconstruction of the condition; gradient: the re-noised condition at i = 0).
        Otherwise (default) the returned condition modality is ``condition`` itself; the generated
        modality is identical either way.
    :param start, first_step, stop_step: run only loop steps ``first_step .. stop_step - 1``
        (step ``s`` is diffusion index ``K-1-s``) from state ``start`` (default ``x_T``), e.g. to
        resume a run or teacher-force single steps; ``x_T`` still supplies ``z_c``.
    """
    c, g = modalities(direction)
    z_c = getattr(x_T, c)
    draw = noise_fn if noise_fn is not None else generator_noise(generator)
    total = sched.num_steps
    x = x_T if start is None else start
    stop = total if stop_step is None else stop_step
    if not 0 <= first_step <= stop <= total:
        raise ValueError(f"need 0 <= first_step <= stop_step <= {total}, got {first_step}, {stop}")

    def q_sample(index: Tensor) -> Tensor:
        return (
            gather(sched, "sqrt_alphas_cumprod", index, condition) * condition
            + gather(sched, "sqrt_one_minus_alphas_cumprod", index, condition) * z_c
        )

    prompted = prompt is not None and prompt.scale != 0
    for step in range(first_step, stop):
        index = index_tensor(total - 1 - step, x)
        x_c = q_sample(index)
        x = x.replace(c, x_c)
        noise = draw(step, x)
        if guidance == "replacement":
            step_denoiser = denoiser
            if prompted:
                assert prompt is not None
                step_denoiser = prompt_denoiser(denoiser, prompt, guided=(g,),
                                                clean={c: condition})
            with torch.no_grad():
                s, _ = p_sample(step_denoiser, sched, x, index, noise)
            x = s  # type: ignore[assignment]
        else:
            prev_c = q_sample(index - 1)  # index -1 wraps to the last entry (masked below)
            leaf = getattr(x, g).detach().requires_grad_(True)
            with torch.enable_grad():
                s, out = p_sample(denoiser, sched, x.replace(g, leaf), index, noise)
                objective = _batch_mse(getattr(s, c), prev_c).mean() * loss_scale
                if prompted:
                    assert prompt is not None and isinstance(out.pred_x0, AV)
                    x0 = out.pred_x0.replace(c, condition)
                    k = _prompt_step_weight(sched, index)
                    objective = objective * scale - (prompt.scale * k) * prompt.score(x0).sum()
                (grad,) = torch.autograd.grad(objective, leaf)
            s_g = getattr(s, g).detach()
            nonzero = bcast((index != 0).float(), s_g)
            sa = gather(sched, "sqrt_alphas_cumprod", index, s_g)
            if prompted:  # the guidance scale is inside the objective
                x = x.replace(g, s_g - nonzero * grad * sa)
            else:
                x = x.replace(g, s_g - nonzero * grad * scale * sa)
        notify(callback, step + 1, total, x)
    return x if official_output else x.replace(c, condition)


def _prompt_step_weight(sched: DiscreteSchedule, index: Tensor) -> float:
    """``k_i = coef1_i * (1 - abar_i) / abar_i`` at the loop's (shared) index, so that
    ``sqrt(abar_i) * w * k_i * grad`` is the eps form's mean shift ``coef1 * w * sigma^2 /
    alpha * grad`` (``sigma^2 = 1 - abar``, ``alpha = sqrt(abar)``)."""
    i = int(index[0])
    abar = float(sched.alphas_cumprod[i])
    return float(sched.posterior_mean_coef1[i]) * (1 - abar) / abar


def conditional_denoiser(
    denoiser: Denoiser,
    *,
    condition: Tensor,
    z_c: Tensor,
    direction: Direction,
    guidance: Guidance,
    scale: float,
    prompt: PromptGuidance | None = None,
) -> Denoiser:
    """Wrap ``denoiser`` for the fast conditional samplers (see module docstring).

    ``prompt``: also steer the generated modality toward a prompt (:mod:`model.prompted`); the
    condition is scored as given (clean). With reconstruction gradient guidance the one backward
    pass descends ``scale * sum_b L_b - w * sum_b score_b`` (``w = prompt.scale``), so
    ``eps_g <- eps_g + sigma * d/dx_g`` of it; with replacement guidance (or ``scale == 0``)
    ``eps_g <- eps_g - w * sigma * d(sum_b score_b)/dx_g``."""
    c, g = modalities(direction)
    recon = guidance == "gradient" and scale != 0
    prompted = prompt is not None and prompt.scale != 0

    def wrapped(
        x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
    ) -> tuple[State, State | None]:
        assert isinstance(x, AV)
        a, s = bcast(alpha, condition), bcast(sigma, condition)
        x_c = a * condition + s * z_c
        x = x.replace(c, x_c)
        if not recon and not prompted:
            with torch.no_grad():
                eps, var = denoiser(x, t_model, alpha, sigma)
        else:
            def reconstruction(x_in: AV, eps_in: AV) -> Tensor:
                x0_c = (x_c - s * getattr(eps_in, c)) / a
                return _batch_mse(x0_c, condition).sum()

            objective: Objective
            if not prompted:  # the reconstruction guidance alone (bit-identical to before)
                objective, outer = reconstruction, scale
            else:
                assert prompt is not None
                score = prompt_objective(prompt, alpha, sigma, clean={c: condition})
                if recon:
                    w = prompt.scale

                    def combined(x_in: AV, eps_in: AV) -> Tensor:
                        return scale * reconstruction(x_in, eps_in) + w * score(x_in, eps_in)

                    objective, outer = combined, 1.0
                else:
                    objective, outer = score, prompt.scale
            eps, var = guided_eval(denoiser, x, t_model, alpha, sigma, guided=(g,),
                                   objective=objective, outer=outer)
        assert isinstance(eps, AV)
        return eps.replace(c, z_c), var

    return wrapped
