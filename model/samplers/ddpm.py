"""DDPM ancestral sampling over a discrete (possibly respaced) schedule.

Works for the coupled model (state = AV) and SR (state = tensor). The network sees
``timestep_map[k]`` for respaced index ``k``. Variance: FIXED_LARGE when the denoiser returns
no variance channels (the base model), LEARNED_RANGE otherwise (the SR model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from model.denoiser import Denoiser
from model.samplers.common import Callback, NoiseFn, generator_noise, notify
from model.schedule import DiscreteSchedule
from model.state import State, batch_size, bcast, leaves, tmap


@dataclass(frozen=True)
class MeanVariance:
    """Output of :func:`p_mean_variance`; states shaped like ``x`` (``log_variance`` is per batch
    element, broadcast, for FIXED_LARGE and elementwise for LEARNED_RANGE)."""

    mean: State
    log_variance: State
    pred_x0: State
    eps: State


def gather(sched: DiscreteSchedule, name: str, index: Tensor, like: Tensor) -> Tensor:
    """Float64 table ``name`` at ``index [B]``, cast to float32, broadcast to ``like``'s rank."""
    return bcast(sched.gather(name, index).to(like.device), like)


def index_tensor(k: int, state: State) -> Tensor:
    """``[B]`` int64 tensor filled with respaced index ``k``."""
    first = leaves(state)[0]
    return torch.full((batch_size(state),), k, dtype=torch.int64, device=first.device)


def evaluate(
    denoiser: Denoiser, sched: DiscreteSchedule, x: State, index: Tensor
) -> tuple[State, State | None]:
    """Call the denoiser at respaced index ``index [B]`` (the network sees ``timestep_map``)."""
    alpha = sched.gather("sqrt_alphas_cumprod", index)
    sigma = sched.gather("sqrt_one_minus_alphas_cumprod", index)
    return denoiser(x, sched.model_timesteps(index), alpha, sigma)


def x0_from_eps(sched: DiscreteSchedule, x: State, index: Tensor, eps: State, clip: bool) -> State:
    """``x0 = sqrt(1/abar) x - sqrt(1/abar - 1) eps``, clamped to [-1, 1] when ``clip``."""

    def one(xt: Tensor, e: Tensor) -> Tensor:
        x0 = (
            gather(sched, "sqrt_recip_alphas_cumprod", index, xt) * xt
            - gather(sched, "sqrt_recipm1_alphas_cumprod", index, xt) * e
        )
        return x0.clamp(-1.0, 1.0) if clip else x0

    return tmap(one, x, eps)


def p_mean_variance(
    denoiser: Denoiser, sched: DiscreteSchedule, x: State, index: Tensor, *, clip: bool = True
) -> MeanVariance:
    """Model mean and log-variance of ``p(x_{k-1} | x_k)`` at respaced index ``index [B]``."""
    eps, var_values = evaluate(denoiser, sched, x, index)
    x0 = x0_from_eps(sched, x, index, eps, clip)
    mean = tmap(
        lambda x0_, xt: gather(sched, "posterior_mean_coef1", index, xt) * x0_
        + gather(sched, "posterior_mean_coef2", index, xt) * xt,
        x0,
        x,
    )
    if var_values is None:
        log_var = tmap(
            lambda xt: gather(sched, "fixed_large_log_variance", index, xt).expand_as(xt), x
        )
    else:

        def learned(v: Tensor) -> Tensor:
            lo = gather(sched, "posterior_log_variance_clipped", index, v)
            hi = gather(sched, "log_betas", index, v)
            frac = (v + 1) / 2
            return frac * hi + (1 - frac) * lo

        log_var = tmap(learned, var_values)
    return MeanVariance(mean=mean, log_variance=log_var, pred_x0=x0, eps=eps)


def p_sample(
    denoiser: Denoiser,
    sched: DiscreteSchedule,
    x: State,
    index: Tensor,
    noise: State,
    *,
    clip: bool = True,
) -> tuple[State, MeanVariance]:
    """One ancestral step: ``mean + 1[k != 0] exp(0.5 log_var) z`` (no noise at k = 0)."""
    out = p_mean_variance(denoiser, sched, x, index, clip=clip)
    nonzero = (index != 0).float()
    sample = tmap(
        lambda m, lv, z: m + bcast(nonzero, m) * torch.exp(0.5 * lv) * z,
        out.mean,
        out.log_variance,
        noise,
    )
    return sample, out


def ddpm_sample(
    denoiser: Denoiser,
    sched: DiscreteSchedule,
    x_T: State,
    *,
    generator: torch.Generator | None = None,
    noise_fn: NoiseFn | None = None,
    callback: Callback | None = None,
    clip: bool = True,
) -> State:
    """Ancestral loop over ``k = K-1 .. 0``; ``noise_fn(step, like)`` (step = 0 at k = K-1) or
    the generator supplies the per-step noise. Output = the clipped x0 of the last step."""
    draw = noise_fn if noise_fn is not None else generator_noise(generator)
    x = x_T
    total = sched.num_steps
    for step, k in enumerate(range(total - 1, -1, -1)):
        x, _ = p_sample(denoiser, sched, x, index_tensor(k, x), draw(step, x), clip=clip)
        notify(callback, step + 1, total, x)
    return x
