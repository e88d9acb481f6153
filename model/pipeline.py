"""One generation: base audio-video sampling -> per-frame super-resolution -> uint8 frames + audio.

>>> models = load_models("tiny", preset="tiny")            # model/registry.py
>>> result = generate(GenerationRequest(seed=1), models)
>>> result.frames.shape, result.audio.shape                 # (1, 8, 64, 64, 3), (1, 2048)

Randomness (SAMPLING.md §6-§8; everything derives from ``request.seed``, all drawn on the CPU and
then moved to the device, so one seed gives the same sample on any device up to float rounding):

* x_T: one CPU ``torch.Generator`` seeded with ``seed`` draws the video noise ``[N, F, C, H, W]``,
  then the audio noise ``[N, C, L]``, then (SR on) the SR noise: one ``[3, H', W']`` image per
  clip, repeated over its frames (official behaviour);
* the U-Net's random cross-attention window shifts: a second CPU generator seeded with
  ``derive_seed(seed, "window-shifts")``;
* sampler noise (DDPM / DDIM eta > 0 / conditional loops): ``derive_seed(seed, "base-sampler")``
  and ``derive_seed(seed, "sr-sampler")`` generators, drawn on the CPU.

The base sample stays float and unclamped until the end; SR sees it as ``low_res``, frames
flattened ``(n f)``, processed ``sr_chunk_frames`` frames at a time (bounded memory). Output:
``uint8 = trunc(clamp((x + 1) * 127.5, 0, 255))``, audio float32 clipped to ``[-1, 1]``.

This file runs requests (:func:`generate`, :func:`generate_batch`); the pieces live beside it:
``pipeline_types`` (request, models, result, :func:`validate`, :func:`batch_key`),
``pipeline_noise`` (derived seeds, CPU noise), ``pipeline_base`` (base sampling stage),
``pipeline_sr`` (super-resolution stage). Import the public names from here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from model.pipeline_base import base_stage, uint8_to_model
from model.pipeline_noise import cpu_generator, derive_seed
from model.pipeline_sr import sr_stage
from model.pipeline_types import (
    MODES,
    GenerationRequest,
    GenerationResult,
    LoadedModels,
    Mode,
    Progress,
    batch_key,
    validate,
)
from model.samplers import SamplingCancelled
from model.state import AV

__all__ = [
    "MODES", "GenerationRequest", "GenerationResult", "LoadedModels", "Mode",
    "Progress", "batch_key", "derive_seed", "generate", "generate_batch", "validate",
]


def generate(
    request: GenerationRequest, models: LoadedModels, *, progress: Progress | None = None
) -> GenerationResult:
    """Run one request. ``progress(stage, step, total)`` with stage ``"base"`` then ``"sr"``;
    a ``model.samplers.SamplingCancelled`` raised by it (or by anything inside) propagates."""
    result = generate_batch([request], models, progress_fns=[progress])[0]
    assert result is not None  # a lone canceled job raises
    return result


def generate_batch(
    requests: Sequence[GenerationRequest], models: LoadedModels, *,
    progress_fns: Sequence[Progress | None] | None = None,
) -> list[GenerationResult | None]:
    """Run independent requests with equal :func:`batch_key` as ONE batch through the networks;
    each keeps its own seed (x_T, window shifts, sampler noise from its own generators), so its
    result equals its lone :func:`generate` result up to float rounding of batched kernels.

    ``progress_fns[i]`` reports job ``i``; a ``SamplingCancelled`` it raises drops that job
    (it keeps being computed, its entry in the returned list is None, its progress function
    is not called again); once every job is dropped the run stops with ``SamplingCancelled``.
    """
    if not requests:
        raise ValueError("generate_batch needs at least one request")
    fns = list(progress_fns) if progress_fns is not None else [None] * len(requests)
    if len(fns) != len(requests):
        raise ValueError(f"got {len(fns)} progress_fns for {len(requests)} requests; pass one "
                         "per request (None for no progress)")
    for request in requests:
        validate(request, models)
    if len(requests) > 1:
        keys = {batch_key(r) for r in requests}
        if None in keys or len(keys) > 1:
            raise ValueError("these requests cannot share a batch: they need equal batch_key() "
                             "(joint mode, same samplers and SR settings, no adaptive DPM-Solver,"
                             " no stochastic SR sampler); run them one by one with generate()")
    request = requests[0]
    cfg = models.unet_cfg
    counts = [r.num_samples for r in requests]
    n = sum(counts)
    device = models.device
    mains = [cpu_generator(r.seed) for r in requests]
    x_T = AV(  # per job: its video noise, then its audio noise (as alone)
        torch.cat([torch.randn((c, *cfg.video_size), generator=g)
                   for c, g in zip(counts, mains, strict=True)]
                  ).to(device),
        torch.cat([torch.randn((c, *cfg.audio_size), generator=g)
                   for c, g in zip(counts, mains, strict=True)]
                  ).to(device),
    )
    live = _LiveJobs(fns)
    nfe: dict[str, int] = {}
    seconds: dict[str, float] = {}
    peak: dict[str, int] = {}  # CUDA only

    start = _now(device, reset_peak=True)
    video, audio, nfe["base"], nfe["base_backward"] = base_stage(
        requests, models, x_T, live.progress)
    seconds["base"] = _now(device, peak, "base") - start

    if request.mode == "video-to-audio":  # keep the original condition frames
        assert request.condition_video is not None
        video = uint8_to_model(request.condition_video, device).expand(n, -1, -1, -1, -1)
    frames_out: np.ndarray
    if request.super_resolution:
        start = _now(device, reset_peak=True)
        high, nfe["sr"], nfe["sr_calls"] = sr_stage(requests, models, video, mains, live.progress)
        seconds["sr"] = _now(device, peak, "sr") - start
        frames_out = _to_uint8_frames(high)
    elif request.mode == "video-to-audio":
        frames_out = np.broadcast_to(request.condition_video,
                                     (n, *request.condition_video.shape)).copy()
    else:
        frames_out = _to_uint8_frames(video)

    if request.mode == "audio-to-video":  # keep the original condition audio
        assert request.condition_audio is not None
        audio_out = np.broadcast_to(request.condition_audio,
                                    (n, request.condition_audio.shape[0])).copy()
    else:
        waveform = audio[:, 0].float() / cfg.audio_scale
        audio_out = waveform.clamp(-1, 1).cpu().numpy().astype(np.float32)
    results: list[GenerationResult | None] = []
    begin = 0
    for i, count in enumerate(counts):
        part = slice(begin, begin + count)
        begin += count
        results.append(None if i in live.dropped else GenerationResult(
            frames=frames_out[part].copy(), audio=audio_out[part].copy(), fps=cfg.fps,
            sample_rate=cfg.sample_rate, nfe=dict(nfe), stage_seconds=dict(seconds),
            random_weights=models.random_weights, batch_size=len(requests),
            peak_memory_bytes=dict(peak),
        ))
    return results


class _LiveJobs:
    """Fans one batch's progress out to each job's callback; drops a job whose callback raises
    ``SamplingCancelled``; raises it itself once every job is dropped."""

    def __init__(self, fns: Sequence[Progress | None]) -> None:
        self.fns = list(fns)
        self.dropped: set[int] = set()

    def progress(self, stage: str, step: int, total: int) -> None:
        for i, fn in enumerate(self.fns):
            if fn is None or i in self.dropped:
                continue
            try:
                fn(stage, step, total)
            except SamplingCancelled:
                if len(self.fns) == 1:
                    raise
                self.dropped.add(i)
        if len(self.dropped) == len(self.fns):
            raise SamplingCancelled(f"all {len(self.fns)} jobs of the batch were canceled")


def _now(device: torch.device, peak: dict[str, int] | None = None, stage: str = "",
         reset_peak: bool = False) -> float:
    """Seconds clock (synchronising CUDA); on CUDA also resets or records the peak memory."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        if reset_peak:
            torch.cuda.reset_peak_memory_stats(device)
        if peak is not None:
            peak[stage] = int(torch.cuda.max_memory_allocated(device))
    return time.perf_counter()


def _to_uint8_frames(video: Tensor) -> np.ndarray:
    """float ``[N, F, 3, H, W]`` -> ``uint8 [N, F, H, W, 3]`` (clamp, then truncate)."""
    x = ((video.float() + 1) * 127.5).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 1, 3, 4, 2).contiguous().cpu().numpy()
