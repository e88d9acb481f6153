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
) -> AV:
    """The official conditional DDPM loop (see module docstring).

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

    for step in range(first_step, stop):
        index = index_tensor(total - 1 - step, x)
        x_c = q_sample(index)
        x = x.replace(c, x_c)
        noise = draw(step, x)
        if guidance == "replacement":
            with torch.no_grad():
                s, _ = p_sample(denoiser, sched, x, index, noise)
            x = s  # type: ignore[assignment]
        else:
            prev_c = q_sample(index - 1)  # index -1 wraps to the last entry (masked below)
            leaf = getattr(x, g).detach().requires_grad_(True)
            with torch.enable_grad():
                s, _ = p_sample(denoiser, sched, x.replace(g, leaf), index, noise)
                objective = _batch_mse(getattr(s, c), prev_c).mean() * loss_scale
                (grad,) = torch.autograd.grad(objective, leaf)
            s_g = getattr(s, g).detach()
            nonzero = bcast((index != 0).float(), s_g)
            sa = gather(sched, "sqrt_alphas_cumprod", index, s_g)
            x = x.replace(g, s_g - nonzero * grad * scale * sa)
        notify(callback, step + 1, total, x)
    return x if official_output else x.replace(c, condition)


def conditional_denoiser(
    denoiser: Denoiser,
    *,
    condition: Tensor,
    z_c: Tensor,
    direction: Direction,
    guidance: Guidance,
    scale: float,
) -> Denoiser:
    """Wrap ``denoiser`` for the fast conditional samplers (see module docstring)."""
    c, g = modalities(direction)

    def wrapped(
        x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
    ) -> tuple[State, State | None]:
        assert isinstance(x, AV)
        a, s = bcast(alpha, condition), bcast(sigma, condition)
        x_c = a * condition + s * z_c
        if guidance == "replacement" or scale == 0:
            with torch.no_grad():
                eps, var = denoiser(x.replace(c, x_c), t_model, alpha, sigma)
        else:
            leaf = getattr(x, g).detach().requires_grad_(True)
            with torch.enable_grad():
                eps, var = denoiser(x.replace(c, x_c).replace(g, leaf), t_model, alpha, sigma)
                assert isinstance(eps, AV)
                x0_c = (x_c - s * getattr(eps, c)) / a
                (grad,) = torch.autograd.grad(_batch_mse(x0_c, condition).sum(), leaf)
            eps = eps.detach()
            eps_g = getattr(eps, g)
            eps = eps.replace(g, eps_g + scale * bcast(sigma, eps_g) * grad)
        assert isinstance(eps, AV)
        return eps.replace(c, z_c), var

    return wrapped
