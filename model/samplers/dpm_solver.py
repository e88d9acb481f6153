"""DPM-Solver / DPM-Solver++ update formulas over a state (AV pair or tensor).

Both modalities share the continuous-time grid, step sizes, intermediate times and per-batch
scalars; one network call returns both eps. ``predict_x0=False`` is DPM-Solver (noise
prediction), ``True`` is DPM-Solver++ (data prediction, optional dynamic thresholding or a
plain clip of x0 to [-1, 1], ``clip_x0``).
Per-batch scalar coefficients ``[B]`` are formed first, then broadcast onto each modality.

Official defect kept behind ``audio_quirk`` (``SamplerSpec.official_compat``): the official
multimodal first-order *noise-prediction* update used, for audio only,
``a_t = (sigma_t/sigma_s) a_s - alpha_t expm1(h) eps_s`` (the data-prediction form with the
noise-prediction sign). Our default path uses the correct formula for both modalities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from model.denoiser import Denoiser
from model.schedule import ContinuousSchedule, ieee_exp, ieee_log, ieee_sqrt
from model.state import AV, State, bcast, tmap


def _lin(state_coefs: list[tuple[Tensor | float, State]]) -> State:
    """``sum_i c_i * s_i`` where ``c_i`` is a per-batch ``[B]`` tensor (or float); first term added
    first, left to right, each coefficient broadcast to the modality's rank."""

    def one(*xs: Tensor) -> Tensor:
        out: Tensor | None = None
        for (c, _), x in zip(state_coefs, xs, strict=True):
            term = (bcast(c, x) if isinstance(c, Tensor) and c.dim() == 1 else c) * x
            out = term if out is None else out + term
        assert out is not None
        return out

    return tmap(one, *(s for _, s in state_coefs))


