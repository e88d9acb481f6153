"""``GET /jobs/{id}/events``: the job's events as Server-Sent Events, read from its Redis stream
(:mod:`core.events`), so any gateway replica serves them and a restart loses nothing.

Events: ``progress`` (``{status, stage, step, total, fraction, queue_position}``) at every status
or progress change, each with the stream id as its SSE ``id``; then one ``done`` event whose data
is the whole job document (as ``GET /jobs/{id}`` answers it: result with links, or error), and the
stream ends. ``Last-Event-ID`` resumes after that id. While nothing happens the gateway sends a
keep-alive comment every ``MMD_EVENTS_KEEPALIVE_S``; a queued job's changing queue position is
sent as a ``progress`` event without an id (it is not stored). ``error`` (``{code, message}``)
ends a stream whose job record has gone (expired or deleted).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from core.contract import JobStatus
from core.events import event_data, events_key, format_sse, parse_entry, parse_event_id
from service.auth import Owner
from service.deps import AppState, State
from service.errors import ApiError, responses
from service.routes.jobs import _check_owner, public_view

router = APIRouter(prefix="/jobs", tags=["jobs"])

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx (and the k8s ingress-nginx): do not buffer the stream
}
RETRY_MS = 1000  # the reconnection delay browsers' EventSource is told to use


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "progress events, then one done event"},
                       **responses(401, 404, 422, 503)})
def job_events(job_id: str, request: Request, state: State, owner: Owner,
               last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
               ) -> StreamingResponse:
    """Server-Sent Events of the job's status and progress, ending with its whole document.
    Same authentication and 404 as ``GET /jobs/{id}``."""
    _check_owner(state, job_id, owner)
    if not state.settings.redis_url:
        raise ApiError(503, "job events need MMD_REDIS_URL (the gateway reads them from "
                            "Redis); set it")
    return StreamingResponse(_stream(job_id, request, state, parse_event_id(last_event_id)),
                             media_type="text/event-stream", headers=SSE_HEADERS)


def _position(state: AppState, job_id: str) -> int | None:
    pos = state.store.queue.get_job_position(job_id)
    return int(pos) if pos is not None else None


async def _done(job_id: str, request: Request, state: AppState, event_id: str | None) -> bytes:
    view = await run_in_threadpool(state.store.view, job_id)
    if view is None:
        return _gone(job_id)
    public = await run_in_threadpool(public_view, view, request, state)
    return format_sse("done", public.model_dump_json(), event_id)


def _gone(job_id: str) -> bytes:
    body = {"code": "not_found", "message": f"job {job_id} no longer exists (expired after "
                                            "MMD_RESULT_TTL_S or deleted)"}
    return format_sse("error", json.dumps(body))


async def _stream(job_id: str, request: Request, state: AppState,
                  cursor: str | None) -> AsyncIterator[bytes]:
    from redis.asyncio import Redis as AsyncRedis

    settings = state.settings
    assert settings.redis_url is not None
    stream, job_key = events_key(settings, job_id), state.store.job_key(job_id)
    block_ms = max(1, int(settings.events_poll_s * 1000))
    redis: Any = AsyncRedis.from_url(settings.redis_url)
    after = cursor or "0-0"
    last: dict[str, Any] | None = None
    last_write = time.monotonic()
    blocking = False  # the first read, and the re-read before a terminal status, do not block
    rechecked = False  # the stream was read again after the record turned terminal
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        while True:
            found = await redis.xread({stream: after}, count=100,
                                      block=block_ms if blocking else None)
            entries = found[0][1] if found else []
            for raw_id, fields in entries:
                after = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                status, progress = parse_entry(fields)
                if status.is_terminal():
                    yield await _done(job_id, request, state, after)
                    return
                position = (await run_in_threadpool(_position, state, job_id)
                            if status is JobStatus.queued else None)
                last = event_data(status, progress, position)
                yield format_sse("progress", json.dumps(last), after)
                last_write = time.monotonic()
            if entries:
                blocking = False
                continue
            raw = await redis.hget(job_key, "status")
            if raw is None:
                yield _gone(job_id)
                return
            if JobStatus(raw.decode()).is_terminal():
                if not rechecked:  # its event may have landed after the read: read once more
                    rechecked, blocking = True, False
                    continue
                yield await _done(job_id, request, state, None)  # e.g. a record older than events
                return
            blocking = True
            if last is not None and last["status"] == JobStatus.queued.value:
                position = await run_in_threadpool(_position, state, job_id)
                if position != last["queue_position"]:
                    last = {**last, "queue_position": position}
                    yield format_sse("progress", json.dumps(last))  # no id: not in the stream
                    last_write = time.monotonic()
            if time.monotonic() - last_write >= settings.events_keepalive_s:
                yield b": keep-alive\n\n"
                last_write = time.monotonic()
    finally:
        with contextlib.suppress(Exception):
            await redis.aclose()
