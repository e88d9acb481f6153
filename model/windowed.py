"""Windowed conditional generation: video-to-audio and audio-to-video over a whole clip.

The clip is covered by the overlapping model windows of :func:`model.windows.plan_windows`.
Two ways to make consecutive windows agree where they overlap (``method``):

* ``"autoregressive"``: windows run one after the other; window ``k`` is sampled by the
  masked conditional sampler (:mod:`model.masked`) with its condition fully given and the first
  ``context_fraction`` of its overlap with what is already generated given as well; over the rest
  of the overlap its output is crossfaded (raised cosine) into the previous windows' output.
  ``context_fraction=0`` is the ablation "independent windows, crossfaded over the overlap".
* ``"fused"`` (MultiDiffusion): one whole-clip state; every network evaluation runs the
  conditional denoiser of :mod:`model.conditional` on every window (``max_batch`` windows per
  network call) and fuses the windows' noise predictions with the crossfade weights of
  :func:`model.windows.crossfade_weights` (the crossfade where windows join). Fixed-step fast
  samplers only (the official DDPM loop's gradient step would back-propagate through every
  window at once; adaptive DPM-Solver picks its steps from the whole batch).

Decision: ``fused`` for the fixed-step fast samplers (``generate_whole_clip(method="auto")``),
``autoregressive`` where fused cannot run (the DDPM loop, adaptive DPM-Solver). Measured with
``bench/windows.py`` (6 windows of 8 frames / 2048 samples, overlap 2 frames, DPM-Solver 20 steps
order 3, gradient guidance 3.0, 8 seeds; ``--preset smooth``: tests/model/smooth_standin.py, a
Gaussian-process stand-in with structure in time that sees one window, correlation lengths
(frames, samples) as given). ``agree``: RMS(window k - window k-1) / RMS(clip)
over the half of each overlap no window is given (fused: the windows' clean predictions at the
last evaluation); ``seam``: mean |jump| of the audio envelope (dB, blocks of 1/16 window) or of
the video frame difference at the joints / inside windows (1 = as smooth as inside); ``dB``:
level (audio RMS, video contrast) at the joints minus inside::

    stand-in ell      direction  independent       AR 0.5            AR 1         fused
                                 agree seam   dB   agree seam   dB   seam   dB   agree seam   dB
    (1.5, 24)         V2A        1.40  0.96 -1.24  1.34  0.96 -0.56  0.93 -0.05  0.017 0.97 -0.21
    (1.5, 24)         A2V        1.69  1.23 -0.84  1.22  1.20 -0.25  1.22 +1.39  0.013 0.95 -0.14
    (3, 128)          V2A        1.48  1.05 -1.24  1.30  1.01 -0.49  1.08 +0.10  0.033 1.09 -0.50
    (3, 128)          A2V        1.68  1.85 -0.05  0.63  1.49 +1.05  1.17 +1.98  0.096 0.89 +0.19
    tiny golden U-Net V2A (*)    1.45  1.13 -1.28  1.44  1.02 -1.07  1.05 -0.35  0.000 1.00 -0.80
    tiny golden U-Net A2V (*)    1.42  0.91 -1.28  1.40  0.90 -1.82  0.98 -0.30  0.000 1.00 -0.22

(*) random re-initialised weights (outputs of RMS ~180, no meaningful content), DPM-Solver 10
steps order 2, seed 0.

Why: (1) agreement -- the fused windows agree where they overlap (0.01-0.1) while an
autoregressive window given half its overlap is almost as far from its neighbour over the other
half as an independent window (0.6-1.4): the given context reaches about one correlation length
into the window, so its crossfade still mixes two different signals; (2) seams -- fused joints
are as smooth as the inside of windows for video (0.89-0.95 vs 1.17-1.49 for AR, 1.23-1.85
independent) and within 0.5 dB of the inside level on the stand-ins (-0.2 / -0.8 dB on the
random U-Net, where AR 0.5 / independent dip 1.1-1.8 / 1.3 dB), while AR with the whole
overlap given (no crossfade) puts +1.4 to +2.0 dB of contrast on video joints and crossfading
windows (independent, AR 0.5) dips audio by 0.5-1.3 dB; audio envelope jumps are ~1 for every
method; (3) cost -- the same NFE per window, but fused windows share network calls (up to
``max_batch`` windows per call) and run in parallel, AR windows strictly one after another.
Caveats: the stand-ins are unimodal, so averaging noise predictions is close to exact; a trained
model whose neighbouring windows want different content may blur overlaps under fusion (re-check
with the demo model: ``bench/windows.py --preset <demo>``). With a 4-frame overlap the ranking of
agreement holds (fused 0.03-0.06 vs AR 0.98-1.41) but the "inside" reference shrinks to the clip
ends, so its seam figures are not comparable.

Randomness (one seed reproduces the clip): window 0 draws exactly what today's pipeline draws
(x_T from ``seed``, shifts from ``derive_seed(seed, "window-shifts")``, sampler noise from
``derive_seed(seed, "base-sampler")``), window ``k >= 1`` from ``derive_seed(seed,
f"window-{k}:...")``; so a one-window clip equals today's video-to-audio / audio-to-video.
Fused: the clip's x_T takes each stretch from the first window covering it; sampler noise (DDIM
eta > 0) is drawn over the whole clip from window 0's sampler seed.
Progress: ``progress("base", done, windows * steps)`` after every step (fused: also after every
batch of windows within a step); a ``SamplingCancelled`` raised by it stops the run there
(nothing else is computed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import torch
from torch import Tensor

from model.conditional import Direction, Guidance, conditional_denoiser, modalities
from model.denoiser import Prediction, joint_denoiser
from model.masked import sample_masked
from model.pipeline_noise import cpu_generator, cpu_noise, derive_seed
from model.prompted import PromptGuidance
from model.samplers.api import run_spec, start_coefficients
from model.samplers.common import NoiseFn
from model.samplers.ddim import step_runs
from model.samplers.dpm_methods import singlestep_orders
from model.samplers.spec import SamplerSpec
from model.state import AV, State
from model.windows import WindowPlan, crossfade_weights

Method = Literal["autoregressive", "fused"]
Progress = Callable[[str, int, int], None]
WindowNet = Callable[[Tensor, Tensor, Tensor, Sequence[torch.Generator]], tuple[Tensor, Tensor]]
"""``net(video [n*B,F,C,H,W], audio [n*B,Ca,L], t [n*B], generators)`` -> eps ``(video, audio)``
for ``n`` windows of ``B`` rows each (window-major); ``generators[i]`` draws window ``i``'s random
cross-attention shifts."""


@dataclass(frozen=True)
class WindowSeeds:
    noise: int
    shifts: int
    sampler: int


def window_seeds(seed: int, k: int) -> WindowSeeds:
    """Seeds of window ``k`` (window 0 = today's single-window seeds)."""
    if k == 0:
        return WindowSeeds(seed, derive_seed(seed, "window-shifts"),
                           derive_seed(seed, "base-sampler"))
    return WindowSeeds(*(derive_seed(seed, f"window-{k}:{p}")
                         for p in ("x_T", "window-shifts", "base-sampler")))


@dataclass
class _Counter:
    """Counts network calls and window evaluations (forward / with a backward pass)."""

    net: WindowNet
    rows: int
    calls: int = 0
    windows: int = 0
    backward: int = 0

    def __call__(self, v: Tensor, a: Tensor, t: Tensor,
                 gens: Sequence[torch.Generator]) -> tuple[Tensor, Tensor]:
        self.calls += 1
        self.windows += v.shape[0] // self.rows
        if torch.is_grad_enabled() and (v.requires_grad or a.requires_grad):
            self.backward += v.shape[0] // self.rows
        return self.net(v, a, t, gens)


@dataclass(frozen=True)
class WindowedOutput:
    """``video [B, frames, C, H, W]``, ``audio [B, C, samples]`` over the plan's span (the
    condition modality is the condition itself). ``nfe``: window evaluations of the network
    (``forward``, ``backward``: with a guidance backward pass, ``calls``: network calls).
    ``pieces``: each window's generated modality before joining, or (fused) its clean
    prediction at the last network evaluation; for measurements."""

    video: Tensor
    audio: Tensor
    windows: int
    nfe: dict[str, int]
    pieces: tuple[Tensor, ...] = field(default=(), repr=False)


def _noise(seed: int) -> NoiseFn:
    """The pipeline's CPU sampler noise (:func:`model.pipeline_noise.cpu_noise`), typed."""
    return cast(NoiseFn, cpu_noise(cpu_generator(seed)))


def _evals_per_step(spec: SamplerSpec) -> list[int]:
    """Network evaluations in each sampler step (callback) of a fixed-step fast sampler."""
    if spec.is_dpm and spec.method == "singlestep":
        return singlestep_orders(spec.steps, spec.order)
    if spec.name == "ddim":
        return step_runs(spec.steps, spec.resample)
    return [1] * spec.steps


def _window_x_t(plan: WindowPlan, rows: int, video_shape: Sequence[int],
                audio_shape: Sequence[int], seed: int, k: int) -> AV:
    g = cpu_generator(window_seeds(seed, k).noise)
    return AV(torch.randn((rows, *video_shape), generator=g),
              torch.randn((rows, *audio_shape), generator=g))


def _slice(x: Tensor, modality: str, start: int, length: int) -> Tensor:
    """``length`` steps of ``x`` from ``start`` along time; past the end the last frame is
    repeated (video) or silence appended (audio): only a padded single window goes there."""
    dim = 1 if modality == "video" else 2
    part = x.narrow(dim, start, min(length, x.shape[dim] - start))
    missing = length - part.shape[dim]
    if missing <= 0:
        return part
    if modality == "video":
        pad = part.narrow(1, part.shape[1] - 1, 1).expand(-1, missing, -1, -1, -1)
    else:
        pad = torch.zeros((*part.shape[:2], missing), dtype=part.dtype, device=part.device)
    return torch.cat([part, pad], dim=dim)


def _ramp(n: int, like: Tensor, dim: int) -> Tensor:
    i = torch.arange(n, dtype=torch.float64)
    r = (0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / n)).to(like.dtype).to(like.device)
    shape = [1] * like.dim()
    shape[dim] = n
    return r.reshape(shape)


