"""Masked conditional sampling: a time mask says which part of each modality is given.

The zero-shot conditional samplers of :mod:`model.conditional` give one whole modality (the
condition) and generate the other. Here each modality has a boolean mask (``True`` = given):
``video [B, F, 1, 1, 1]`` and ``audio [B, 1, L]`` time masks (or full shapes) and ``known`` an
:class:`~model.state.AV` of the given values (ignored where the mask is ``False``). A window of
a long video-to-audio clip gives all of its video and the first frames of its audio (the overlap
already generated); video-to-audio itself is the mask pair (all ``True``, all ``False``).

The same two families, written once for any mask (``z = x_T``: the fixed re-noising noise):

* fast samplers (DDIM, DPM-Solver(++)) -- :func:`masked_denoiser`: at every network evaluation
  the given parts are set to ``alpha*known + sigma*z`` and report ``eps = z`` there; gradient
  guidance differentiates ``L_b = sum_m mean_m(1[given] (x0_m - known_m)^2)`` (the mean over all
  elements of modality ``m``, so each given element weighs what it weighs in
  :mod:`model.conditional`) with respect to every modality that has generated parts, and adds
  ``scale * sigma * dL_b/dx_m`` to their eps;
* the official DDPM loop -- :func:`masked_official_loop`: every step re-noises the given parts
  with ``q_sample(known, i, z)``; replacement or the official gradient step on the generated
  parts (``objective = sum_m mean_b mean(1[given] (s_m - q_sample(known, i-1, z))^2)``).

A modality whose mask is all ``True`` or all ``False`` takes exactly the code path of
:mod:`model.conditional` (selection by ``torch.where`` elsewhere), so with the masks of plain
video-to-audio or audio-to-video the outputs equal :func:`model.samplers.sample_conditional`
bit for bit (tests/model/test_masked.py).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from model.conditional import Guidance
from model.denoiser import Denoiser, Prediction, joint_denoiser
from model.prompted import Objective, PromptGuidance, guided_eval, x0_of
from model.samplers.api import JointEps, discrete_schedule, run_spec, start_coefficients
from model.samplers.common import Callback, NoiseFn, generator_noise, notify
from model.samplers.ddpm import gather, index_tensor, p_sample
from model.samplers.spec import SamplerSpec
from model.schedule import DiscreteSchedule
from model.state import AV, State, bcast, check_state

Kind = Literal["full", "none", "partial"]
NAMES = ("video", "audio")


def mask_kinds(mask: AV) -> dict[str, Kind]:
    """Per modality: ``full`` (all given), ``none`` (all generated) or ``partial``."""
    out: dict[str, Kind] = {}
    for name in NAMES:
        m = getattr(mask, name)
        out[name] = "full" if bool(m.all()) else "none" if not bool(m.any()) else "partial"
    return out


def _put(kind: Kind, mask: Tensor, given: Tensor, x: Tensor) -> Tensor:
    """``given`` where the mask is set, ``x`` elsewhere (no arithmetic, exact)."""
    if kind == "full":
        return given
    if kind == "none":
        return x
    return torch.where(mask, given, x)


def _batch_mse(kind: Kind, mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    d = a - b if kind == "full" else torch.where(mask, a - b, torch.zeros_like(a))
    return (d**2).mean(dim=tuple(range(1, a.dim())))


def _check(x_T: AV, known: AV, mask: AV) -> None:
    for name in NAMES:
        x, k, m = getattr(x_T, name), getattr(known, name), getattr(mask, name)
        if k.shape != x.shape:
            raise ValueError(f"known.{name} has shape {tuple(k.shape)}; expected {tuple(x.shape)}")
        if m.dtype != torch.bool or m.dim() != x.dim() or torch.broadcast_shapes(
                m.shape, x.shape) != x.shape:
            raise ValueError(f"mask.{name} must be a bool tensor broadcastable to "
                             f"{tuple(x.shape)} with the same rank (e.g. a time mask "
                             f"{'[B, F, 1, 1, 1]' if name == 'video' else '[B, 1, L]'}); got "
                             f"{m.dtype} {tuple(m.shape)}")


def masked_denoiser(
    denoiser: Denoiser, *, known: AV, mask: AV, z: AV, guidance: Guidance, scale: float,
    prompt: PromptGuidance | None = None,
) -> Denoiser:
    """Wrap ``denoiser`` for the fast samplers with given parts (see module docstring).

    ``prompt``: also steer the generated parts toward a prompt (:mod:`model.prompted`): the
    clean estimates, with the given parts set to ``known``, are scored, and the one backward
    pass descends ``scale * sum_b L_b - w * sum_b score_b`` (without reconstruction gradient
    guidance: ``-w * sum_b score_b``) w.r.t. every modality with generated parts."""
    kinds = mask_kinds(mask)
    free = [n for n in NAMES if kinds[n] != "full"]
    given = [n for n in NAMES if kinds[n] != "none"]
    prompted = prompt is not None and prompt.scale != 0 and bool(free)
    recon = guidance == "gradient" and scale != 0 and bool(given) and bool(free)

    def guided_objective(alpha: Tensor, sigma: Tensor) -> Objective:
        assert prompt is not None

        def objective(x_in: AV, eps: AV) -> Tensor:
            raw = AV(*(x0_of(getattr(x_in, n), getattr(eps, n), alpha, sigma) for n in NAMES))
            scored = AV(*(_put(kinds[n], getattr(mask, n), getattr(known, n), getattr(raw, n))
                          for n in NAMES))
            total = -prompt.scale * prompt.score(scored).sum()
            if recon:
                for n in given:
                    total = total + scale * _batch_mse(kinds[n], getattr(mask, n),
                                                       getattr(raw, n), getattr(known, n)).sum()
            return total

        return objective

    def wrapped(
        x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
    ) -> tuple[State, State | None]:
        assert isinstance(x, AV)
        noised = {}
        for n in given:
            k = getattr(known, n)
            a, s = bcast(alpha, k), bcast(sigma, k)
            noised[n] = a * k + s * getattr(z, n)
        x_in = AV(*(_put(kinds[n], getattr(mask, n), noised.get(n, getattr(x, n)), getattr(x, n))
                    for n in NAMES))
        eps: State
        var: State | None
        if prompted:
            eps, var = guided_eval(denoiser, x_in, t_model, alpha, sigma, guided=free,
                                   objective=guided_objective(alpha, sigma), outer=1.0)
        elif guidance == "replacement" or scale == 0 or not given or not free:
            with torch.no_grad():
                eps, var = denoiser(x_in, t_model, alpha, sigma)
        else:
            leaves = {n: getattr(x_in, n).detach().requires_grad_(True) for n in free}
            with torch.enable_grad():
                x_in = x_in._replace(**leaves)
                eps, var = denoiser(x_in, t_model, alpha, sigma)
                assert isinstance(eps, AV)
                loss: Tensor | None = None
                for n in given:
                    a, s = bcast(alpha, noised[n]), bcast(sigma, noised[n])
                    x0 = (getattr(x_in, n) - s * getattr(eps, n)) / a
                    term = _batch_mse(kinds[n], getattr(mask, n), x0, getattr(known, n)).sum()
                    loss = term if loss is None else loss + term
                assert loss is not None
                grads = torch.autograd.grad(loss, [leaves[n] for n in free])
            eps = eps.detach()
            for n, grad in zip(free, grads, strict=False):
                e = getattr(eps, n)
                eps = eps.replace(n, e + scale * bcast(sigma, e) * grad)
        assert isinstance(eps, AV)
        out = AV(*(_put(kinds[n], getattr(mask, n), getattr(z, n), getattr(eps, n))
                   for n in NAMES))
        return out, var

    return wrapped


def masked_official_loop(
    denoiser: Denoiser, sched: DiscreteSchedule, x_T: AV, *, known: AV, mask: AV,
    guidance: Guidance, scale: float, loss_scale: float = 1.0,
    generator: torch.Generator | None = None, noise_fn: NoiseFn | None = None,
    callback: Callback | None = None,
) -> AV:
    """The official conditional DDPM loop with given parts (see module docstring). Returns the
    state with the given parts set to ``known``."""
    kinds = mask_kinds(mask)
    free = [n for n in NAMES if kinds[n] != "full"]
    given = [n for n in NAMES if kinds[n] != "none"]
    draw = noise_fn if noise_fn is not None else generator_noise(generator)
    total = sched.num_steps
    x = x_T

    def q_sample(n: str, index: Tensor) -> Tensor:
        k = getattr(known, n)
        return (gather(sched, "sqrt_alphas_cumprod", index, k) * k
                + gather(sched, "sqrt_one_minus_alphas_cumprod", index, k) * getattr(x_T, n))

    def put(state: AV, index: Tensor) -> AV:
        for n in given:
            state = state.replace(n, _put(kinds[n], getattr(mask, n), q_sample(n, index),
                                          getattr(state, n)))
        return state

    for step in range(total):
        index = index_tensor(total - 1 - step, x)
        x = put(x, index)
        noise = draw(step, x)
        if guidance == "replacement" or not given or not free:
            with torch.no_grad():
                s, _ = p_sample(denoiser, sched, x, index, noise)
            assert isinstance(s, AV)
            x = s
        else:
            leaves = {n: getattr(x, n).detach().requires_grad_(True) for n in free}
            with torch.enable_grad():
                s, _ = p_sample(denoiser, sched, x._replace(**leaves), index, noise)
                assert isinstance(s, AV)
                objective: Tensor | None = None
                for n in given:  # index -1 wraps to the last entry (masked below)
                    term = _batch_mse(kinds[n], getattr(mask, n), getattr(s, n),
                                      q_sample(n, index - 1)).mean()
                    objective = term if objective is None else objective + term
                assert objective is not None
                grads = torch.autograd.grad(objective * loss_scale, [leaves[n] for n in free])
            s = s.detach()
            for n, grad in zip(free, grads, strict=False):
                s_n = getattr(s, n)
                nonzero = bcast((index != 0).float(), s_n)
                sa = gather(sched, "sqrt_alphas_cumprod", index, s_n)
                s = s.replace(n, s_n - nonzero * grad * scale * sa)
            x = s
        notify(callback, step + 1, total, x)
    return AV(*(_put(kinds[n], getattr(mask, n), getattr(known, n), getattr(x, n))
                for n in NAMES))


def sample_masked(
    eps_fn: JointEps, x_T: AV, spec: SamplerSpec, *, known: AV, mask: AV,
    guidance: Guidance = "gradient", scale: float = 3.0, loss_scale: float = 1.0,
    generator: torch.Generator | None = None, callback: Callback | None = None,
    noise_fn: NoiseFn | None = None, prediction: Prediction = "eps",
    prompt: PromptGuidance | None = None,
) -> AV:
    """Sample ``x_T = AV(video [B,F,C,H,W], audio [B,C,L])`` with the parts where ``mask`` is
    True given by ``known`` (same shapes; clean values in the network's domain); ``x_T`` is also
    the fixed re-noising noise of the given parts. ``spec.name == "ddpm"``: the official loop;
    else the fast samplers. ``prediction``: what ``eps_fn`` returns, ``"eps"`` or ``"v"`` (as
    for :func:`model.samplers.sample_conditional`). The returned state equals ``known`` wherever
    ``mask`` is True. ``prompt``: prompt guidance of the generated parts (fast samplers only;
    see :func:`masked_denoiser`)."""
    check_state(x_T, "x_T")
    _check(x_T, known, mask)
    if guidance not in ("replacement", "gradient"):
        raise ValueError(f"guidance {guidance!r} is unknown; expected 'replacement' or 'gradient'")
    known = AV(known.video.to(x_T.video.dtype), known.audio.to(x_T.audio.dtype))
    denoiser = joint_denoiser(eps_fn, prediction)
    if spec.name == "ddpm":
        if prompt is not None:
            raise ValueError("prompt guidance of masked (whole-clip) sampling runs on the fast "
                             "samplers (ddim, dpm_solver(++)); not on the DDPM loop")
        if spec.official_compat:
            raise ValueError("official_compat output is not defined for masked sampling; use "
                             "sample_conditional for the official video-to-audio output")
        return masked_official_loop(
            denoiser, discrete_schedule(spec), x_T, known=known, mask=mask, guidance=guidance,
            scale=scale, loss_scale=loss_scale, generator=generator, noise_fn=noise_fn,
            callback=callback)
    wrapped = masked_denoiser(denoiser, known=known, mask=mask, z=x_T, guidance=guidance,
                              scale=scale, prompt=prompt)
    a0, s0 = start_coefficients(spec)
    kinds = mask_kinds(mask)
    start = AV(*(_put(kinds[n], getattr(mask, n), a0 * getattr(known, n) + s0 * getattr(x_T, n),
                      getattr(x_T, n)) for n in NAMES))
    with torch.no_grad():
        out = run_spec(wrapped, start, spec, generator=generator, callback=callback,
                       noise_fn=noise_fn)
    assert isinstance(out, AV)
    return AV(*(_put(kinds[n], getattr(mask, n), getattr(known, n), getattr(out, n))
                for n in NAMES))


def direction_masks(direction: str, x_T: AV) -> AV:
    """The masks of plain video-to-audio / audio-to-video: the condition all given."""
    v, a = x_T.video, x_T.audio
    ones_v = torch.ones((v.shape[0], v.shape[1], 1, 1, 1), dtype=torch.bool, device=v.device)
    ones_a = torch.ones((a.shape[0], 1, a.shape[2]), dtype=torch.bool, device=a.device)
    if direction == "video-to-audio":
        return AV(ones_v, ~ones_a)
    if direction == "audio-to-video":
        return AV(~ones_v, ones_a)
    raise ValueError(f"direction {direction!r} is unknown; expected 'video-to-audio' or "
                     "'audio-to-video'")
