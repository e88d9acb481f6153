"""The job contract shared by the gateway and the worker (pydantic only; no torch).

:class:`JobSpec` is what the gateway stores and the worker reads; :class:`JobView` is what
``GET /jobs/{id}`` answers. The sampler settings a spec carries are :mod:`core.sampling`'s.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from core.sampling import Frozen, Mode, Preset, SamplerParams, SuperResolutionParams


class JobStatus(StrEnum):
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
        "sampler steps done in this stage: base counts sampler.steps (a duration_s job: "
        "windows x sampler.steps); sr counts "
        "super_resolution.steps once per chunk of frames the SR network runs "
        "(MMD_SR_MAX_BATCH_FRAMES); 0 in the other stages"))
    total: int = Field(0, description=(
        "sampler steps of this stage: base = sampler.steps (adaptive DPM-Solver: a running "
        "estimate); sr = super_resolution.steps x frame chunks; 0 in the other stages"))
    fraction: float = Field(0.0, ge=0.0, le=1.0, description=(
        "of the whole job's expected compute: base and sr weighted by network evaluations x "
        "FLOPs per evaluation (SR dominates: ~93 % of a default joint job at the official "
        "size); held during the short stages"))


# ``JobError.code`` of a failed job. Media and upload checks add their own codes
# (``core.media_probe.ERROR_CODES``, ``core.probe.UPLOAD_ERROR_CODES``).
ERROR_CODES: dict[str, str] = {
    "unknown_model": "the job names a model this worker does not load (MMD_MODELS)",
    "input_missing": "the upload is gone from storage",
    "no_input": "a conditional job with neither an upload nor an input URL",
    "unsafe_url": "audio_url resolves to a loopback / private address",
    "fetch_failed": "audio_url did not answer 200 with the file",
    "input_too_large": "audio_url serves more than MMD_MAX_UPLOAD_BYTES",
    "decode_failed": "the input could not be decoded",
    "invalid_request": "the pipeline refused the request's settings",
    "batch_too_large": "the batch does not fit MMD_BATCH_MEMORY_MB",
    "storage_error": "the result could not be written to storage",
    "timeout": "the job ran past MMD_JOB_TIMEOUT_S",
    "worker_lost": "the worker died and no retries are left",
    "internal": "anything else (a bug: the message says what)",
}


def result_url(job_id: str, sample: int = 0, base: str = "") -> str:
    """The URL of sample ``sample`` of job ``job_id``'s result MP4: a path (what the job record
    stores: the worker does not know the public address), or absolute under ``base``."""
    return f"{base.rstrip('/')}/jobs/{job_id}/result" + (f"?sample={sample}" if sample else "")


class JobError(Frozen):
    code: str
    message: str


class SampleFile(Frozen):
    url: str
    bytes: int
    sha256: str
    # filled in by the gateway when it answers: a link that plays without a bearer header
    signed_url: str | None = None


class InputMedia(Frozen):
    """How the worker read a job's upload (video-to-audio, audio-to-video).

    ``stream``: the one stream used. Video: ``width`` x ``height`` as displayed, after the
    display matrix's ``rotation`` (degrees counterclockwise, 0/90/180/270, FFmpeg's convention)
    and ``mirrored`` (left-right, after the rotation) were applied at decode, as a player shows
    the clip. Audio: the source channel ``layout`` (downmixed to mono; more than two channels
    with the standard matrix). ``padded_s``: seconds of the model's window after the end of the
    clip, filled by holding the last frame (video) or with silence (audio); 0 when the clip was
    long enough.
    """

    stream: Literal["video", "audio"]
    padded_s: float = 0.0
    width: int | None = None
    height: int | None = None
    rotation: int = 0
    mirrored: bool = False
    layout: str | None = None


class JobResult(Frozen):
    url: str  # the first sample; GET /jobs/{id}/result?sample=i for the others
    content_type: str = "video/mp4"
    bytes: int
    duration_s: float
    sha256: str
    random_weights: bool
    model: str
    num_samples: int = 1
    width: int  # the video as a player shows it (after the display matrix the MP4 carries)
    height: int
    # frames per second of the MP4's video, exact (a 30000/1001 upload: 29.97002997002997): the
    # model's (8.0, 10.0), or a video-to-audio whole clip's upload's own average rate;
    # duration_s = frames / fps, both streams of the MP4
    fps: float
    sample_rate: int  # the MP4's audio rate (the model's, resampled up to 16 kHz at least)
    samples: list[SampleFile] = Field(default_factory=list)
    nfe: dict[str, int] = Field(default_factory=dict)
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    batch_size: int = 1  # jobs the worker ran together in one batch (MMD_MAX_BATCH)
    windows: int = 1  # model windows run (a duration_s job covers its span with several)
    input: InputMedia | None = None  # how the upload was read (None: joint generation)
    # where the MP4's picture comes from: "generated" (joint, audio-to-video: the model's
    # frames), "resized" (a single-window video-to-audio job: the upload's frames as the model
    # saw them, centre square at its size and fps), "copied" / "reencoded" (a video-to-audio
    # whole clip: the upload's own video stream-copied, or re-encoded over the span at its own
    # size and rate; worker/media_span.py); None in a record written before the field existed
    video: Literal["generated", "resized", "copied", "reencoded"] | None = None
    # prompt guidance (core/prompts.py): the prompt as the aligner used it and the scale it ran
    # with (the request's, else the aligner's default); None for an unguided job. nfe then
    # counts the aligner's backward passes in base_backward.
    prompt: str | None = None
    prompt_scale: float | None = None
    # filled in by the gateway when it answers (None in the stored record): the first sample's
    # link that a browser can play without a bearer header (core/signing.py; on S3 presigned)
    signed_url: str | None = None
    signed_url_expires_at: datetime | None = None

    def absolute(self, base: str) -> JobResult:
        """This result with its stored URL paths made absolute under ``base`` (the gateway's
        public address); already absolute URLs are kept."""
        if not base:
            return self

        def url(u: str) -> str:
            return base.rstrip("/") + u if u.startswith("/") else u

        return self.model_copy(update={
            "url": url(self.url),
            "samples": [s.model_copy(update={"url": url(s.url)}) for s in self.samples]})


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
    duration_s: float | None = None  # None: one model window (today's single-window pipeline)
    prompt: str | None = None  # steer toward it with the model's aligner (core/prompts.py)
    prompt_scale: float | None = None  # None: the aligner's default scale
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
