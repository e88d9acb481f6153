"""A video-to-audio / audio-to-video job with ``duration_s`` (issue 12): the whole span of the
upload decoded, :func:`model.whole_clip.generate_whole_clip` over overlapping model windows,
then the result muxed.

A job runs this path when it has a ``duration_s`` that is not exactly one model window (to the
frame, :func:`is_whole_clip`); without one (or at one window) it runs today's single-window
pipeline unchanged.

- **decode**: video-to-audio: ``round(duration_s * fps)`` frames at the model's ``fps``
  (``UNetConfig.fps``: 10 officially, 8 for demo) and frame size (``uint8 [F, h, w, 3]``);
  audio-to-video: the span at the model's sample rate (:func:`model_rate`: 16 kHz officially,
  2048 Hz for demo) for the condition, and again at the MP4 rate
  (``worker.muxing.mp4_sample_rate`` of it, at least 16 kHz) mono for the result's soundtrack.
  ``MMD_MAX_DECODED_FRAMES`` / ``MMD_MAX_DECODED_SAMPLES`` and
  ``MMD_DECODE_TIMEOUT_S`` bound each decode as for one window.
- **generate**: windows x steps reported as the ``base`` stage's progress (cancel within one
  step), ``MMD_MAX_BATCH`` rows per network call, ``MMD_MAX_WINDOWS`` checked again against the
  plan of the loaded model. A ``prompt`` guides every window (``model/prompted.py``) on the
  fast samplers; with the DDPM loop it fails with ``invalid_request`` (the gateway refuses it
  at submit, ``core.prompts``).
- **results**: video-to-audio: the upload's own picture over the span, stream-copied when the
  span is the whole video, else re-encoded at its geometry and frame rate
  (:mod:`worker.media_span` says why), with the
  generated soundtrack resampled to the MP4 rate as the single-window muxer does (AAC);
  audio-to-video: the generated video (after SR, run ``MMD_SR_MAX_BATCH_FRAMES`` frames a call)
  over the span at the model's fps with the upload's own audio.
  Both streams last ``round(duration_s * fps) / fps`` seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.contract import InputMedia, JobSpec
from core.prompts import NO_PROMPT_WITH_DDPM_WINDOWS
from core.settings import Settings
from core.windows import clip_frames, span_sample_rate
from worker.errors import JobFailed


def is_whole_clip(spec: JobSpec, unet_cfg: Any) -> bool:
    """True when ``spec`` covers a span other than exactly one window of the loaded model."""
    return spec.mode != "joint" and spec.duration_s is not None and \
        clip_frames(spec.duration_s, int(unet_cfg.fps)) != int(unet_cfg.video_size[0])


def model_rate(unet_cfg: Any) -> int:
    """The audio rate whole clips of the model are planned at: its ``sample_rate`` (official:
    16 kHz, demo: 2048 Hz), or for the tiny test preset the rate its window spans at its fps
    (:func:`core.windows.span_sample_rate` says why)."""
    frames, samples = int(unet_cfg.video_size[0]), int(unet_cfg.audio_size[1])
    fps = int(unet_cfg.fps)
    rate = span_sample_rate(frames, samples, fps, int(unet_cfg.sample_rate))
    if rate is None:
        raise JobFailed("invalid_request", f"the model's window ({frames} frames, {samples} "
                        f"samples) has no whole sample rate at {fps} fps; it cannot run "
                        "duration_s jobs")
    return rate


def result_rate(unet_cfg: Any) -> int:
    """The soundtrack rate of a whole-clip result: the MP4 rate of :func:`model_rate` (the
    single-window muxer's ``worker.muxing.mp4_sample_rate``)."""
    from worker.muxing import mp4_sample_rate

    return mp4_sample_rate(model_rate(unet_cfg))


@dataclass(frozen=True)
class SpanInput:
    """The decoded span: ``condition`` (video-to-audio: ``uint8 [F, h, w, 3]``; audio-to-video:
    ``float32 [T]`` at :func:`model_rate`), how it was read, the source file, frames of the
    span at ``fps`` (the model's), and (audio-to-video) the upload's audio over the span at
    :func:`result_rate` for the result."""

    condition: np.ndarray
    media: InputMedia
    src: Path
    frames: int
    fps: int
    original_audio: np.ndarray | None = None

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def decode_span(spec: JobSpec, src: Path, unet_cfg: Any, settings: Settings) -> SpanInput:
    """Decode ``spec``'s span of ``src`` (see the module doc)."""
    from worker import media

    assert spec.duration_s is not None
    fps = int(unet_cfg.fps)
    frames = clip_frames(spec.duration_s, fps)
    max_bytes, timeout_s = settings.max_upload_bytes, settings.decode_timeout_s
    try:
        if spec.mode == "video-to-audio":
            video = media.decode_video_input(
                src, start_s=spec.start_s, num_frames=frames, fps=fps, size=unet_cfg.video_size[2],
                pad_end=True, max_frames=settings.max_decoded_frames,
                max_pixels=settings.max_video_width * settings.max_video_height,
                max_bytes=max_bytes, timeout_s=timeout_s)
            return SpanInput(video.frames, InputMedia(
                stream="video", padded_s=video.padded_s, width=video.width, height=video.height,
                rotation=video.orientation.rotation, mirrored=video.orientation.mirrored),
                src, frames, fps)
        rate, out_rate = model_rate(unet_cfg), result_rate(unet_cfg)
        cond = media.decode_audio_input(src, start_s=spec.start_s,
                                        num_samples=math.ceil(frames * rate / fps),
                                        sample_rate=rate, max_samples=settings.max_decoded_samples,
                                        max_bytes=max_bytes, timeout_s=timeout_s)
        own = cond if rate == out_rate else media.decode_audio_input(
            src, start_s=spec.start_s, num_samples=math.ceil(frames * out_rate / fps),
            sample_rate=out_rate, max_samples=settings.max_decoded_samples,
            max_bytes=max_bytes, timeout_s=timeout_s)
    except (media.MediaError, JobFailed):
        raise
    except Exception as exc:
        raise JobFailed("decode_failed", f"the {spec.mode.split('-')[0]} input could not be "
                        f"decoded ({type(exc).__name__}: {exc}); re-encode it (H.264 MP4 "
                        "or WAV)") from exc
    return SpanInput(cond.samples, InputMedia(stream="audio", padded_s=cond.padded_s,
                                              layout=cond.layout), src, frames, fps,
                     own.samples[:round(frames * out_rate / fps)])


@dataclass(frozen=True)
class WholeClipOutput:
    """A whole-clip job's generated media. ``frames``: audio-to-video ``uint8 [N, F, H, W, 3]``
    at ``fps`` (the model's; None for video-to-audio: the picture is the upload's); ``audio``:
    ``float32 [N, T]`` at ``sample_rate`` (:func:`result_rate`; video-to-audio: generated and
    resampled; audio-to-video: the upload's)."""

    mode: str
    frames: np.ndarray | None
    audio: np.ndarray
    span: SpanInput
    start_s: float
    windows: int
    nfe: dict[str, int]
    stage_seconds: dict[str, float]
    random_weights: bool
    fps: int
    sample_rate: int
    batch_size: int = 1
    peak_memory_bytes: dict[str, int] = field(default_factory=dict)


def run_whole_clip(spec: JobSpec, models: Any, span: SpanInput, settings: Settings,
                   progress: Any, sr_on: bool) -> WholeClipOutput:
    """Generate ``spec``'s span with ``models`` (``model.pipeline.LoadedModels``);
    ``progress(stage, step, total)`` as for the pipeline (it raises ``SamplingCancelled``)."""
    import torch

    from model.whole_clip import generate_whole_clip
    from worker.sampling import sampler_spec

    if spec.prompt is not None and spec.sampler.name == "ddpm":  # refused at submit too
        raise JobFailed("invalid_request", NO_PROMPT_WITH_DDPM_WINDOWS)
    rate, out_rate = model_rate(models.unet_cfg), result_rate(models.unet_cfg)
    assert spec.duration_s is not None
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    out = generate_whole_clip(
        models, direction=spec.mode,  # type: ignore[arg-type]
        condition=torch.from_numpy(np.ascontiguousarray(span.condition)),
        duration_s=span.duration_s, fps=span.fps, sample_rate=rate, seed=spec.seed,
        sampler=sampler_spec(spec.sampler), guidance=spec.guidance,
        guidance_scale=spec.guidance_scale, num_samples=spec.num_samples,
        prompt=spec.prompt, prompt_scale=spec.prompt_scale,
        max_batch=settings.max_batch * spec.num_samples, max_windows=settings.max_windows,
        progress=progress)
    seconds["base"] = time.perf_counter() - t0
    nfe = {"base": out.nfe.get("forward", 0), "base_backward": out.nfe.get("backward", 0),
           "base_calls": out.nfe.get("calls", 0)}
    frames: np.ndarray | None = None
    if spec.mode == "audio-to-video":
        video = out.video
        if sr_on:
            t0 = time.perf_counter()
            video, nfe["sr"], nfe["sr_calls"] = _super_resolve(spec, models, video, progress)
            seconds["sr"] = time.perf_counter() - t0
        frames = _to_uint8(video)
        assert span.original_audio is not None
        audio = np.broadcast_to(span.original_audio,
                                (spec.num_samples, span.original_audio.shape[0])).copy()
    else:
        audio = _resample(out.audio.cpu().numpy().astype(np.float32), rate, out_rate)
    return WholeClipOutput(mode=spec.mode, frames=frames, audio=audio, span=span,
                           start_s=spec.start_s, windows=out.windows, nfe=nfe,
                           stage_seconds=seconds, random_weights=bool(models.random_weights),
                           fps=span.fps, sample_rate=out_rate)


def _super_resolve(spec: JobSpec, models: Any, video: Any, progress: Any) -> tuple[Any, int, int]:
    """The pipeline's SR stage over every frame of the span (``MMD_SR_MAX_BATCH_FRAMES`` frames
    a call), the job's SR sampler and an SR seed derived from the job's seed."""
    from model.pipeline import GenerationRequest
    from model.pipeline_noise import cpu_generator, derive_seed
    from model.pipeline_sr import sr_stage
    from worker.sampling import sampler_spec

    request = GenerationRequest(
        mode="audio-to-video", seed=spec.seed, num_samples=spec.num_samples,
        super_resolution=True, sr_sampler=sampler_spec(spec.super_resolution.sampler_params()))
    main = cpu_generator(derive_seed(spec.seed, "whole-clip-sr"))
    return sr_stage([request], models, video, [main], progress)


def _to_uint8(video: Any) -> np.ndarray:
    """float ``[N, F, 3, H, W]`` in model range -> ``uint8 [N, F, H, W, 3]`` (the pipeline's
    conversion: clamp, then truncate)."""
    import torch

    x = ((video.float() + 1) * 127.5).clamp(0, 255).to(torch.uint8)
    out: np.ndarray = x.permute(0, 1, 3, 4, 2).contiguous().cpu().numpy()
    return out


def _resample(audio: np.ndarray, rate: int, out_rate: int) -> np.ndarray:
    """``float32 [N, T]`` at ``rate`` -> ``out_rate`` with the single-window muxer's resampler
    (``worker.muxing.resample``; the official models generate 16 kHz, the MP4 rate, directly)."""
    from worker.muxing import resample

    if rate == out_rate:
        return audio
    return np.stack([resample(row, rate, out_rate) for row in audio])


@dataclass(frozen=True)
class Muxed:
    """The result files and the media they hold."""

    paths: list[Path]
    width: int  # as displayed
    height: int
    fps: float  # exact (the upload's average rate for a video-to-audio span)
    duration_s: float
    video: Literal["generated", "copied", "reencoded"]  # ``JobResult.video``


def mux_whole_clip(gen: WholeClipOutput, tmp: Path, settings: Settings) -> Muxed:
    """One MP4 per sample under ``tmp`` (see the module doc)."""
    from worker import media
    from worker.media_span import reencode_span

    duration = gen.span.duration_s
    paths = [tmp / f"sample_{i}.mp4" for i in range(gen.audio.shape[0])]
    if gen.frames is not None:
        for path, frames, audio in zip(paths, gen.frames, gen.audio, strict=True):
            media.mux_mp4(path, frames, audio, fps=gen.fps, sample_rate=gen.sample_rate)
        return Muxed(paths, int(gen.frames.shape[3]), int(gen.frames.shape[2]), float(gen.fps),
                     duration, "generated")
    written = None
    for path, audio in zip(paths, gen.audio, strict=True):
        written = reencode_span(gen.span.src, path, start_s=gen.start_s, duration_s=duration,
                                audio=audio, sample_rate=gen.sample_rate,
                                max_frames=settings.max_decoded_frames,
                                timeout_s=settings.decode_timeout_s,
                                max_bytes=settings.max_upload_bytes)
    assert written is not None
    return Muxed(paths, written.width, written.height, float(written.fps), written.duration_s,
                 "copied" if written.copied else "reencoded")