def _span(plan: WindowPlan, modality: str, k: int) -> tuple[int, int, int]:
    """(start, end, previous end) of window ``k`` along ``modality``'s time axis (clip units)."""
    w = plan.windows[k]
    if modality == "video":
        return w.frame_start, w.frame_start + plan.window_frames, w.frame_start + w.overlap_frames
    return w.sample_start, w.sample_start + plan.window_samples, w.sample_start + w.overlap_samples


def autoregressive(
    net: WindowNet, plan: WindowPlan, condition: Tensor, direction: Direction,
    spec: SamplerSpec, *, guidance: Guidance, scale: float, seed: int,
    context_fraction: float = 0.5, progress: Progress | None = None,
    video_shape: Sequence[int], audio_shape: Sequence[int], prediction: Prediction = "eps",
    prompt: PromptGuidance | None = None,
) -> WindowedOutput:
    """Windows one after the other (see module docstring). ``condition``: video
    ``[B, frames, C, H, W]`` or audio ``[B, C, samples]`` over the plan's span, in the network's
    domain (audio x ``audio_scale``). ``prediction``: what ``net`` returns, ``"eps"`` or
    ``"v"`` (``UNetConfig.prediction``; converted to eps as in the single-window samplers)."""
    if not 0 <= context_fraction <= 1:
        raise ValueError(f"context_fraction must be in [0, 1]; got {context_fraction}")
    c, g = modalities(direction)
    rows, device = condition.shape[0], condition.device
    counter = _Counter(net, rows)
    dim = 1 if g == "video" else 2
    window_len = plan.window_frames if g == "video" else plan.window_samples
    total_len = plan.frames if g == "video" else plan.samples
    clip_shape = [rows, *(video_shape if g == "video" else audio_shape)]
    clip_shape[dim] = total_len
    clip = torch.zeros(clip_shape, dtype=condition.dtype, device=device)
    gen_mask_shape = [1, window_len, 1, 1, 1] if g == "video" else [1, 1, window_len]
    cond_mask = (torch.ones((rows, plan.window_frames, 1, 1, 1), dtype=torch.bool, device=device)
                 if c == "video" else
                 torch.ones((rows, 1, plan.window_samples), dtype=torch.bool, device=device))
    pieces = []
    for k, w in enumerate(plan.windows):
        start, end, prev_end = _span(plan, g, k)
        c_start, c_end, _ = _span(plan, c, k)
        cond_w = _slice(condition, c, c_start, c_end - c_start)
        ctx_f = math.ceil(w.overlap_frames * context_fraction)  # given part of the overlap
        ctx = ctx_f if g == "video" else plan.sample_of(w.frame_start + ctx_f) - w.sample_start
        x_T = _window_x_t(plan, rows, video_shape, audio_shape, seed, k)
        x_T = AV(x_T.video.to(device), x_T.audio.to(device))
        given = (torch.arange(window_len, device=device) < ctx).reshape(gen_mask_shape)
        gen_mask = given.expand(rows, *gen_mask_shape[1:])
        gen_known = _slice(clip, g, start, window_len)
        known = AV(cond_w, gen_known) if c == "video" else AV(gen_known, cond_w)
        mask = AV(cond_mask, gen_mask) if c == "video" else AV(gen_mask, cond_mask)
        shifts = cpu_generator(window_seeds(seed, k).shifts)

        def eps(v: Tensor, a: Tensor, t: Tensor, _g: torch.Generator = shifts
                ) -> tuple[Tensor, Tensor]:
            return counter(v, a, t, [_g])

        def callback(step: int, steps: int, state: State, _k: int = k) -> None:
            if progress is not None:
                progress("base", _k * steps + step, plan.count * steps)

        out = sample_masked(eps, x_T, spec, known=known, mask=mask, guidance=guidance,
                            scale=scale, callback=callback,
                            noise_fn=_noise(window_seeds(seed, k).sampler),
                            prediction=prediction, prompt=prompt)
        new = getattr(out, g)
        pieces.append(new)
        keep = min(end, total_len) - start
        new = new.narrow(dim, 0, keep)
        if k == 0:
            clip.narrow(dim, 0, keep).copy_(new)
            continue
        a, b = start + ctx, prev_end  # crossfade region (clip units); before a: given, equal
        if b > a:
            r = _ramp(b - a, new, dim)
            old = clip.narrow(dim, a, b - a)
            old.copy_(old * (1 - r) + new.narrow(dim, a - start, b - a) * r)
        clip.narrow(dim, b, start + keep - b).copy_(new.narrow(dim, b - start, start + keep - b))
    video, audio = (condition, clip) if c == "video" else (clip, condition)
    return WindowedOutput(video, audio, plan.count, {
        "forward": counter.windows, "backward": counter.backward, "calls": counter.calls},
        tuple(pieces))


