"""The pipeline's base stage: joint or conditional audio-video sampling with the coupled U-Net,
one batch of requests at a time (each with its own window-shift and sampler generators)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from model.pipeline_noise import cpu_generator, derive_seed, group_noise
from model.pipeline_types import GenerationRequest, LoadedModels, Progress
from model.prompted import PromptGuidance, make_guidance
from model.samplers import count_nfe, sample_conditional, sample_joint
from model.state import AV


def uint8_to_model(frames: np.ndarray, device: torch.device) -> Tensor:
    """``uint8 [F, H, W, 3]`` -> float ``[1, F, 3, H, W]`` in ``[-1, 1]``."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device=device, dtype=torch.float32)
    return (x / 127.5 - 1.0).permute(0, 3, 1, 2).unsqueeze(0)


def stage_callback(
    stage: str, progress: Progress | None
) -> Callable[[int, int, object], None] | None:
    if progress is None:
        return None
    return lambda step, total, state: progress(stage, step, total)


def prompt_guidance(request: GenerationRequest, models: LoadedModels) -> PromptGuidance | None:
    """The request's prompt guidance (``prompt_scale`` None = the aligner's ``default_scale``),
    or None without a prompt. Raises ValueError when the models have no aligner."""
    return make_guidance(models.aligner, request.prompt, request.prompt_scale,
                         models.unet_cfg.audio_scale, f"model {models.name!r}")


def base_stage(
    requests: Sequence[GenerationRequest], models: LoadedModels, x_T: AV, progress: Progress | None
) -> tuple[Tensor, Tensor, int, int]:
    """Base sampling: returns ``video [N, F, 3, H, W]``, ``audio [N, 1, L]`` (float, unclamped,
    in the network's domain: ``audio_scale`` x the waveform),
    forward and backward pass counts (backward: gradient-guided conditional or prompted jobs,
    one per network evaluation). Several requests: one batch (see :func:`generate_batch`)."""
    request = requests[0]
    cfg = models.unet_cfg
    shift_gens = [cpu_generator(derive_seed(r.seed, "window-shifts")) for r in requests]
    groups = [(g, r.num_samples) for g, r in zip(shift_gens, requests, strict=True)]
    c_v, c_a = cfg.video_size[1], cfg.audio_size[0]

    def eps(video: Tensor, audio: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        # The samplers pass integer timesteps (DPM-Solver: int32); the network takes float.
        if len(groups) == 1:
            out_v, out_a = models.unet(video, audio, t.to(torch.float32), generator=shift_gens[0])
        else:
            out_v, out_a = models.unet(video, audio, t.to(torch.float32), shift_groups=groups)
        # learn_sigma models also predict variance channels; the samplers use eps only.
        return out_v[:, :, :c_v].float(), out_a[:, :c_a].float()

    counter = count_nfe(eps)
    noise = group_noise(
        [cpu_generator(derive_seed(r.seed, "base-sampler")) for r in requests],
        [r.num_samples for r in requests],
    )
    callback = stage_callback("base", progress)
    prompt = prompt_guidance(request, models)
    if request.mode == "joint":
        with torch.no_grad():
            out = sample_joint(counter, x_T, request.base_sampler, callback=callback,
                               noise_fn=noise, prediction=cfg.prediction, prompt=prompt)
    else:
        if request.mode == "video-to-audio":
            assert request.condition_video is not None
            condition = uint8_to_model(request.condition_video, models.device)
            condition = condition.expand(request.num_samples, -1, -1, -1, -1)
        else:
            assert request.condition_audio is not None
            audio = torch.from_numpy(request.condition_audio).to(models.device, torch.float32)
            condition = (audio * cfg.audio_scale).reshape(1, 1, -1).expand(
                request.num_samples, -1, -1)
        scale = cfg.guidance_scale if request.guidance_scale is None else request.guidance_scale
        grad = request.guidance == "gradient" and scale > 0
        with torch.set_grad_enabled(grad):
            out = sample_conditional(
                counter, x_T, request.base_sampler, condition=condition.contiguous(),
                direction=request.mode, guidance=request.guidance, scale=scale,
                callback=callback, noise_fn=noise, prediction=cfg.prediction, prompt=prompt,
            )
    return out.video.detach(), out.audio.detach(), counter.forward, counter.backward
