"""The FastAPI application factory for the gateway (no torch import anywhere below)."""

from __future__ import annotations

import time

from fastapi import FastAPI
from redis import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings, get_settings
from core.storage import Storage, make_storage
from core.store import JobStore
from service import docs, errors
from service.auth import Authenticator
from service.deps import AppState
from service.limits import Limiter
from service.metrics import HTTP_LATENCY
from service.routes import events, health, jobs, page, results, submit


def create_app(settings: Settings | None = None, *, redis: Redis | None = None,
               storage: Storage | None = None) -> FastAPI:
    """Build the gateway. ``settings`` defaults to :func:`get_settings`; ``redis`` to
    ``MMD_REDIS_URL``; ``storage`` to ``MMD_STORAGE_BACKEND``."""
    settings = settings or get_settings()
    if redis is None:
        if not settings.redis_url:
            raise ValueError("MMD_REDIS_URL is not set: point it at Redis "
                             "(redis://host:6379/0), or use `mmd serve` for an embedded one")
        redis = Redis.from_url(settings.redis_url, health_check_interval=30)
    app = FastAPI(
        title="mmd-serve",
        version="0.1.0",
        description="MM-Diffusion inference: submit a job, poll it, download the MP4. Every "
        "4xx/5xx answers one shape, `ErrorResponse`: `{error: {code, message, field?}, detail}`.",
        docs_url=None, redoc_url=None,  # service.docs serves /docs with local assets
        # operationId = the handler's name (generate, get_job, ...): generated clients get
        # short, stable function names
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.mmd = AppState(settings=settings, redis=redis, store=JobStore(redis, settings),
                             storage=storage or make_storage(settings),
                             auth=Authenticator(settings), limiter=Limiter(redis, settings))
    errors.install(app)
    docs.install(app)
    docs.install_schema(app)
    app.include_router(submit.router)
    app.include_router(jobs.router)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(results.router)
    app.include_router(page.router)
    app.mount("/ui/static", page.static_files(), name="ui-static")

    app.add_middleware(LatencyMiddleware)
    return app


class LatencyMiddleware:
    """Observes ``mmd_http_request_duration_seconds`` by route template (a plain ASGI
    middleware: cheaper than ``BaseHTTPMiddleware``, and streaming responses stay streamed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_LATENCY.labels(method=scope["method"], route=route,
                                status=str(status)).observe(time.perf_counter() - start)