def fused(
    net: WindowNet, plan: WindowPlan, condition: Tensor, direction: Direction,
    spec: SamplerSpec, *, guidance: Guidance, scale: float, seed: int, max_batch: int,
    progress: Progress | None = None, video_shape: Sequence[int],
    audio_shape: Sequence[int], prediction: Prediction = "eps",
    prompt: PromptGuidance | None = None,
) -> WindowedOutput:
    """All windows denoised together, noise predictions fused at every evaluation (see module
    docstring). ``condition``, ``prediction`` and ``prompt`` (each window's clean estimate is
    scored, so every window is steered) as for :func:`autoregressive`; the plan has >= 2
    windows."""
    if spec.name == "ddpm" or (spec.method == "adaptive" and spec.is_dpm):
        raise ValueError("method='fused' runs the fixed-step fast samplers only (ddim, "
                         "dpm_solver(++) singlestep or multistep); use "
                         "method='autoregressive' for the DDPM loop or adaptive DPM-Solver")
    if plan.count < 2 or any(w.pad_frames for w in plan.windows):
        raise ValueError("method='fused' needs a plan of >= 2 full windows")
    c, g = modalities(direction)
    rows = condition.shape[0]
    counter = _Counter(net, rows)
    per_call = max(1, max_batch // rows)
    device = condition.device
    x_T = AV(torch.empty((rows, plan.frames, *video_shape[1:])),
             torch.empty((rows, audio_shape[0], plan.samples)))
    for k in range(plan.count):  # window k's noise where no earlier window drew any
        wx = _window_x_t(plan, rows, video_shape, audio_shape, seed, k)
        for m in ("video", "audio"):
            start, end, prev_end = _span(plan, m, k)
            dim = 1 if m == "video" else 2
            begin = 0 if k == 0 else prev_end
            getattr(x_T, m).narrow(dim, begin, end - begin).copy_(
                getattr(wx, m).narrow(dim, begin - start, end - begin))
    x_T = AV(x_T.video.to(device), x_T.audio.to(device))
    z_c = getattr(x_T, c)
    weights = {m: [w.to(device) for w in crossfade_weights(plan, m)] for m in ("video", "audio")}
    shift_gens = [cpu_generator(window_seeds(seed, k).shifts) for k in range(plan.count)]
    last_x0: list[Tensor] = [torch.empty(0)] * plan.count
    evals = _evals_per_step(spec)
    tick = {"step": 0, "eval": 0}  # sampler steps done, evaluations done in the current step
    n_win = plan.count

    def heartbeat(windows_done: int) -> None:
        """Progress within a step after each batch (so a cancel lands within one batch)."""
        if progress is None:
            return
        j = min(tick["step"], len(evals) - 1)
        within = (tick["eval"] * n_win + windows_done) // evals[j]
        progress("base", j * n_win + min(n_win - 1, within), len(evals) * n_win)

    def denoise(x: State, t_model: Tensor, alpha: Tensor, sigma: Tensor
                ) -> tuple[State, State | None]:
        assert isinstance(x, AV)
        acc = {m: torch.zeros_like(getattr(x, m), dtype=torch.float64) for m in ("video", "audio")}
        norm = {m: torch.zeros(getattr(x, m).shape[1 if m == "video" else 2],
                               dtype=torch.float64, device=device) for m in ("video", "audio")}
        for b0 in range(0, plan.count, per_call):
            ks = list(range(b0, min(plan.count, b0 + per_call)))
            spans = {m: [_span(plan, m, k) for k in ks] for m in ("video", "audio")}
            cut = {m: [getattr(x, m).narrow(1 if m == "video" else 2, s, e - s)
                       for s, e, _ in spans[m]] for m in ("video", "audio")}
            xs = AV(torch.cat(cut["video"]), torch.cat(cut["audio"]))
            cdim = 1 if c == "video" else 2
            cond = torch.cat([condition.narrow(cdim, s, e - s) for s, e, _ in spans[c]])
            zc = torch.cat([z_c.narrow(cdim, s, e - s) for s, e, _ in spans[c]])
            gens = [shift_gens[k] for k in ks]

            def eps_fn(v: Tensor, a: Tensor, t: Tensor, _gens: list[torch.Generator] = gens
                       ) -> tuple[Tensor, Tensor]:
                return counter(v, a, t, _gens)

            inner = conditional_denoiser(joint_denoiser(eps_fn, prediction), condition=cond,
                                         z_c=zc, direction=direction, guidance=guidance,
                                         scale=scale, prompt=prompt)
            n = len(ks)
            eps, _ = inner(xs, t_model.repeat(n), alpha.repeat(n), sigma.repeat(n))
            assert isinstance(eps, AV)
            for m in ("video", "audio"):
                dim = 1 if m == "video" else 2
                for i, (k, (s, e, _)) in enumerate(zip(ks, spans[m], strict=False)):
                    part = getattr(eps, m)[i * rows:(i + 1) * rows]
                    wt = weights[m][k]
                    view = [1] * part.dim()
                    view[dim] = wt.shape[0]
                    acc[m].narrow(dim, s, e - s).add_(part.double() * wt.reshape(view))
                    norm[m][s:e] += wt
                    if m == g:
                        xg = cut[m][i]
                        a_, s_ = alpha.reshape(-1, *[1] * (xg.dim() - 1)), sigma.reshape(
                            -1, *[1] * (xg.dim() - 1))
                        last_x0[k] = (xg - s_ * part) / a_
            heartbeat(ks[-1] + 1)
        tick["eval"] += 1
        out = []
        for m in ("video", "audio"):
            dim = 1 if m == "video" else 2
            view = [1] * acc[m].dim()
            view[dim] = norm[m].shape[0]
            out.append((acc[m] / norm[m].reshape(view)).to(getattr(x, m).dtype))
        return AV(*out), None

    a0, s0 = start_coefficients(spec)
    x_start = x_T.replace(c, a0 * condition + s0 * z_c)

    def callback(step: int, steps: int, state: State) -> None:
        tick["step"], tick["eval"] = step, 0
        if progress is not None:
            progress("base", step * n_win, steps * n_win)

    with torch.no_grad():
        out = run_spec(denoise, x_start, spec, callback=callback,
                       noise_fn=_noise(window_seeds(seed, 0).sampler))
    assert isinstance(out, AV)
    out = out.replace(c, condition)
    return WindowedOutput(out.video, out.audio, plan.count, {
        "forward": counter.windows, "backward": counter.backward, "calls": counter.calls},
        tuple(x.detach() for x in last_x0))
