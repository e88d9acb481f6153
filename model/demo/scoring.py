"""Score generation on the demo world: run the pipeline in one mode and measure its quality.

Used by ``bench/quality.py`` (the table), the learning curve of a training run and the quality
regression tests. Conditions are real clips of the world (``render_clip(seed)``) at the model's
geometry; video-to-audio is scored on (condition video, generated audio), audio-to-video on
(generated video, condition audio), joint on the generated pair.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from model.demo.quality import PromptShare, Quality, evaluate, frames_to_model, prompt_share
from model.demo.train import base_geometry
from model.demo.world import COLOUR_NAMES, render_clip
from model.pipeline import GenerationRequest, LoadedModels, generate, generate_batch
from model.samplers import SamplerSpec

__all__ = ["Score", "condition_clip", "models_from_training", "score"]

Mode = Literal["joint", "video-to-audio", "audio-to-video"]


@dataclass(frozen=True)
class Score:
    """Quality of ``n`` jobs of one mode and sampler setting, and wall seconds per job."""

    mode: str
    label: str
    n: int
    quality: Quality
    seconds_per_job: float
    # per colour name (the prompt's, and those of ``share_of``): share of events in it
    shares: dict[str, PromptShare] = field(default_factory=dict)
    nfe: dict[str, int] | None = None  # of the last job (base, base_backward, sr, ...)


def condition_clip(models: LoadedModels, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A real clip at the model's geometry: ``uint8 [F, H, W, 3]`` frames, ``float32 [T]``."""
    video, audio = render_clip(seed, base_geometry(models.unet_cfg))
    frames = ((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return frames.numpy(), audio[0].numpy().astype(np.float32)


def score(models: LoadedModels, mode: Mode, base: SamplerSpec, sr: SamplerSpec | None, *,
          n: int, seed: int = 1000, label: str = "", batched: bool = False,
          prompt: str | None = None, prompt_scale: float | None = None,
          share_of: Sequence[str] = ()) -> Score:
    """Run ``n`` jobs (seeds ``seed .. seed+n-1``; the condition clips use the same seeds) and
    score them. ``sr=None``: no super-resolution (scored at base size). ``batched``: joint jobs
    run as one batch (faster; seconds per job is then the batch time / n). ``prompt`` (a colour
    name; ``prompt_scale`` None = the aligner's default): prompt-guided jobs, scored also by the
    share of events in the prompt's colour; ``share_of``: colours whose share to measure too
    (e.g. of unguided jobs: the baseline)."""
    videos, audios = [], []
    start = time.perf_counter()
    common: dict[str, Any] = {"base_sampler": base, "super_resolution": sr is not None,
                              "sr_sampler": sr or SamplerSpec(name="ddim", steps=25),
                              "prompt": prompt, "prompt_scale": prompt_scale}
    if mode == "joint" and batched:
        reqs = [GenerationRequest(mode="joint", seed=seed + i, **common) for i in range(n)]
        results = [r for r in generate_batch(reqs, models) if r is not None]
    else:
        results = []
        for i in range(n):
            kw: dict[str, object] = {}
            if mode == "video-to-audio":
                kw["condition_video"] = condition_clip(models, seed + i)[0]
            elif mode == "audio-to-video":
                kw["condition_audio"] = condition_clip(models, seed + i)[1]
            results.append(generate(GenerationRequest(mode=mode, seed=seed + i, **common, **kw),
                                    models))
    seconds = (time.perf_counter() - start) / n
    for i, res in enumerate(results):
        video = frames_to_model(res.frames)
        audio = torch.from_numpy(res.audio)
        if mode == "video-to-audio":  # score against the condition at base size
            frames, _ = condition_clip(models, seed + i)
            video = frames_to_model(frames[None])
        elif mode == "audio-to-video":
            audio = torch.from_numpy(condition_clip(models, seed + i)[1][None])
        videos.append(video)
        audios.append(audio)
    q = evaluate(torch.cat(videos), torch.cat(audios))
    names = ([prompt.strip().lower()] if prompt else []) + [c.strip().lower() for c in share_of]
    shares = {c: prompt_share(torch.cat(videos), torch.cat(audios), COLOUR_NAMES.index(c))
              for c in names}
    return Score(mode=mode, label=label, n=n, quality=q, seconds_per_job=seconds, shares=shares,
                 nfe=dict(results[-1].nfe) if results else None)


def models_from_training(base: str, sr: str | None = None, **kwargs: object) -> LoadedModels:
    """LoadedModels with the EMA weights of demo training checkpoints (learning curves)."""
    from model.demo.weights_io import ema_state_dict
    from model.registry import load_models

    base_sd, _ = ema_state_dict(base, torch.float32)
    sr_sd = ema_state_dict(sr, torch.float32)[0] if sr is not None else None
    return load_models("demo", preset="demo", checkpoint=base_sd, sr_preset="demo_sr",
                       sr_checkpoint=sr_sd, sr=sr is not None, **kwargs)  # type: ignore[arg-type]
