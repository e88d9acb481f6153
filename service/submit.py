"""Turning a validated request into a queued job: limit checks, idempotency, ids, enqueueing."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from core.contract import JobSpec, JobStatus, result_url
from core.netguard import UnsafeURLError, check_url
from core.prompts import PromptRefused, check_prompt_request
from core.sampling import Mode, Sampling, default_guidance_scale, resolve
from core.settings import Settings
from core.store import utcnow
from core.windows import window_count, window_s
from service.deps import AppState
from service.errors import ApiError, from_pydantic
from service.metrics import JOBS_SUBMITTED
from service.schemas import JobUrls, SubmitResponse

MAX_IDEMPOTENCY_KEY = 255


def new_id() -> str:
    """A random, unguessable id (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def unprocessable(exc: ValidationError) -> ApiError:
    """A pydantic error as a 422 ``invalid_request`` naming the first bad field (``detail``
    lists each bad field and why)."""
    return from_pydantic(exc)


def resolve_sampling(params: Any, mode: Mode, settings: Settings) -> Sampling:
    """The request's sampler settings: its preset (else ``MMD_SAMPLING_PRESET``) with its own
    ``sampler`` / ``super_resolution`` fields on top (``core.sampling``)."""
    try:
        return resolve(mode, params.preset or settings.sampling_preset, params.sampler,
                       params.super_resolution)
    except ValueError as exc:
        raise ApiError(422, str(exc), field=_sampler_field(str(exc))) from exc


def _sampler_field(message: str) -> str | None:
    """The field a :func:`core.sampling.resolve` error is about (its message names it)."""
    for name in ("sampler.resample", "sampler.order", "sampler.steps", "preset"):
        if name in message:
            return name
    return None


def check_limits(params: Any, settings: Settings, sampling: Sampling) -> str:
    """Enforce the configured limits on a request's parameters and its resolved ``sampling``;
    returns the model name. Raises 422 naming the field, the value and the allowed maximum."""
    model = params.model or settings.default_model
    if model not in settings.models:
        raise ApiError(422, f"unknown model {model!r}; configured models: "
                            f"{sorted(settings.models)}", field="model")
    checks = [
        ("num_samples", params.num_samples, settings.max_num_samples, "MMD_MAX_NUM_SAMPLES"),
        ("sampler.steps", sampling.sampler.steps, settings.max_steps, "MMD_MAX_STEPS"),
        ("sampler.resample", sampling.sampler.resample, settings.max_resample,
         "MMD_MAX_RESAMPLE"),
        ("super_resolution.steps", sampling.super_resolution.steps, settings.max_sr_steps,
         "MMD_MAX_SR_STEPS"),
        ("start_s", params.start_s, settings.max_start_s, "MMD_MAX_START_S"),
        ("guidance_scale", getattr(params, "guidance_scale", None) or 0.0,
         settings.max_guidance_scale, "MMD_MAX_GUIDANCE_SCALE"),
    ]
    for name, value, limit, env in checks:
        if value > limit:
            raise ApiError(422, f"{name}={value} is above the limit {limit} ({env})", field=name)
    check_duration(params, settings, settings.models[model].preset)
    check_prompt(params, settings, str(model), sampling.sampler.name)
    if sampling.super_resolution.enabled and settings.models[model].resolved_sr_preset() is None:
        raise ApiError(422, f"model {model!r} has no super-resolution network; send "
                            "super_resolution.enabled=false", field="super_resolution.enabled")
    return str(model)


def check_duration(params: Any, settings: Settings, preset: str) -> None:
    """422 when a request's ``duration_s`` is over ``MMD_MAX_DURATION_S`` or needs more model
    windows of ``preset`` than ``MMD_MAX_WINDOWS`` (:func:`core.windows.window_count`; a preset
    the table does not know is left to the worker, which plans the job and refuses it then)."""
    duration = getattr(params, "duration_s", None)
    if duration is None:
        return
    if duration > settings.max_duration_s:
        raise ApiError(422, f"duration_s={duration:g} is above the limit "
                            f"{settings.max_duration_s:g} s (MMD_MAX_DURATION_S); ask for a "
                            "shorter span", field="duration_s")
    count = window_count(duration, preset)
    if count is not None and count > settings.max_windows:
        each = window_s(preset)
        raise ApiError(422, f"duration_s={duration:g} needs {count} model windows of {each:g} s "
                            f"(preset {preset!r}), more than the limit {settings.max_windows} "
                            "(MMD_MAX_WINDOWS); ask for a shorter span", field="duration_s")


def check_prompt(params: Any, settings: Settings, model: str, sampler: str) -> None:
    """422 unless the request's ``prompt`` / ``prompt_scale`` fit ``model`` and the limits
    (:func:`core.prompts.check_prompt_request`: ``prompt_unsupported`` naming
    ``MMD_MODELS.<name>.aligner``, ``unknown_prompt``, or ``invalid_request``)."""
    try:
        check_prompt_request(params.prompt, params.prompt_scale, model=model,
                             aligner=settings.models[model].resolved_aligner(),
                             max_chars=settings.prompt_max_chars,
                             scale_max=settings.prompt_scale_max,
                             duration_s=getattr(params, "duration_s", None), sampler=sampler)
    except PromptRefused as exc:
        raise ApiError(422, exc.message, code=exc.code, field=exc.field) from exc


def check_urls(params: Any, settings: Settings) -> None:
    """422 unless ``webhook_url`` / ``audio_url`` are http(s) URLs to public addresses (SSRF
    guard, ``core.netguard``; resolves DNS, so call it off the event loop)."""
    for what in ("webhook_url", "audio_url"):
        url = getattr(params, what, None)
        if url is None:
            continue
        try:
            check_url(str(url), allow_private=settings.webhook_allow_private, what=what)
        except UnsafeURLError as exc:
            raise ApiError(422, str(exc), field=what) from exc


def admit(state: AppState, owner: str, job_id: str) -> None:
    """429 with ``Retry-After`` when ``owner`` is over its rate limit or active-job quota."""
    rejection = state.limiter.admit(owner, job_id)
    if rejection is not None:
        raise rejection.http()


def fingerprint(payload: Any) -> str:
    """A short digest of a request (its validated parameters, for an upload also the sha256 of
    its bytes and its file name) that an ``Idempotency-Key`` is bound to."""
    return hashlib.sha256(repr(payload).encode()).hexdigest()[:32]


class Idempotency:
    """``Idempotency-Key`` -> job id in Redis (TTL ``MMD_IDEMPOTENCY_TTL_S``), per route."""

    def __init__(self, state: AppState, route: str, key: str | None) -> None:
        if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
            raise ApiError(422, f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} characters",
                           field="Idempotency-Key")
        self.state = state
        self.key = key
        digest = hashlib.sha256(f"{route}\n{key}".encode()).hexdigest()
        self.redis_key = state.settings.key("idem", digest)

    def existing(self, print_: str | None = None) -> str | None:
        """The job id stored for this key (422 when the same key came with another request)."""
        if self.key is None:
            return None
        raw = self.state.redis.get(self.redis_key)
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        job_id, _, stored_print = text.partition(" ")
        if print_ is not None and stored_print and stored_print != print_:
            raise ApiError(422, "this Idempotency-Key was already used with a different "
                                "request body; use a new key for a new request",
                           field="Idempotency-Key")
        return job_id

    def reserve(self, job_id: str, print_: str = "") -> str | None:
        """Bind the key to ``job_id``; returns the other job id if a concurrent request with the
        same fingerprint won (422 when the winner was a different request)."""
        if self.key is None:
            return None
        ttl = self.state.settings.idempotency_ttl_s
        if self.state.redis.set(self.redis_key, f"{job_id} {print_}", nx=True, ex=ttl):
            return None
        return self.existing(print_ or None)


