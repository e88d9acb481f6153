"""``POST /generate``, ``POST /video-to-audio``, ``POST /audio-to-video`` and ``POST /uploads``."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from core.probe import Need, check_span, check_upload
from service.auth import Owner
from service.deps import AppState, State, base_url
from service.errors import ApiError, responses
from service.forms import conditional_form_doc, upload_form_doc
from service.metrics import UPLOAD_BYTES
from service.schemas import ConditionalRequest, GenerateRequest, SubmitResponse, UploadResponse
from service.submit import (
    Idempotency,
    admit,
    check_limits,
    check_urls,
    enqueue,
    fingerprint,
    new_id,
    replay,
    resolve_sampling,
    unprocessable,
)
from service.uploads import ParsedForm, form_params, parse_multipart

router = APIRouter(tags=["submit"])

IdemHeader = Annotated[str | None, Header(alias="Idempotency-Key")]
_SUBMITTED: dict[int | str, dict[str, Any]] = {
    202: {"model": SubmitResponse, "description": "queued; poll the `self` URL"},
    200: {"model": SubmitResponse, "description": "a retried submission (same "
          "`Idempotency-Key`): the original job, header `Idempotent-Replayed: true`"},
}
_GENERATE = {**_SUBMITTED, **responses(401, 422, 429)}
_CONDITIONAL = {**_SUBMITTED, **responses(401, 413, 415, 422, 429)}
_UPLOADED: dict[int | str, dict[str, Any]] = {
    201: {"model": UploadResponse, "description": "stored; pass `upload_id` to POST /generate"},
    **responses(401, 413, 415, 422, 429),
}


def _upload_key(upload_id: str, filename: str | None) -> str:
    ext = os.path.splitext(filename or "")[1].lower()
    ext = ext if ext[1:].isalnum() and len(ext) <= 6 else ""
    return f"uploads/{upload_id}/input{ext}"


def _upload_print(form: ParsedForm, params: dict[str, Any]) -> str:
    """What an upload's ``Idempotency-Key`` is bound to: the parameters, the sha256 of the
    uploaded bytes and the file name (the stored input keeps its extension)."""
    return fingerprint({"params": params, "sha256": form.sha256, "filename": form.filename})


async def _store_upload(state: AppState, form: ParsedForm, upload_id: str) -> str:
    key = _upload_key(upload_id, form.filename)
    assert form.file_path is not None
    try:
        await run_in_threadpool(state.storage.put_file, key, form.file_path,
                                content_type=form.content_type or "application/octet-stream")
    finally:
        form.cleanup()
    UPLOAD_BYTES.inc(form.file_bytes)
    return key


def _unknown_upload(upload_id: str) -> ApiError:
    return ApiError(422, f"upload_id {upload_id!r} is unknown or expired; upload again with "
                    "POST /uploads", field="upload_id")


@router.post("/generate", status_code=202, response_model=SubmitResponse, responses=_GENERATE)
def generate(body: GenerateRequest, request: Request, state: State, owner: Owner,
             idempotency_key: IdemHeader = None) -> JSONResponse:
    """Joint audio+video generation, or ``mode: "audio-to-video"`` with an ``upload_id`` (from
    ``POST /uploads``) or an ``audio_url``."""
    base = base_url(request, state.settings)
    idem = Idempotency(state, f"{owner} /generate", idempotency_key)
    print_ = fingerprint(body.model_dump(mode="json"))
    if (job_id := idem.existing(print_)) is not None:
        return replay(state, base, job_id)
    sampling = resolve_sampling(body, body.mode, state.settings)
    model = check_limits(body, state.settings, sampling)
    input_key = input_filename = input_url = None
    if body.mode == "joint":
        if body.duration_s is not None:
            raise ApiError(422, "duration_s is only used with mode 'audio-to-video' (and on "
                                "POST /video-to-audio); joint generation makes one model window",
                           field="duration_s")
        if body.upload_id or body.audio_url:
            raise ApiError(422, "upload_id/audio_url are only used with mode "
                                "'audio-to-video'; remove them for joint generation",
                           field="upload_id" if body.upload_id else "audio_url")
    else:
        if (body.upload_id is None) == (body.audio_url is None):
            raise ApiError(422, "mode 'audio-to-video' needs exactly one of upload_id "
                                "(from POST /uploads) or audio_url", field="upload_id")
        if body.upload_id is not None:
            meta = state.redis.get(state.settings.key("upload", body.upload_id))
            if meta is None:
                raise _unknown_upload(body.upload_id)
            info = json.loads(meta)
            if info.get("owner", "open") != owner:  # another key's upload: as if unknown
                raise _unknown_upload(body.upload_id)
            if not info.get("has_audio"):
                why = info.get("audio_problem") or "it has no audio stream"
                raise ApiError(422, f"the upload has no usable audio stream ({why}); "
                                    "audio-to-video needs an audio file",
                               code="no_audio_stream", field="upload_id")
            check_span(info.get("audio_duration_s"), body.start_s, state.settings, what="audio",
                       span_s=body.duration_s)
            input_key, input_filename = info["key"], info["filename"]
        else:
            input_url = str(body.audio_url)
    check_urls(body, state.settings)
    job_id = new_id()
    admit(state, owner, job_id)
    try:
        other = idem.reserve(job_id, print_)
    except HTTPException:  # a concurrent request with the same key and another body won
        state.limiter.release(owner, job_id)
        raise
    if other is not None:
        state.limiter.release(owner, job_id)
        return replay(state, base, other)
    return enqueue(state, base, job_id=job_id, mode=body.mode, model=model, params=body,
                   sampling=sampling, input_key=input_key, input_filename=input_filename,
                   input_url=input_url, owner=owner)


async def _conditional(request: Request, state: AppState, idempotency_key: str | None,
                       mode: str, need: Need, owner: str) -> JSONResponse:
    settings = state.settings
    base = base_url(request, settings)
    idem = Idempotency(state, f"{owner} /{mode}", idempotency_key)
    form = await parse_multipart(request, max_bytes=settings.max_upload_bytes)
    try:
        try:
            params = ConditionalRequest.model_validate(form_params(form.fields))
        except ValidationError as exc:
            raise unprocessable(exc) from exc
        print_ = _upload_print(form, params.model_dump(mode="json"))
        if (job_id := await run_in_threadpool(idem.existing, print_)) is not None:
            form.cleanup()
            return await run_in_threadpool(replay, state, base, job_id)
        sampling = resolve_sampling(params, mode, settings)  # type: ignore[arg-type]
        model = check_limits(params, settings, sampling)
        assert form.file_path is not None
        await run_in_threadpool(check_urls, params, settings)
        await run_in_threadpool(lambda: check_upload(form.file_path, need=need,  # type: ignore[arg-type]
                                                     settings=settings, start_s=params.start_s,
                                                     span_s=params.duration_s))
        job_id = new_id()
        await run_in_threadpool(admit, state, owner, job_id)
    except BaseException:
        form.cleanup()
        raise
    key = await _store_upload(state, form, job_id)

    def undo() -> None:
        state.storage.delete(key)
        state.limiter.release(owner, job_id)

    try:
        other = await run_in_threadpool(idem.reserve, job_id, print_)
    except HTTPException:  # a concurrent request with the same key and another body won
        await run_in_threadpool(undo)
        raise
    if other is not None:
        await run_in_threadpool(undo)
        return await run_in_threadpool(replay, state, base, other)
    return await run_in_threadpool(
        lambda: enqueue(state, base, job_id=job_id, mode=mode, model=model,  # type: ignore[arg-type]
                        params=params, sampling=sampling, input_key=key,
                        input_filename=form.filename, owner=owner))


@router.post("/video-to-audio", status_code=202, response_model=SubmitResponse,
             responses=_CONDITIONAL, openapi_extra=conditional_form_doc())
async def video_to_audio(request: Request, state: State, owner: Owner,
                         idempotency_key: IdemHeader = None) -> JSONResponse:
    """Upload a clip (multipart ``file``); the soundtrack is generated for one model window
    (1.6 s officially) from ``start_s``, or for ``duration_s`` seconds, and comes back with the
    clip's own picture. Parameters as form fields or a JSON ``params`` part."""
    return await _conditional(request, state, idempotency_key, "video-to-audio", "video", owner)