@dataclass(frozen=True)
class Solver:
    """The continuous-time model wrapper and the update formulas; holds configuration only."""

    denoiser: Denoiser
    ns: ContinuousSchedule
    predict_x0: bool = False
    thresholding: bool = False
    clip_x0: bool = False
    max_val: float = 1.0
    audio_quirk: bool = False

    # ---- scalars at continuous times t [B] ---------------------------------------------------
    def coefs(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(log alpha, alpha, sigma, lambda)`` at ``t [B]``."""
        la = self.ns.log_alpha(t)
        sigma = ieee_sqrt(1.0 - ieee_exp(2.0 * la))
        lam = la - 0.5 * ieee_log(1.0 - ieee_exp(2.0 * la))
        return la, ieee_exp(la), sigma, lam

    # ---- the network -------------------------------------------------------------------------
    def model(self, x: State, t: Tensor) -> State:
        """eps (noise prediction) or the data prediction (thresholded or clipped to
        ``[-max_val, max_val]`` when asked) at ``t [B]``."""
        _, alpha, sigma, _ = self.coefs(t)
        eps, _ = self.denoiser(x, self.ns.model_time(t), alpha, sigma)
        if not self.predict_x0:
            return eps
        x0 = tmap(lambda xt, e: (xt - bcast(sigma, xt) * e) / bcast(alpha, xt), x, eps)
        if self.thresholding:
            return tmap(self._threshold, x0)
        if self.clip_x0:
            return tmap(lambda v: v.clamp(-self.max_val, self.max_val), x0)
        return x0

    def _threshold(self, x0: Tensor) -> Tensor:
        q = torch.quantile(x0.abs().reshape(x0.shape[0], -1), 0.995, dim=1)
        s = bcast(torch.maximum(q, self.max_val * torch.ones_like(q)), x0)
        return torch.clamp(x0, -s, s) / s

    # ---- updates -----------------------------------------------------------------------------
    def first_order(self, x: State, s: Tensor, t: Tensor, m_s: State) -> State:
        la_s, _, sig_s, lam_s = self.coefs(s)
        la_t, a_t, sig_t, lam_t = self.coefs(t)
        h = lam_t - lam_s
        if self.predict_x0:
            return _lin([(sig_t / sig_s, x), (-(a_t * torch.expm1(-h)), m_s)])
        phi = torch.expm1(h)
        out = _lin([(ieee_exp(la_t - la_s), x), (-(sig_t * phi), m_s)])
        if self.audio_quirk and isinstance(x, AV) and isinstance(m_s, AV) and isinstance(out, AV):
            quirk = _lin([(sig_t / sig_s, x.audio), (-(a_t * phi), m_s.audio)])
            out = AV(out.video, quirk)
        return out

    def singlestep_second(
        self, x: State, s: Tensor, t: Tensor, r1: Tensor | float, m_s: State
    ) -> tuple[State, State]:
        """Returns ``(x_t, x_t_lower)``; one network call at ``s1 = lambda^-1(lambda_s + r1 h)``."""
        la_s, _, sig_s, lam_s = self.coefs(s)
        la_t, a_t, sig_t, lam_t = self.coefs(t)
        h = lam_t - lam_s
        s1 = self.ns.inverse_lambda(lam_s + r1 * h)
        la_1, a_1, sig_1, _ = self.coefs(s1)
        if self.predict_x0:
            u = _lin([(sig_1 / sig_s, x), (-(a_1 * torch.expm1(-r1 * h)), m_s)])
            m_1 = self.model(u, s1)
            c = a_t * torch.expm1(-h)
            xt = _lin([(sig_t / sig_s, x), (-c, m_s), (-(0.5 / r1) * c, _diff(m_1, m_s))])
        else:
            u = _lin([(ieee_exp(la_1 - la_s), x), (-(sig_1 * torch.expm1(r1 * h)), m_s)])
            m_1 = self.model(u, s1)
            c = sig_t * torch.expm1(h)
            xt = _lin([(ieee_exp(la_t - la_s), x), (-c, m_s), (-(0.5 / r1) * c, _diff(m_1, m_s))])
        return xt, u

    def singlestep_third(
        self, x: State, s: Tensor, t: Tensor, r1: Tensor | float, r2: Tensor | float, m_s: State
    ) -> State:
        la_s, _, sig_s, lam_s = self.coefs(s)
        la_t, a_t, sig_t, lam_t = self.coefs(t)
        h = lam_t - lam_s
        s1 = self.ns.inverse_lambda(lam_s + r1 * h)
        s2 = self.ns.inverse_lambda(lam_s + r2 * h)
        la_1, a_1, sig_1, _ = self.coefs(s1)
        la_2, a_2, sig_2, _ = self.coefs(s2)
        if self.predict_x0:
            phi_1 = torch.expm1(-h)
            phi_22 = torch.expm1(-r2 * h) / (r2 * h) + 1.0
            phi_2 = phi_1 / h + 1.0
            u1 = _lin([(sig_1 / sig_s, x), (-(a_1 * torch.expm1(-r1 * h)), m_s)])
            m_1 = self.model(u1, s1)
            u2 = _lin([(sig_2 / sig_s, x), (-(a_2 * torch.expm1(-r2 * h)), m_s),
                       ((r2 / r1) * (a_2 * phi_22), _diff(m_1, m_s))])
            m_2 = self.model(u2, s2)
            return _lin([(sig_t / sig_s, x), (-(a_t * phi_1), m_s),
                         ((1.0 / r2) * (a_t * phi_2), _diff(m_2, m_s))])
        phi_1 = torch.expm1(h)
        phi_22 = torch.expm1(r2 * h) / (r2 * h) - 1.0
        phi_2 = phi_1 / h - 1.0
        u1 = _lin([(ieee_exp(la_1 - la_s), x), (-(sig_1 * torch.expm1(r1 * h)), m_s)])
        m_1 = self.model(u1, s1)
        u2 = _lin([(ieee_exp(la_2 - la_s), x), (-(sig_2 * torch.expm1(r2 * h)), m_s),
                   (-(r2 / r1) * (sig_2 * phi_22), _diff(m_1, m_s))])
        m_2 = self.model(u2, s2)
        return _lin([(ieee_exp(la_t - la_s), x), (-(sig_t * phi_1), m_s),
                     (-(1.0 / r2) * (sig_t * phi_2), _diff(m_2, m_s))])

    def multistep_second(self, x: State, ts: list[Tensor], ms: list[State], t: Tensor) -> State:
        """From ``ts[-1]`` with history ``(ts[-2], ms[-2]), (ts[-1], ms[-1])``."""
        _, _, _, lam_p1 = self.coefs(ts[-2])
        la_p0, _, sig_p0, lam_p0 = self.coefs(ts[-1])
        la_t, a_t, sig_t, lam_t = self.coefs(t)
        h = lam_t - lam_p0
        r0 = (lam_p0 - lam_p1) / h
        d1 = _lin([(1.0 / r0, _diff(ms[-1], ms[-2]))])
        if self.predict_x0:
            c = a_t * (ieee_exp(-h) - 1.0)
            return _lin([(sig_t / sig_p0, x), (-c, ms[-1]), (-0.5 * c, d1)])
        c = sig_t * (ieee_exp(h) - 1.0)
        return _lin([(ieee_exp(la_t - la_p0), x), (-c, ms[-1]), (-0.5 * c, d1)])

    def multistep_third(self, x: State, ts: list[Tensor], ms: list[State], t: Tensor) -> State:
        """From ``ts[-1]`` with a three-point history (correct shapes for both modalities)."""
        _, _, _, lam_p2 = self.coefs(ts[-3])
        _, _, _, lam_p1 = self.coefs(ts[-2])
        la_p0, _, sig_p0, lam_p0 = self.coefs(ts[-1])
        la_t, a_t, sig_t, lam_t = self.coefs(t)
        h = lam_t - lam_p0
        r0, r1 = (lam_p0 - lam_p1) / h, (lam_p1 - lam_p2) / h
        d1_0 = _lin([(1.0 / r0, _diff(ms[-1], ms[-2]))])
        d1_1 = _lin([(1.0 / r1, _diff(ms[-2], ms[-3]))])
        d1 = _lin([(1.0, d1_0), (r0 / (r0 + r1), _diff(d1_0, d1_1))])
        d2 = _lin([(1.0 / (r0 + r1), _diff(d1_0, d1_1))])
        if self.predict_x0:
            e = ieee_exp(-h) - 1.0
            return _lin([(sig_t / sig_p0, x), (-(a_t * e), ms[-1]), (a_t * (e / h + 1.0), d1),
                         (-(a_t * ((e + h) / h**2 - 0.5)), d2)])
        e = ieee_exp(h) - 1.0
        return _lin([(ieee_exp(la_t - la_p0), x), (-(sig_t * e), ms[-1]),
                     (-(sig_t * (e / h - 1.0)), d1), (-(sig_t * ((e - h) / h**2 - 0.5)), d2)])


def _diff(a: State, b: State) -> State:
    return tmap(lambda u, v: u - v, a, b)
