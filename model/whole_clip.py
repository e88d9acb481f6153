"""What the worker calls for a whole-clip video-to-audio / audio-to-video job.

>>> out = generate_whole_clip(models, direction="video-to-audio", condition=frames,
...                           duration_s=10.0, fps=10, sample_rate=16000, seed=1)
>>> out.audio.shape, out.windows, out.nfe["forward"]     # (1, 160000), 8, 8 * 20

Torch only: the worker decodes the upload and resamples it to the model geometry (frame size,
fps, sample rate) first, and muxes the result; super-resolution of an audio-to-video result is
the worker's next stage (``video`` is the base-size sample, float, unclamped, as SR wants it).
See :mod:`model.windowed` for the method and its randomness, :mod:`model.windows` for the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from model.conditional import Direction, Guidance, modalities
from model.pipeline_types import LoadedModels
from model.prompted import make_guidance
from model.samplers.spec import SamplerSpec
from model.windowed import Method, Progress, WindowNet, autoregressive, fused
from model.windows import WindowPlan, plan_windows

DEFAULT_SAMPLER = SamplerSpec()  # the fast preset's base sampler (DPM-Solver 20 steps order 3)

__all__ = ["WholeClipResult", "default_overlap", "generate_whole_clip", "unet_window_net"]


@dataclass(frozen=True)
class WholeClipResult:
    """``video`` float ``[N, frames, 3, H, W]`` (audio-to-video: the generated base video, in
    model range, unclamped; video-to-audio: the condition), ``audio`` float32 ``[N, samples]``
    (video-to-audio: generated, divided by ``audio_scale`` and clipped to [-1, 1], as in the
    single-window pipeline; audio-to-video: the condition).
    ``windows``: model windows run; ``nfe``: window evaluations of the U-Net (``forward``,
    ``backward`` with gradient guidance) and batched network ``calls``. ``method``: the
    method that ran (``fused``, ``autoregressive`` or ``single-window``)."""

    video: Tensor
    audio: Tensor
    windows: int
    nfe: dict[str, int]
    plan: WindowPlan
    method: str


def default_overlap(window_frames: int) -> int:
    """Default least overlap: a quarter of the window (official: 4 of 16 frames = 0.4 s)."""
    return max(1, window_frames // 4)


def unet_window_net(models: LoadedModels) -> WindowNet:
    """The coupled U-Net as a :data:`~model.windowed.WindowNet`: exactly the network call of
    the pipeline's base stage for one window; several windows in one call draw their shifts
    from their own generators (``shift_groups``)."""
    c_v, c_a = models.unet_cfg.video_size[1], models.unet_cfg.audio_size[0]

    def net(video: Tensor, audio: Tensor, t: Tensor, generators: Sequence[torch.Generator]
            ) -> tuple[Tensor, Tensor]:
        if len(generators) == 1:
            out_v, out_a = models.unet(video, audio, t.to(torch.float32), generator=generators[0])
        else:
            rows = video.shape[0] // len(generators)
            out_v, out_a = models.unet(video, audio, t.to(torch.float32),
                                       shift_groups=[(g, rows) for g in generators])
        return out_v[:, :, :c_v].float(), out_a[:, :c_a].float()

    return net


def _condition_tensor(direction: Direction, condition: Tensor, plan: WindowPlan,
                      models: LoadedModels, num_samples: int) -> Tensor:
    """Model-range condition over the plan's span, batch ``num_samples``: video
    ``[N, frames, 3, H, W]`` from ``uint8 [>=frames, H, W, 3]``, audio ``[N, 1, samples]`` from
    float ``[>=samples]``."""
    _, channels, height, width = models.unet_cfg.video_size
    if direction == "video-to-audio":
        want = (height, width, channels)
        if condition.dtype != torch.uint8 or condition.dim() != 4 or tuple(
                condition.shape[1:]) != want:
            raise ValueError(f"video-to-audio needs the condition video as uint8 [frames, "
                             f"{height}, {width}, {channels}] at the model's frame size; got "
                             f"{condition.dtype} {tuple(condition.shape)}")
        if condition.shape[0] < plan.frames:
            raise ValueError(f"the condition video has {condition.shape[0]} frames; "
                             f"{plan.duration_s:.3f} s at {plan.fps} fps needs {plan.frames}")
        x = condition[:plan.frames].to(device=models.device, dtype=torch.float32)
        x = (x / 127.5 - 1.0).permute(0, 3, 1, 2).unsqueeze(0)
        return x.expand(num_samples, -1, -1, -1, -1).contiguous()
    if not torch.is_floating_point(condition) or condition.dim() != 1:
        raise ValueError(f"audio-to-video needs the condition audio as float [samples] at the "
                         f"model rate; got {condition.dtype} {tuple(condition.shape)}")
    if condition.shape[0] < plan.samples:
        raise ValueError(f"the condition audio has {condition.shape[0]} samples; "
                         f"{plan.duration_s:.3f} s at {plan.sample_rate} Hz needs {plan.samples}")
    a = condition[:plan.samples].to(device=models.device, dtype=torch.float32)
    if not bool(a.isfinite().all()) or float(a.abs().max()) > 1.0:
        raise ValueError("the condition audio must be finite and within [-1, 1]; clip or "
                         "normalise it")
    return a.reshape(1, 1, -1).expand(num_samples, -1, -1).contiguous()


def generate_whole_clip(
    models: LoadedModels, *, direction: Direction, condition: Tensor, duration_s: float,
    fps: float, sample_rate: int, seed: int, sampler: SamplerSpec = DEFAULT_SAMPLER,
    guidance: Guidance = "gradient", guidance_scale: float | None = None, num_samples: int = 1,
    overlap_frames: int | None = None, method: Method | Literal["auto"] = "auto",
    context_fraction: float = 0.5, max_batch: int = 8, max_windows: int | None = None,
    progress: Progress | None = None, net: WindowNet | None = None,
    prompt: str | None = None, prompt_scale: float | None = None,
) -> WholeClipResult:
    """Generate the other modality for ``duration_s`` seconds of ``condition``.

    :param condition: video-to-audio: ``uint8 [frames, H, W, 3]`` at the model's frame size and
        ``fps``; audio-to-video: float ``[samples]`` in [-1, 1] at ``sample_rate``. At least
        ``duration_s`` long (extra is ignored).
    :param fps, sample_rate: the model's media geometry (its window spans
        ``video_size[0] / fps == audio_size[1] / sample_rate`` seconds;
        ``core.windows.span_sample_rate`` gives the rate for the tiny test preset).

    The network runs as in the single-window pipeline: ``UNetConfig.prediction`` (eps or v)
    converted to eps for the samplers, audio conditions multiplied by ``audio_scale`` and
    generated audio divided by it.
    :param guidance_scale: None = the model's ``UNetConfig.guidance_scale``.
    :param overlap_frames: least window overlap; default :func:`default_overlap`.
    :param method: ``auto`` (default) = ``fused`` for the fixed-step fast samplers (ddim,
        dpm_solver(++) singlestep / multistep), ``autoregressive`` for the DDPM loop and adaptive
        DPM-Solver (see :mod:`model.windowed` for the measurements behind it). One window runs
        the masked sampler with the plain video-to-audio / audio-to-video masks (= today's
        result) whatever the method.
    :param max_batch: most rows (windows x samples) per network call (``method="fused"``;
        autoregressive windows run one at a time); a call holds at least one window, i.e. its
        ``num_samples`` rows, which are never split (as in today's pipeline).
    :param max_windows: refuse a plan with more windows (``MMD_MAX_WINDOWS``).
    :param progress: ``progress("base", done, windows * steps)``; raise
        ``model.samplers.SamplingCancelled`` in it to stop within one step.
    :param net: the network (default :func:`unet_window_net` of ``models``), for tests.
    :param prompt, prompt_scale: prompt guidance of the generated modality with
        ``models.aligner`` (``model/prompted.py``; scale None = the aligner's default), every
        window steered; fast samplers only (not the DDPM loop).
    """
    c, _ = modalities(direction)
    frames, channels, _, _ = models.unet_cfg.video_size
    audio_channels, length = models.unet_cfg.audio_size
    if channels != 3 or audio_channels != 1:
        raise ValueError(f"whole-clip generation needs RGB video and mono audio; the model has "
                         f"{channels} video and {audio_channels} audio channels")
    if num_samples < 1 or max_batch < 1:
        raise ValueError(f"num_samples and max_batch must be >= 1; got {num_samples}, {max_batch}")
    if method not in ("auto", "autoregressive", "fused"):
        raise ValueError(f"method must be 'auto', 'autoregressive' or 'fused'; got {method!r}")
    if method == "auto":
        fixed_step = sampler.name != "ddpm" and not (sampler.is_dpm and
                                                     sampler.method == "adaptive")
        method = "fused" if fixed_step else "autoregressive"
    overlap = default_overlap(frames) if overlap_frames is None else overlap_frames
    plan = plan_windows(duration_s, window_frames=frames, window_samples=length,
                        overlap_frames=overlap, fps=fps, sample_rate=sample_rate)
    if max_windows is not None and plan.count > max_windows:
        raise ValueError(f"{plan.duration_s:.2f} s needs {plan.count} model windows; the limit "
                         f"is {max_windows} (MMD_MAX_WINDOWS): ask for a shorter duration_s")
    cfg = models.unet_cfg
    guide = make_guidance(models.aligner, prompt, prompt_scale, cfg.audio_scale,
                          f"model {models.name!r}")
    if guide is not None and sampler.name == "ddpm":
        raise ValueError("a prompt on a whole clip needs a fast sampler (ddim, dpm_solver(++)); "
                         "the DDPM loop takes none")
    cond = _condition_tensor(direction, condition, plan, models, num_samples)
    # the network's domain, as in the single-window base stage: audio x audio_scale
    net_cond = cond * cfg.audio_scale if c == "audio" else cond
    network = net if net is not None else unet_window_net(models)
    scale = cfg.guidance_scale if guidance_scale is None else guidance_scale
    kw = {"guidance": guidance, "scale": scale, "seed": seed, "progress": progress,
          "video_shape": cfg.video_size, "audio_shape": cfg.audio_size,
          "prediction": cfg.prediction, "prompt": guide}
    if method == "fused" and plan.count > 1:
        out = fused(network, plan, net_cond, direction, sampler, max_batch=max_batch,
                    **kw)  # type: ignore[arg-type]
    else:
        out = autoregressive(network, plan, net_cond, direction, sampler,
                             context_fraction=context_fraction, **kw)  # type: ignore[arg-type]
    video = out.video.detach()
    if c == "video":  # back from the network's domain, as the single-window pipeline does
        audio = (out.audio.detach()[:, 0].float() / cfg.audio_scale).clamp(-1, 1)
    else:
        audio = cond[:, 0].float()
    used = "single-window" if plan.count == 1 else method
    return WholeClipResult(video, audio, out.windows, dict(out.nfe), plan, used)
