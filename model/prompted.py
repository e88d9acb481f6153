"""Prompt guidance: steer sampling toward a prompt with an aligner's score (issue 17).

The "Seeing and Hearing" approach (CVPR 2024) without its optimiser: at every network
evaluation the clean estimate of the state,

    x0_m = (x_m - sigma * eps_m) / alpha            (m = video, audio),

is scored by the aligner (``model/aligners``; the audio estimate divided by the network's
``audio_scale`` first, so the aligner sees the waveform), and each guided modality's noise
prediction becomes

    eps_m <- eps_m - w * sigma * d(score)/dx_m       (score = sum over the batch of [B] scores),

the classifier-guidance form (``-sigma * grad log p(prompt | x_t)`` added to eps; here the
"log-probability" is the aligner's score of the clean estimate). Summing the per-sample scores
keeps samples independent: sample ``b``'s gradient is that of its own score. Every sampler
(DDPM, DDIM, DPM-Solver(++)) runs unchanged on the wrapped denoiser: to a sampler the prompt
gradient is part of eps. One forward and one backward pass of the network per evaluation.

:func:`guided_eval` is the one mechanism, shared with the reconstruction guidance of the
conditional samplers (:func:`model.conditional.conditional_denoiser`): the noise prediction of
the guided modalities gets ``outer * sigma * d(objective)/dx``, ``objective`` a scalar to
*descend* (``-score`` here). A conditional job with a prompt descends ``scale * L_recon - w *
score`` in one backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from model.aligners.base import Aligner
from model.denoiser import Denoiser
from model.state import AV, State, bcast, tmap

__all__ = ["Objective", "PromptGuidance", "guided_eval", "make_guidance", "prompt_denoiser",
           "prompt_objective", "x0_of"]

Objective = Callable[[AV, AV], Tensor]
"""``objective(x, eps) -> []``: a scalar to descend, a function of the evaluation's input ``x``
(the guided modalities are autograd leaves) and the network's noise prediction ``eps``."""


@dataclass(frozen=True)
class PromptGuidance:
    """A prompt to steer toward: the aligner, the checked prompt, the weight ``scale`` (``w``)
    and the network's ``audio_scale`` (the model's audio = ``audio_scale`` x the waveform)."""

    aligner: Aligner
    prompt: str
    scale: float
    audio_scale: float

    def score(self, x0: AV) -> Tensor:
        """``[B]`` aligner scores of clean estimates ``x0 = AV(video [B,F,3,H,W], audio
        [B,1,L])`` in the network's domain (the audio is divided by ``audio_scale`` here)."""
        return self.aligner.score(x0.video, x0.audio / self.audio_scale, self.prompt)


def make_guidance(aligner: Aligner | None, prompt: str | None, prompt_scale: float | None,
                  audio_scale: float, model: str = "this model") -> PromptGuidance | None:
    """The guidance of a request's ``prompt`` / ``prompt_scale`` (None = the aligner's
    ``default_scale``), or None without a prompt. Raises ValueError when there is no aligner
    or the aligner refuses the prompt."""
    if prompt is None:
        return None
    if aligner is None:
        raise ValueError(f"{model} has no prompt aligner, so it cannot take a prompt; "
                         "configure one for it or leave the prompt out")
    scale = aligner.default_scale if prompt_scale is None else prompt_scale
    return PromptGuidance(aligner=aligner, prompt=aligner.check_prompt(prompt),
                          scale=float(scale), audio_scale=float(audio_scale))


def x0_of(x: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Clean estimate ``(x - sigma*eps) / alpha`` of one modality (``alpha, sigma [B]``)."""
    return (x - bcast(sigma, x) * eps) / bcast(alpha, x)


def guided_eval(
    denoiser: Denoiser,
    x: AV,
    t_model: Tensor,
    alpha: Tensor,
    sigma: Tensor,
    *,
    guided: Sequence[str],
    objective: Objective,
    outer: float,
) -> tuple[AV, State | None]:
    """One network evaluation with gradient guidance of the ``guided`` modalities.

    Calls ``denoiser`` once on ``x`` with the guided modalities as autograd leaves, then one
    backward pass of ``objective(x, eps)``; returns ``eps`` (detached) with each guided
    modality's ``eps_m + outer * sigma * d(objective)/dx_m`` (``sigma [B]`` broadcast), and the
    variance values. Shapes: ``x``, ``eps`` = ``AV(video [B,F,C,H,W], audio [B,C,L])``."""
    names = list(guided)
    leaves = {m: getattr(x, m).detach().requires_grad_(True) for m in names}
    x_in = x._replace(**leaves)
    with torch.enable_grad():
        eps, var = denoiser(x_in, t_model, alpha, sigma)
        assert isinstance(eps, AV)
        grads = torch.autograd.grad(objective(x_in, eps), [leaves[m] for m in names])
    eps = eps.detach()
    for m, grad in zip(names, grads, strict=True):
        e = getattr(eps, m)
        eps = eps.replace(m, e + outer * bcast(sigma, e) * grad)
    return eps, (None if var is None else tmap(lambda v: v.detach(), var))


def prompt_objective(guide: PromptGuidance, alpha: Tensor, sigma: Tensor,
                     clean: dict[str, Tensor] | None = None) -> Objective:
    """``-sum_b score_b`` of the clean estimates of ``(x, eps)``; modalities in ``clean`` (a
    known condition, ``[B, ...]`` in the network's domain) are scored as given."""
    known = clean or {}

    def objective(x: AV, eps: AV) -> Tensor:
        x0 = AV(*(known[m] if m in known else x0_of(getattr(x, m), getattr(eps, m), alpha, sigma)
                  for m in ("video", "audio")))
        return -guide.score(x0).sum()

    return objective


def prompt_denoiser(denoiser: Denoiser, guide: PromptGuidance,
                    guided: Sequence[str] = ("video", "audio"),
                    clean: dict[str, Tensor] | None = None) -> Denoiser:
    """Wrap a joint ``denoiser`` (``x = AV``) so that every evaluation adds the prompt gradient
    to the noise prediction of the ``guided`` modalities (see module docstring); modalities in
    ``clean`` (a known condition) are scored as given. ``guide.scale == 0`` returns
    ``denoiser`` itself (unguided, bit for bit)."""
    if guide.scale == 0:
        return denoiser

    def wrapped(x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
                ) -> tuple[State, State | None]:
        assert isinstance(x, AV)
        return guided_eval(denoiser, x, t_model, alpha, sigma, guided=guided,
                           objective=prompt_objective(guide, alpha, sigma, clean),
                           outer=guide.scale)

    return wrapped
