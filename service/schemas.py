"""The job contract shared by the gateway and the worker (pydantic only; no torch).

Request models validate what clients send; :class:`JobSpec` is what the gateway stores and the
worker reads; :class:`JobView` is what ``GET /jobs/{id}`` answers.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

Mode = Literal["joint", "video-to-audio", "audio-to-video"]
SamplerName = Literal["dpm_solver", "dpm_solver++", "ddim", "ddpm"]
Preset = Literal["fast", "official"]


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    def is_terminal(self) -> bool:
        """True once the job will never change again."""
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.canceled)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SamplerParams(_Frozen):
    """The base (64x64 video + audio) sampler a job runs (resolved: ``JobSpec.sampler``).
    Defaults: the official DPM-Solver 20 / order 3 (``preset: "official"`` for a joint job)."""

    name: SamplerName = "dpm_solver"
    steps: int = Field(20, ge=1, description="sampler steps (bounded by MMD_MAX_STEPS)")
    order: int = Field(3, ge=1, le=3)
    method: Literal["singlestep", "multistep", "adaptive"] = "singlestep"
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (0 = deterministic)")


class SuperResolutionParams(_Frozen):
    """The 64->256 video super-resolution stage a job runs (resolved)."""

    enabled: bool = True
    sampler: SamplerName = "ddim"
    steps: int = Field(25, ge=1, description="SR sampler steps (bounded by MMD_MAX_SR_STEPS)")


class SamplerRequest(_Frozen):
    """The base sampler a request asks for: each field given replaces the preset's; null or
    omitted fields come from the preset (see ``preset``)."""

    name: SamplerName | None = None
    steps: int | None = Field(None, ge=1, description="sampler steps (bounded by MMD_MAX_STEPS)")
    order: int | None = Field(None, ge=1, le=3)
    method: Literal["singlestep", "multistep", "adaptive"] | None = None
    eta: float | None = Field(None, ge=0.0, le=1.0, description="DDIM eta (0 = deterministic)")


class SuperResolutionRequest(_Frozen):
    """The super-resolution stage a request asks for (sampler and steps: null = the preset's)."""

    enabled: bool = True
    sampler: SamplerName | None = None
    steps: int | None = Field(None, ge=1,
                              description="SR sampler steps (bounded by MMD_MAX_SR_STEPS)")


class _CommonParams(_Frozen):
    model: str | None = Field(None, description="configured model name; None = MMD_DEFAULT_MODEL")
    seed: int | None = Field(None, ge=0, lt=2**63, description="None = a random seed, recorded")
    num_samples: int = Field(1, ge=1, description="bounded by MMD_MAX_NUM_SAMPLES")
    preset: Preset | None = Field(
        None, description="sampler defaults: 'fast' (DPM-Solver++ 15 + SR DPM-Solver++ 12; conditional: "
        "DPM-Solver 20) or 'official' (DPM-Solver 20 + SR DDIM 25; conditional: DDPM 1000); "
        "None = MMD_SAMPLING_PRESET. Fields given in sampler / super_resolution override it")
    sampler: SamplerRequest = SamplerRequest()
    super_resolution: SuperResolutionRequest = SuperResolutionRequest()
    webhook_url: HttpUrl | None = None


class _ConditionalParams(_CommonParams):
    guidance: Literal["replacement", "gradient"] = "gradient"
    guidance_scale: float = Field(3.0, ge=0.0, le=100.0)
    start_s: float = Field(0.0, ge=0.0, description="where the 1.6 s window starts in the upload")


class GenerateRequest(_ConditionalParams):
    """``POST /generate``: joint generation, or audio-to-video from ``upload_id`` / ``audio_url``."""

    mode: Literal["joint", "audio-to-video"] = "joint"
    upload_id: str | None = Field(None, description="id from POST /uploads (audio-to-video)")
    audio_url: HttpUrl | None = Field(None, description="http(s) URL of the audio (audio-to-video)")


class ConditionalRequest(_ConditionalParams):
    """Form fields (or a JSON ``params`` part) of ``POST /video-to-audio`` and ``/audio-to-video``."""


class Progress(_Frozen):
    stage: str | None = None  # queued, fetch, decode, base, sr, mux, upload, done
    step: int = 0
    total: int = 0
    fraction: float = Field(0.0, ge=0.0, le=1.0)


class JobError(_Frozen):
    code: str
    message: str


class SampleFile(_Frozen):
    url: str
    bytes: int
    sha256: str


class JobResult(_Frozen):
    url: str  # the first sample; GET /jobs/{id}/result?sample=i for the others
    content_type: str = "video/mp4"
    bytes: int
    duration_s: float
    sha256: str
    random_weights: bool
    model: str
    num_samples: int = 1
    width: int
    height: int
    fps: int
    sample_rate: int
    samples: list[SampleFile] = Field(default_factory=list)
    nfe: dict[str, int] = Field(default_factory=dict)
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    batch_size: int = 1  # jobs the worker ran together in one batch (MMD_MAX_BATCH)


class JobSpec(_Frozen):
    """What the gateway stores and enqueues; the worker's only input.

    ``input_key`` is the storage key of the upload (video-to-audio, audio-to-video) and
    ``input_url`` an http(s) URL the worker fetches instead (audio-to-video via ``audio_url``).
    """

    id: str
    mode: Mode
    model: str
    seed: int
    num_samples: int
    sampler: SamplerParams  # resolved: the preset's values with the request's fields on top
    super_resolution: SuperResolutionParams
    preset: Preset | None = None  # the preset it was resolved from (None: an older record)
    guidance: Literal["replacement", "gradient"] = "gradient"
    guidance_scale: float = 3.0
    start_s: float = 0.0
    input_key: str | None = None
    input_filename: str | None = None
    input_url: str | None = None
    webhook_url: str | None = None
    created_at: datetime


class JobUrls(_Frozen):
    self: str
    result: str
    cancel: str


class SubmitResponse(_Frozen):
    id: str
    status: JobStatus
    urls: JobUrls


class UploadResponse(_Frozen):
    upload_id: str
    bytes: int


class JobView(_Frozen):
    """``GET /jobs/{id}``."""

    id: str
    status: JobStatus
    progress: Progress
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    queue_position: int | None = None
    error: JobError | None = None
    result: JobResult | None = None
    request: JobSpec
