"""``GET /healthz``, ``GET /readyz``, ``GET /metrics``."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, SecretStr
from redis.exceptions import RedisError

from service import metrics
from service.deps import State
from service.errors import ErrorResponse, body

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    workers: int


class Unready(ErrorResponse):
    """``/readyz``'s 503: the error shape plus ``status`` and ``reason`` (for probes)."""

    status: Literal["unready"] = "unready"
    reason: str
    workers: int = 0


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health()


@router.get("/readyz", response_model=Ready, responses={
    503: {"model": Unready, "description": "Redis unreachable or no worker ready"}})
def readyz(state: State) -> JSONResponse:
    """Ready when Redis answers and at least one worker has a fresh readiness heartbeat."""
    try:
        state.redis.ping()
        workers = state.store.ready_workers()
    except RedisError as exc:
        return _unready(f"redis unreachable: {exc}")
    if workers < 1:
        return _unready("no worker is ready (still loading models, or none running: start "
                        "`mmd worker`)")
    return JSONResponse(Ready(workers=workers).model_dump())


def _unready(reason: str) -> JSONResponse:
    return JSONResponse({**body(503, reason, code="unavailable"), "status": "unready",
                         "reason": reason, "workers": 0}, 503)


def _check_metrics_token(expected: SecretStr | None, authorization: str | None) -> None:
    """401 unless ``MMD_METRICS_TOKEN`` is unset or ``authorization`` is ``Bearer <token>``
    (compared in constant time)."""
    if expected is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "/metrics needs 'Authorization: Bearer <MMD_METRICS_TOKEN>' "
                                 "(set the scraper's bearer token, or unset MMD_METRICS_TOKEN)",
                            headers={"WWW-Authenticate": 'Bearer realm="mmd-metrics"'})


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(state: State,
                       authorization: Annotated[str | None, Header()] = None) -> Response:
    """Prometheus exposition; queue gauges are read from Redis now (this also lets RQ clean up
    jobs whose worker died). Needs the bearer token when ``MMD_METRICS_TOKEN`` is set."""
    _check_metrics_token(state.settings.metrics_token, authorization)
    try:
        metrics.QUEUE_DEPTH.set(state.store.queue.count)
        metrics.JOBS_RUNNING.set(state.store.running_count())
        metrics.WORKERS_READY.set(state.store.ready_workers())
    except Exception:
        log.warning("could not read queue gauges from Redis", exc_info=True)
    body, ctype = metrics.render()
    return Response(body, media_type=ctype)
