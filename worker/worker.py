"""``MMDWorker``: an RQ worker that never forks (CUDA cannot be re-initialised in a forked
child), keeps the models of its process, and advertises readiness three ways: a Redis sorted-set
entry with a TTL heartbeat (read by the gateway's ``/readyz``), the ``mmd_worker_ready`` gauge, and
a readiness file for Kubernetes exec probes.

While a job runs, a side thread renews RQ's started-registry entry with a short TTL
(2 x ``MMD_WORKER_HEARTBEAT_TTL_S``, 1 min by default), so a job whose worker died (crash, OOM
kill, node loss) is found abandoned by the next registry cleanup after that (every live worker's
readiness thread runs one every ``MMD_WORKER_HEARTBEAT_TTL_S``; a gateway ``/metrics`` scrape
also does) and retried (``MMD_JOB_RETRIES``) instead of waiting for the whole job timeout.
SIGTERM: the current job finishes, no new one is taken (RQ's warm shutdown); readiness is
withdrawn at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.utils import now
from rq.worker.base import WorkerStatus

from worker import metrics
from worker.batching import Batcher
from worker.runner import JobRunner

log = logging.getLogger(__name__)



def default_name() -> str:
    """A name unique to this worker instance: host, pid and a random suffix. RQ refuses to
    register a second live worker under one name, and a process may run several workers one
    after another (``mmd serve`` restarts, tests) whose registration can outlive them."""
    return f"mmd-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _job_class(worker: MMDWorker) -> type[Job]:
    """RQ's job class for ``worker``: each job it dequeues runs as :meth:`MMDWorker.run` (the
    RQ function name the gateway enqueues, ``worker.jobs.run_job``, only names the job kind)."""

    class RunnerJob(Job):
        def _execute(self) -> str:
            return worker.run(self)

    return RunnerJob


class MMDWorker(SimpleWorker):
    """SimpleWorker + readiness heartbeat + short job heartbeats; runs each job (and the
    compatible queued jobs it claims, ``MMD_MAX_BATCH`` > 1) with its ``runner``."""

    def __init__(self, queues: list[Queue], *, runner: JobRunner, ready_file: Path | None,
                 heartbeat_ttl_s: int = 30, **kwargs: Any) -> None:
        kwargs.setdefault("name", default_name())
        kwargs.setdefault("maintenance_interval", max(30, heartbeat_ttl_s * 2))
        super().__init__(queues, job_class=_job_class(self), **kwargs)
        self.runner = runner
        self.store = runner.store
        self.ready_file = ready_file
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.batcher = (Batcher(runner, self.connection, self.name)
                        if runner.settings.max_batch > 1 else None)
        self._ready_stop = threading.Event()
        self._ready_thread: threading.Thread | None = None

    # --- readiness ----------------------------------------------------------------------
    def mark_ready(self) -> None:
        """Start advertising readiness (call once models are loaded and warmed up)."""
        self._beat_ready()
        metrics.WORKER_READY.set(1)
        self._ready_thread = threading.Thread(target=self._ready_loop, name="mmd-ready",
                                              daemon=True)
        self._ready_thread.start()
        log.info("worker %s ready", self.name)

    def mark_unready(self) -> None:
        """Withdraw readiness and wait for the Redis entry to be gone (not signal-safe)."""
        self._withdraw_now()
        if self._ready_thread is not None:
            self._ready_thread.join(timeout=5)
        else:
            self._withdraw_redis()

    def _withdraw_now(self) -> None:
        """Signal-safe part: a flag and the readiness file (no locks, no Redis)."""
        self._ready_stop.set()
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)

    def _withdraw_redis(self) -> None:
        metrics.WORKER_READY.set(0)
        try:
            self.store.worker_gone(self.name)
        except Exception:
            log.debug("could not withdraw readiness from Redis", exc_info=True)

    def _beat_ready(self) -> None:
        self.store.worker_heartbeat(self.name, self.heartbeat_ttl_s)
        if self.ready_file is not None:
            self.ready_file.parent.mkdir(parents=True, exist_ok=True)
            self.ready_file.touch()

    def _ready_loop(self) -> None:
        beats = 0
        while not self._ready_stop.wait(self.heartbeat_ttl_s / 3):
            beats += 1
            try:
                self._beat_ready()
                if beats % 3 == 0:
                    self._find_abandoned()
            except Exception:
                log.warning("readiness heartbeat failed", exc_info=True)
        self._withdraw_redis()

    def _find_abandoned(self) -> None:
        """RQ's started-registry cleanup, every ``heartbeat_ttl_s``: a job whose worker died
        (its RQ heartbeat expired) is re-queued or failed with ``worker_lost`` by the live
        workers themselves, busy or idle, with no gateway ``/metrics`` scrape needed."""
        self.store.running_count()

    def request_stop(self, signum: Any, frame: Any) -> None:
        """SIGTERM/SIGINT (warm shutdown): stop advertising readiness, finish the current job,
        take no new one. Runs inside a signal handler, so it takes no lock and calls no Redis
        (the main thread may hold the connection pool's lock); the readiness thread withdraws
        the Redis entry. A second signal is RQ's cold shutdown."""
        self._shutdown_requested_date = now()
        signal.signal(signal.SIGINT, self.request_force_stop)
        signal.signal(signal.SIGTERM, self.request_force_stop)
        self._withdraw_now()
        if self.get_state() == WorkerStatus.BUSY:
            self._stop_requested = True  # RQ's loop stops after this job
        else:
            raise StopRequested()

    def unsubscribe(self) -> None:
        """RQ's, without its shutdown race: RQ unsubscribes, then stops the pubsub reader
        thread and waits for it; a reader that gets the unsubscribe reply before the stop flag
        waits up to 60 s for a new subscription, so a warm shutdown took a minute. Ending the
        reader's loop first lets the reply wake it straight out."""
        if self.pubsub_thread is not None:
            self.pubsub_thread.stop(timeout=0)
        super().unsubscribe()  # type: ignore[no-untyped-call]

    # --- job heartbeats -----------------------------------------------------------------
    def get_heartbeat_ttl(self, job: Job) -> int:
        """Short TTL for RQ's started-registry entry; :meth:`execute_job` keeps renewing it."""
        return max(4, self.heartbeat_ttl_s * 2)

    def execute_job(self, job: Job, queue: Queue) -> None:
        stop = threading.Event()
        beat = threading.Thread(target=self._job_heartbeats, args=(job, stop),
                                name="mmd-job-heartbeat", daemon=True)
        beat.start()
        try:
            super().execute_job(job, queue)
        finally:
            stop.set()
            beat.join(timeout=5)

    def run(self, job: Job) -> str:
        """The body of every RQ job: claim compatible queued jobs (``MMD_MAX_BATCH`` > 1), run
        them with ``job`` as one batch (``JobRunner.run_many``), give back the claimed jobs the
        batch never reached. Returns ``job``'s final status."""
        job_id = str(job.args[0]) if job.args else job.id
        if self.batcher is None:
            return self.runner.run(job_id)
        queue = next((q for q in self.queues if q.name == job.origin), None) or Queue(
            job.origin, connection=self.connection)
        extras = self.batcher.claim(job, queue, ttl=self.get_heartbeat_ttl(job))
        try:
            return self.runner.run_many([job_id, *extras])[0]
        finally:
            self.batcher.finish(queue)

    def _job_heartbeats(self, job: Job, stop: threading.Event) -> None:
        while not stop.wait(max(1.0, self.heartbeat_ttl_s / 3)):
            if self.execution is None:
                continue
            try:
                self.maintain_heartbeats(job)
                if self.batcher is not None:
                    self.batcher.heartbeat(self.get_heartbeat_ttl(job))
            except Exception:
                log.debug("job heartbeat failed", exc_info=True)
