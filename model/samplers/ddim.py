"""DDIM sampling (eta = 0 deterministic, eta > 0 stochastic) over a discrete schedule.

The learned-range channels of the SR model are ignored. eps is re-derived from the clipped x0,
so the last step (abar_prev = 1) returns exactly the clipped x0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.denoiser import Denoiser
from model.samplers.common import Callback, NoiseFn, generator_noise, notify
from model.samplers.ddpm import evaluate, gather, index_tensor, x0_from_eps
from model.schedule import DiscreteSchedule
from model.state import State, bcast, tmap


def ddim_step(
    denoiser: Denoiser,
    sched: DiscreteSchedule,
    x: State,
    index: Tensor,
    *,
    eta: float = 0.0,
    noise: State | None = None,
    clip: bool = True,
) -> tuple[State, State]:
    """One DDIM step from respaced index ``index [B]``; returns ``(x_prev, pred_x0)``.

    ``noise`` is only needed (and only read) when ``eta > 0``.
    """
    eps, _ = evaluate(denoiser, sched, x, index)
    x0 = x0_from_eps(sched, x, index, eps, clip)
    nonzero = (index != 0).float()

    def one(xt: Tensor, x0_: Tensor, z: Tensor | None) -> Tensor:
        e = (gather(sched, "sqrt_recip_alphas_cumprod", index, xt) * xt - x0_) / gather(
            sched, "sqrt_recipm1_alphas_cumprod", index, xt
        )
        ab = gather(sched, "alphas_cumprod", index, xt)
        ab_prev = gather(sched, "alphas_cumprod_prev", index, xt)
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
        out = x0_ * torch.sqrt(ab_prev) + torch.sqrt(1 - ab_prev - sigma**2) * e
        if eta > 0:
            assert z is not None
            out = out + bcast(nonzero, out) * sigma * z
        return out

    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs a noise state")
        return tmap(one, x, x0, noise), x0
    return tmap(lambda xt, x0_: one(xt, x0_, None), x, x0), x0


def renoise(sched: DiscreteSchedule, x_prev: State, index: Tensor, noise: State) -> State:
    """Take a state at respaced level ``index - 1`` back to level ``index`` (the forward
    process between the two): ``sqrt(r) x_prev + sqrt(1 - r) noise``,
    ``r = abar_index / abar_(index-1)`` (``alphas_cumprod / alphas_cumprod_prev``)."""
    def one(xp: Tensor, z: Tensor) -> Tensor:
        ratio = gather(sched, "alphas_cumprod", index, xp) / gather(
            sched, "alphas_cumprod_prev", index, xp)
        return torch.sqrt(ratio) * xp + torch.sqrt(1 - ratio) * z

    return tmap(one, x_prev, noise)


def step_runs(steps: int, resample: int) -> list[int]:
    """Network evaluations of each of ``steps`` DDIM steps with ``resample``: every step but
    the last runs ``resample`` times (:func:`ddim_sample`)."""
    return [resample] * (steps - 1) + [1]


def ddim_sample(
    denoiser: Denoiser,
    sched: DiscreteSchedule,
    x_T: State,
    *,
    eta: float = 0.0,
    resample: int = 1,
    generator: torch.Generator | None = None,
    noise_fn: NoiseFn | None = None,
    callback: Callback | None = None,
    clip: bool = True,
) -> State:
    """DDIM loop over ``k = K-1 .. 0``. With ``eta = 0`` no noise is drawn (the official loop
    drew and discarded one ``randn_like`` per step; the result is identical).

    ``resample > 1``: each step with ``k > 0`` runs ``resample`` times; after all but the last
    run its result is taken back to level ``k`` by :func:`renoise` with a fresh draw (RePaint's
    resampling: under guidance, the step's decision is redone from a state that already agrees
    with the condition). Draws per repeat: the step's (``eta > 0``), then the re-noising's.
    ``callback`` fires once per step, after its last run."""
    if resample < 1:
        raise ValueError(f"resample must be >= 1, got {resample}")
    draw = noise_fn if noise_fn is not None else generator_noise(generator)
    x = x_T
    total = sched.num_steps
    plan = step_runs(total, resample)
    for step, k in enumerate(range(total - 1, -1, -1)):
        index = index_tensor(k, x)
        runs = plan[step]
        for run in range(runs):
            noise = draw(step, x) if eta > 0 else None
            x_prev, _ = ddim_step(denoiser, sched, x, index, eta=eta, noise=noise, clip=clip)
            x = renoise(sched, x_prev, index, draw(step, x_prev)) if run < runs - 1 else x_prev
        notify(callback, step + 1, total, x)
    return x