@router.post("/audio-to-video", status_code=202, response_model=SubmitResponse,
             responses=_CONDITIONAL, openapi_extra=conditional_form_doc())
async def audio_to_video(request: Request, state: State, owner: Owner,
                         idempotency_key: IdemHeader = None) -> JSONResponse:
    """Upload audio (wav, mp3, m4a/aac, flac, ogg); the video is generated for it."""
    return await _conditional(request, state, idempotency_key, "audio-to-video", "audio", owner)


@router.post("/uploads", status_code=201, response_model=UploadResponse,
             openapi_extra=upload_form_doc(), responses=_UPLOADED)
async def upload(request: Request, state: State, owner: Owner,
                 idempotency_key: IdemHeader = None) -> Any:
    """Store a media file for a later ``POST /generate`` (``upload_id``)."""
    settings = state.settings
    idem = Idempotency(state, f"{owner} /uploads", idempotency_key)
    if (rejection := await run_in_threadpool(state.limiter.admit_upload, owner)) is not None:
        raise rejection.http()  # before a byte of the body is read
    form = await parse_multipart(request, max_bytes=settings.max_upload_bytes)
    print_ = _upload_print(form, {})
    try:
        if (upload_id := await run_in_threadpool(idem.existing, print_)) is not None:
            raw = await run_in_threadpool(state.redis.get, settings.key("upload", upload_id))
            if raw is not None:
                form.cleanup()
                return UploadResponse(upload_id=upload_id, bytes=json.loads(raw)["bytes"])
        assert form.file_path is not None
        info = await run_in_threadpool(check_upload, form.file_path, need="any",
                                       settings=settings)
    except BaseException:
        form.cleanup()
        raise
    upload_id = new_id()
    size, filename = form.file_bytes, form.filename
    key = await _store_upload(state, form, upload_id)
    meta_key = settings.key("upload", upload_id)

    def undo() -> None:
        state.storage.delete(key)
        state.redis.delete(meta_key)

    meta = {"key": key, "filename": filename, "bytes": size,
            "has_audio": info.has_audio, "has_video": info.has_video, "owner": owner,
            "audio_duration_s": info.audio_duration_s, "audio_problem": info.audio_problem}
    await run_in_threadpool(lambda: state.redis.set(meta_key, json.dumps(meta),
                                                    ex=settings.result_ttl_s))
    try:
        other = await run_in_threadpool(idem.reserve, upload_id, print_)
    except HTTPException:  # a concurrent upload with the same key and another file won
        await run_in_threadpool(undo)
        raise
    if other is not None:  # a concurrent identical upload won: answer with its id
        await run_in_threadpool(undo)
        upload_id = other
    return JSONResponse(UploadResponse(upload_id=upload_id, bytes=size).model_dump(),
                        status_code=201)
