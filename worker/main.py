"""``mmd worker``: load the configured models once, warm up, mark ready, process jobs."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
from collections.abc import Callable
from typing import Any

from redis import Redis

from core.settings import Settings, get_settings
from core.storage import make_storage
from core.store import JobStore, redis_client
from worker import metrics
from worker.loading import load_all, warm_up
from worker.runner import JobRunner
from worker.webhooks import WebhookSender
from worker.worker import MMDWorker

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--burst", action="store_true",
                        help="exit once the queue is empty (tests, batch runs)")
    parser.add_argument("--name", default=None, help="worker name (default mmd-<host>-<pid>)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up generation")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: stacks
    if not settings.redis_url:
        log.error("MMD_REDIS_URL is not set: point it at the gateway's Redis "
                  "(redis://host:6379/0), or use `mmd serve` for a single-machine setup")
        return 2
    redis = redis_client(settings.redis_url, retry_s=settings.redis_retry_s)
    return run_worker(settings, redis, burst=args.burst, name=args.name,
                      warmup=settings.warmup and not args.no_warmup)


def run_worker(settings: Settings, redis: Redis, *, burst: bool = False, name: str | None = None,
               warmup: bool = True, generate_batch: Callable[..., Any] | None = None,
               serve_metrics: bool = True) -> int:
    """Load models, start the metrics endpoint, then work until SIGTERM (or the queue is empty
    with ``burst``). Runs in the main thread (RQ's job timeout uses SIGALRM)."""
    if serve_metrics:
        metrics.serve(settings.worker_metrics_port)
        log.info("worker metrics on :%d/metrics", settings.worker_metrics_port)
    if generate_batch is None:
        from model.pipeline import generate_batch as pipeline_generate_batch

        generate_batch = pipeline_generate_batch
    threads = settings.cpu_threads()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
        log.info("torch CPU threads: %d", threads)
    store = JobStore(redis, settings)
    models = load_all(settings)
    if warmup:
        warm_up(models, generate_batch)
    secret = settings.webhook_secret
    webhooks = WebhookSender(secret=secret.get_secret_value() if secret else None,
                             timeout_s=settings.webhook_timeout_s,
                             retries=settings.webhook_retries, backoff_s=settings.webhook_backoff_s)
    runner = JobRunner(settings=settings, store=store, storage=make_storage(settings),
                       models=models, generate_batch=generate_batch, webhooks=webhooks)
    worker = MMDWorker([store.queue], connection=redis, runner=runner,
                       ready_file=settings.worker_ready_file,
                       heartbeat_ttl_s=settings.worker_heartbeat_ttl_s,
                       **({"name": name} if name else {}))
    worker.mark_ready()
    try:
        worker.work(burst=burst, with_scheduler=False, logging_level=settings.log_level)
    finally:
        worker.mark_unready()
        webhooks.close(wait=True)
    return 0