def job_urls(base: str, job_id: str) -> JobUrls:
    return JobUrls(self=f"{base}/jobs/{job_id}", result=result_url(job_id, base=base),
                   cancel=f"{base}/jobs/{job_id}/cancel")


def replay(state: AppState, base: str, job_id: str) -> JSONResponse:
    """The answer to a retried submission: the original job, as it is now."""
    status = state.store.status(job_id) or JobStatus.queued
    body = SubmitResponse(id=job_id, status=status, urls=job_urls(base, job_id))
    return JSONResponse(body.model_dump(mode="json"), status_code=200,
                        headers={"Location": body.urls.self, "Idempotent-Replayed": "true"})


def guidance_scale(params: Any, settings: Settings, model: str) -> float:
    """The request's ``guidance_scale``, or the model's default when it sends none
    (:func:`core.sampling.default_guidance_scale` of its base preset)."""
    return default_guidance_scale(settings.models[model].preset,
                                  getattr(params, "guidance_scale", None))


def enqueue(state: AppState, base: str, *, job_id: str, mode: Mode, model: str, params: Any,
            sampling: Sampling, input_key: str | None = None, input_filename: str | None = None,
            input_url: str | None = None, owner: str = "open") -> JSONResponse:
    """Store the job spec (owned by key id ``owner``, with the resolved ``sampling``), enqueue it
    and answer ``202``."""
    seed = params.seed if params.seed is not None else secrets.randbelow(2**31)
    spec = JobSpec(
        id=job_id, mode=mode, model=model, seed=seed, num_samples=params.num_samples,
        sampler=sampling.sampler, super_resolution=sampling.super_resolution,
        preset=sampling.preset,
        guidance=params.guidance, guidance_scale=guidance_scale(params, state.settings, model),
        start_s=params.start_s,
        duration_s=getattr(params, "duration_s", None),
        prompt=params.prompt.strip() if params.prompt is not None else None,
        prompt_scale=params.prompt_scale,
        input_key=input_key, input_filename=input_filename, input_url=input_url,
        webhook_url=str(params.webhook_url) if params.webhook_url else None,
        created_at=utcnow(),
    )
    state.store.create_and_enqueue(spec, owner)
    JOBS_SUBMITTED.labels(mode=mode).inc()
    body = SubmitResponse(id=job_id, status=JobStatus.queued, urls=job_urls(base, job_id))
    return JSONResponse(body.model_dump(mode="json"), status_code=202,
                        headers={"Location": body.urls.self})
