"""``mmd gateway``: the HTTP gateway only (no torch, no models); needs ``MMD_REDIS_URL``."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from core.settings import get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default MMD_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default MMD_PORT)")
    parser.add_argument("--workers", type=int, default=1,
                        help="gateway processes; >1 needs PROMETHEUS_MULTIPROC_DIR for metrics")


def app_factory() -> FastAPI:
    from service.app import create_app

    return create_app()


def run(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.redis_url:
        log.error("MMD_REDIS_URL is not set; the gateway needs the workers' Redis "
                  "(or run `mmd serve` for everything on one machine)")
        return 2
    if not settings.open_mode:
        from service.auth import load_keys

        try:
            keys = load_keys(settings)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
        if not keys:
            log.error("no API keys configured and MMD_OPEN_MODE is off: set MMD_API_KEYS or "
                      "MMD_API_KEYS_FILE (sha256 digests, `mmd hash-key KEY`), or "
                      "MMD_OPEN_MODE=true for a gateway without authentication")
            return 2
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning("--workers %d without PROMETHEUS_MULTIPROC_DIR: /metrics shows one "
                    "process only", args.workers)
    uvicorn.run("service.gateway_cli:app_factory", factory=True,
                host=args.host or settings.host, port=args.port or settings.port,
                workers=args.workers, log_level=settings.log_level.lower(), access_log=False,
                timeout_graceful_shutdown=settings.gateway_shutdown_grace_s)
    return 0
