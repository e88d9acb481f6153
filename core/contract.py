"""The job contract shared by the gateway and the worker (pydantic only; no torch).

:class:`JobSpec` is what the gateway stores and the worker reads; :class:`JobView` is what
``GET /jobs/{id}`` answers. The sampler settings a spec carries are :mod:`core.sampling`'s.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import Field

from core.sampling import Frozen, Mode, Preset, SamplerParams, SuperResolutionParams


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    def is_terminal(self) -> bool:
        """True once the job will never change again."""
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.canceled)


class Progress(Frozen):
    """Where a job is (``worker.progress`` says how the worker computes it)."""

    stage: str | None = Field(None, description=(
        "queued, starting (claimed by a worker), fetch, decode, base, sr, mux, upload, done, "
        "canceled"))
    step: int = Field(0, description=(
        "sampler steps done in this stage: base counts sampler.steps; sr counts "
        "super_resolution.steps once per chunk of frames the SR network runs "
        "(MMD_SR_MAX_BATCH_FRAMES); 0 in the other stages"))
    total: int = Field(0, description=(
        "sampler steps of this stage: base = sampler.steps (adaptive DPM-Solver: a running "
        "estimate); sr = super_resolution.steps x frame chunks; 0 in the other stages"))
    fraction: float = Field(0.0, ge=0.0, le=1.0, description=(
        "of the whole job's expected compute: base and sr weighted by network evaluations x "
        "FLOPs per evaluation (SR dominates: ~93 % of a default joint job at the official "
        "size); held during the short stages"))


class JobError(Frozen):
    code: str
    message: str


class SampleFile(Frozen):
    url: str
    bytes: int
    sha256: str


class JobResult(Frozen):
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


class JobSpec(Frozen):
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


class JobView(Frozen):
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
