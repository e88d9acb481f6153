"""Worker Prometheus metrics, served on ``MMD_WORKER_METRICS_PORT`` by :func:`serve`.

Per-stage histograms use buckets from 0.1 s to 30 min (diffusion jobs take minutes on CPU).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Buckets for minutes-long jobs: 0.1 s up to 30 min.
JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800)

JOBS_FINISHED = Counter("mmd_jobs_finished_total", "Jobs finished by mode and final status",
                        ["mode", "status"])
JOBS_IN_PROGRESS = Gauge("mmd_jobs_in_progress", "Jobs this worker is running now")
QUEUE_WAIT = Histogram("mmd_queue_wait_seconds", "Seconds from submission to start",
                       buckets=JOB_BUCKETS)
STAGE_SECONDS = Histogram("mmd_stage_seconds", "Seconds per job stage "
                          "(fetch, decode, base, sr, mux, upload)", ["stage"], buckets=JOB_BUCKETS)
JOB_SECONDS = Histogram("mmd_job_seconds", "Seconds from start to end of a job", ["mode"],
                        buckets=JOB_BUCKETS)
NFE = Counter("mmd_network_evaluations_total", "Network evaluations by stage", ["stage"])
MODEL_LOAD_SECONDS = Gauge("mmd_model_load_seconds", "Seconds to load (and warm up) a model",
                           ["model", "phase"])
PEAK_MEMORY = Gauge("mmd_peak_memory_bytes", "Peak CUDA memory allocated by the last job's "
                    "stage (base, sr); unset on CPU", ["stage"])
WORKER_READY = Gauge("mmd_worker_ready", "1 once models are loaded and warmed up")
WEBHOOKS = Counter("mmd_webhook_deliveries_total", "Webhook deliveries by outcome", ["outcome"])


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose the default registry over HTTP on ``port`` (0 = disabled)."""
    if port:
        start_http_server(port, addr=addr)
