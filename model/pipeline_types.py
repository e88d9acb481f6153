"""The pipeline's request, models and result types, request validation and the batch key.

:class:`GenerationRequest` (what to generate), :class:`LoadedModels` (networks built once per
worker), :class:`GenerationResult` (``frames uint8 [N, F, H, W, 3]``, ``audio float32 [N, T]``),
:func:`validate` (does a request fit the loaded models) and :func:`batch_key` (which requests
may share one batch). Imported through :mod:`model.pipeline`, which re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from model.aligners.base import Aligner
from model.config import SRConfig, UNetConfig
from model.samplers import SamplerSpec

Mode = Literal["joint", "video-to-audio", "audio-to-video"]
MODES: tuple[str, ...] = ("joint", "video-to-audio", "audio-to-video")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """What to generate. Sizes come from the loaded models' configs (see :func:`validate`).

    ``condition_video``: ``uint8 [F, H, W, 3]`` at the model's frame size (video-to-audio).
    ``condition_audio``: ``float32 [T]`` at the model's ``sample_rate`` in ``[-1, 1]``, ``T`` =
    the model's audio length (audio-to-video). Frame rate and sample rate are the model
    preset's (``UNetConfig.fps`` / ``sample_rate``). Official settings are the defaults (base
    DPM-Solver 20 steps order 3, SR DDIM 25 steps, gradient guidance with the model's scale,
    ``UNetConfig.guidance_scale``: 3.0 for the official models, 1100 for demo).
    """

    mode: Mode = "joint"
    seed: int = 0
    num_samples: int = 1
    base_sampler: SamplerSpec = field(default_factory=SamplerSpec)
    super_resolution: bool = True
    sr_sampler: SamplerSpec = field(default_factory=lambda: SamplerSpec(name="ddim", steps=25))
    sr_chunk_frames: int = 16
    guidance: Literal["replacement", "gradient"] = "gradient"
    guidance_scale: float | None = None  # None = the model's UNetConfig.guidance_scale
    condition_video: np.ndarray | None = None
    condition_audio: np.ndarray | None = None
    # Prompt guidance (model/prompted.py): steer toward ``prompt`` with the loaded model's
    # aligner (LoadedModels.aligner); prompt_scale None = the aligner's default_scale.
    prompt: str | None = None
    prompt_scale: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {self.mode!r}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1; got {self.num_samples}")
        if self.sr_chunk_frames < 1:
            raise ValueError(f"sr_chunk_frames must be >= 1; got {self.sr_chunk_frames}")
        if self.guidance not in ("replacement", "gradient"):
            raise ValueError(f"guidance must be 'replacement' or 'gradient'; got {self.guidance!r}")
        if self.guidance_scale is not None and not self.guidance_scale >= 0:
            raise ValueError(f"guidance_scale must be >= 0; got {self.guidance_scale}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63); got {self.seed}")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("prompt must not be empty; leave it None for unguided generation")
        if self.prompt_scale is not None and not self.prompt_scale >= 0:
            raise ValueError(f"prompt_scale must be >= 0; got {self.prompt_scale}")


@dataclass
class LoadedModels:
    """Networks built once per worker by :func:`model.registry.load_models` (eval mode, on
    device)."""

    name: str
    unet: nn.Module
    unet_cfg: UNetConfig
    sr: nn.Module | None
    sr_cfg: SRConfig | None
    device: torch.device
    precision: str
    random_weights: bool
    # SR frames per network call chosen by the worker (MMD_SR_MAX_BATCH_FRAMES); None = the
    # request's sr_chunk_frames. Outputs do not depend on it beyond float rounding.
    sr_batch_frames: int | None = None
    # The prompt scorer (model.aligners.load_aligner), or None: prompts are then refused.
    aligner: Aligner | None = None


@dataclass(frozen=True, eq=False)
class GenerationResult:
    """``frames uint8 [N, F, H, W, 3]`` (base size, or SR size when SR ran) at ``fps``, ``audio
    float32 [N, T]`` at ``sample_rate`` (the model preset's ``UNetConfig.fps`` /
    ``sample_rate``). ``nfe``: ``base`` (U-Net forward passes), ``base_backward`` (backward
    passes: gradient-guided conditional and prompted jobs), ``sr`` (SR sampler steps per frame) and
    ``sr_calls`` (batched SR network calls over all chunks). ``stage_seconds``: ``base``, ``sr``."""

    frames: np.ndarray
    audio: np.ndarray
    fps: int
    sample_rate: int
    nfe: dict[str, int]
    stage_seconds: dict[str, float]
    random_weights: bool
    batch_size: int = 1  # jobs that ran together in this batch (generate_batch)
    # Peak CUDA memory allocated per stage (``base``, ``sr``) in bytes; empty on CPU.
    peak_memory_bytes: dict[str, int] = field(default_factory=dict)


def validate(request: GenerationRequest, models: LoadedModels) -> None:
    """Raise ValueError unless ``request`` fits ``models`` (condition shapes, SR availability)."""
    frames, channels, height, width = models.unet_cfg.video_size
    audio_channels, length = models.unet_cfg.audio_size
    if channels != 3 or audio_channels != 1:
        raise ValueError(
            f"the pipeline needs RGB video and mono audio; the model has {channels} video and "
            f"{audio_channels} audio channels"
        )
    if request.super_resolution and (models.sr is None or models.sr_cfg is None):
        raise ValueError(
            "super_resolution=True but no SR model is loaded; load it (load_models(..., sr=True)) "
            "or set super_resolution=False"
        )
    if request.prompt is not None:
        if models.aligner is None:
            raise ValueError(
                f"model {models.name!r} has no prompt aligner, so it cannot take a prompt; "
                "configure one for it or leave the prompt out"
            )
        models.aligner.check_prompt(request.prompt)
    cv, ca = request.condition_video, request.condition_audio
    if request.mode != "video-to-audio" and cv is not None:
        raise ValueError(
            f"condition_video is only used by mode='video-to-audio'; got mode={request.mode!r}"
        )
    if request.mode != "audio-to-video" and ca is not None:
        raise ValueError(
            f"condition_audio is only used by mode='audio-to-video'; got mode={request.mode!r}"
        )
    if request.mode == "video-to-audio":
        expected = (frames, height, width, 3)
        if not isinstance(cv, np.ndarray) or cv.dtype != np.uint8 or cv.shape != expected:
            got = (
                "None"
                if cv is None
                else f"{getattr(cv, 'dtype', type(cv).__name__)} {getattr(cv, 'shape', '')}"
            )
            raise ValueError(
                f"mode='video-to-audio' needs condition_video uint8 {list(expected)} "
                f"(F, H, W, RGB at the model size); got {got}"
            )
    if request.mode == "audio-to-video":
        if not isinstance(ca, np.ndarray) or ca.dtype != np.float32 or ca.shape != (length,):
            got = (
                "None"
                if ca is None
                else f"{getattr(ca, 'dtype', type(ca).__name__)} {getattr(ca, 'shape', '')}"
            )
            raise ValueError(
                f"mode='audio-to-video' needs condition_audio float32 [{length}] ({length} samples "
                f"at {models.unet_cfg.sample_rate} Hz); got {got}"
            )
        if not np.isfinite(ca).all() or np.abs(ca).max() > 1.0:
            raise ValueError(
                "condition_audio must be finite and within [-1, 1]; clip or normalise it"
            )


def batch_key(request: GenerationRequest) -> tuple[object, ...] | None:
    """Requests with equal keys can run as one batch (:func:`generate_batch`) and each get
    the result they get alone; None = this request only runs alone.

    Excluded: the conditional modes (the gradient-guided objective is a batch MEAN, so each
    sample's gradient depends on the batch; and each needs its own condition), adaptive
    DPM-Solver (its step size follows the MAX error over the batch), and a stochastic SR
    sampler (ddpm, ddim eta > 0: its noise is drawn per frame chunk, and chunks span jobs).
    A stochastic base sampler is fine: each job draws its own noise from its own generator.
    """
    if request.mode != "joint" or (
        request.base_sampler.method == "adaptive"
        and (request.base_sampler.name.startswith("dpm_solver"))
    ):
        return None
    sr = request.sr_sampler
    if request.super_resolution and (sr.name == "ddpm" or (sr.name == "ddim" and sr.eta > 0)):
        return None
    return (
        request.mode,
        request.base_sampler,
        request.super_resolution,
        request.sr_sampler if request.super_resolution else None,
        request.sr_chunk_frames,
        request.prompt,
        request.prompt_scale,
    )
