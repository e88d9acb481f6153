"""The HTTP API's request and response bodies (pydantic only; no torch). What a job stores and
the worker reads is :mod:`core.contract`; the sampler fields are :mod:`core.sampling`'s."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl

from core.contract import JobStatus
from core.sampling import Frozen, Preset, SamplerRequest, SuperResolutionRequest

MAX_SEED = 2**53 - 1


class _CommonParams(Frozen):
    model: str | None = Field(None, description="configured model name; None = MMD_DEFAULT_MODEL")
    seed: int | None = Field(None, ge=0, le=MAX_SEED,
                             description="None = a random seed, recorded; at most 2^53 - 1 "
                             "(the largest integer every JSON client holds exactly)")
    num_samples: int = Field(1, ge=1, description="bounded by MMD_MAX_NUM_SAMPLES")
    preset: Preset | None = Field(
        None,
        description="sampler defaults: 'fast' (DPM-Solver++ 15 + SR DPM-Solver++ 12; conditional: "
        "DDIM 10 x 2, resampled) or 'official' (DPM-Solver 20 + SR DDIM 25; conditional: DDPM "
        "1000); None = MMD_SAMPLING_PRESET. Fields given in sampler / super_resolution override it",
    )
    sampler: SamplerRequest = SamplerRequest()
    super_resolution: SuperResolutionRequest = SuperResolutionRequest()
    webhook_url: HttpUrl | None = None
    prompt: str | None = Field(
        None,
        description="steer generation toward this text with the model's prompt aligner "
        "(MMD_MODELS.<name>.aligner; the demo model takes red, green or blue); at most "
        "MMD_PROMPT_MAX_CHARS characters; None = unguided")
    prompt_scale: float | None = Field(
        None, ge=0.0,
        description="strength of the prompt guidance, at most MMD_PROMPT_SCALE_MAX; only with "
        "a prompt; None = the aligner's default (the result records the one used)")


class _ConditionalParams(_CommonParams):
    guidance: Literal["replacement", "gradient"] = "gradient"
    guidance_scale: float | None = Field(
        None, ge=0.0,
        description="gradient-guidance weight (at most MMD_MAX_GUIDANCE_SCALE); None = the "
        "model's: 1100 for demo, 3.0 (the official scripts') for the official models")
    start_s: float = Field(0.0, ge=0.0, description="where the covered span (by default the "
                         "model's window: 1 s for demo, 1.6 s for the official models) starts in "
                         "the upload")
    duration_s: float | None = Field(
        None, gt=0.0,
        description="seconds of the upload to cover from start_s, with overlapping model windows "
        "(at most MMD_MAX_DURATION_S and MMD_MAX_WINDOWS windows, and no further than the upload's "
        "end); None = one model window")


class GenerateRequest(_ConditionalParams):
    """``POST /generate``: joint generation, or audio-to-video from ``upload_id`` /
    ``audio_url``."""

    mode: Literal["joint", "audio-to-video"] = "joint"
    upload_id: str | None = Field(None, description="id from POST /uploads (audio-to-video)")
    audio_url: HttpUrl | None = Field(None, description="http(s) URL of the audio (audio-to-video)")


class ConditionalRequest(_ConditionalParams):
    """Form fields (or a JSON ``params`` part) of ``POST /video-to-audio`` and
    ``/audio-to-video``."""


class JobUrls(Frozen):
    self: str
    result: str
    cancel: str


class SubmitResponse(Frozen):
    id: str
    status: JobStatus
    urls: JobUrls


class UploadResponse(Frozen):
    upload_id: str
    bytes: int
