"""Gateway Prometheus metrics (prometheus-client).

When ``PROMETHEUS_MULTIPROC_DIR`` is set (several gateway processes), ``/metrics`` aggregates all
processes with the multiprocess collector; otherwise the default registry is used. Queue depth,
running jobs and ready workers are read from Redis at scrape time.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _mp

# Latency buckets for HTTP handlers (seconds).
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_MULTIPROC = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
_GAUGE_MODE: dict[str, Any] = {"multiprocess_mode": "mostrecent"} if _MULTIPROC else {}

JOBS_SUBMITTED = Counter("mmd_jobs_submitted_total", "Jobs accepted by the gateway", ["mode"])
JOBS_CANCEL_REQUESTS = Counter("mmd_cancel_requests_total", "Cancel requests by job status",
                               ["status"])
HTTP_LATENCY = Histogram("mmd_http_request_duration_seconds", "HTTP request latency by route",
                         ["method", "route", "status"], buckets=HTTP_BUCKETS)
UPLOAD_BYTES = Counter("mmd_upload_bytes_total", "Bytes of uploaded media accepted")
QUEUE_DEPTH = Gauge("mmd_queue_depth", "Jobs waiting in the RQ queue", **_GAUGE_MODE)
JOBS_RUNNING = Gauge("mmd_queue_jobs_running", "Jobs in RQ's started registry", **_GAUGE_MODE)
WORKERS_READY = Gauge("mmd_workers_ready", "Workers with a fresh readiness heartbeat",
                      **_GAUGE_MODE)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    if _MULTIPROC:
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
