"""Dynamic batching: after dequeuing a job, claim compatible queued jobs and run them together.

Compatible (:func:`spec_key`): same model and ``num_samples``, and equal
``model.pipeline.batch_key`` (joint mode, the same samplers and SR settings, nothing that couples
the samples of a batch: conditional modes, adaptive DPM-Solver and stochastic SR samplers always
run alone). Up to ``MMD_MAX_BATCH`` jobs, waiting at most ``MMD_BATCH_WAIT_MS`` for more
to arrive, and only as many as fit ``MMD_BATCH_MEMORY_MB`` by
``worker.memory.estimate_batch_bytes`` (the
larger of the base stage and one SR chunk).

Claiming is atomic across workers and against a crash: one Redis transaction (``WATCH`` on the
queue list) removes the id from RQ's queue and gives the job an RQ execution in the started
registry, so a worker killed at any point leaves each job either queued or started, never in
neither, and exactly one worker can claim it. The execution is renewed while the claim loop waits
and then by the worker's job heartbeat thread like the job RQ gave it, so a batch whose worker
died is found abandoned and retried like any job. The worker then runs the lead job and the
claimed ones with ``JobRunner.run_many`` (one ``generate_batch`` call, each job finished on its
own).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from redis import Redis
from redis.exceptions import WatchError
from rq.executions import Execution
from rq.job import Job
from rq.job import JobStatus as RQStatus
from rq.queue import Queue

from core.contract import JobStatus
from worker.memory import estimate_batch_bytes, estimate_stage_bytes
from worker.sampling import spec_key

if TYPE_CHECKING:
    from worker.runner import JobRunner

log = logging.getLogger(__name__)
SCAN_LIMIT = 200  # queued ids looked at per scan (the head of the queue)
CLAIM_RETRIES = 5  # transactions tried per job before leaving it queued (busy queue)


class Batcher:
    """Claims compatible jobs for the job the worker just dequeued (see the module doc)."""

    def __init__(self, runner: JobRunner, connection: Redis, worker_name: str) -> None:
        self.runner = runner
        self.settings = runner.settings
        self.connection = connection
        self.worker_name = worker_name
        self.active: list[tuple[Job, Execution]] = []
        self._lock = threading.Lock()
        self._warned = False  # logged once that the memory budget holds no batch

    def claim(self, job: Job, queue: Queue, ttl: int) -> list[str]:
        """Claim up to ``MMD_MAX_BATCH - 1`` jobs compatible with ``job``; returns their ids,
        to run with ``job`` (empty: run ``job`` alone)."""
        limit = self.settings.max_batch
        lead = self.runner.store.spec(str(job.args[0]) if job.args else job.id)
        if lead is None or limit <= 1:
            return []
        key = spec_key(lead)
        models = self.runner.models.get(lead.model)
        if key is None or models is None:
            return []
        budget = self.settings.batch_memory_mb * 2**20

        def fits(jobs: int) -> bool:
            need = estimate_batch_bytes(models, lead.num_samples * jobs,
                                        sr=lead.super_resolution.enabled)
            return need <= budget

        if not fits(2) and not self._warned:
            self._warned = True
            log.warning("MMD_BATCH_MEMORY_MB=%d cannot hold 2 jobs like %s (estimated %s MiB); "
                        "they run alone: raise MMD_BATCH_MEMORY_MB (or, if sr is the larger, lower "
                        "MMD_SR_MAX_BATCH_FRAMES)", self.settings.batch_memory_mb, job.id,
                        {k: v // 2**20 for k, v in estimate_stage_bytes(
                            models, 2 * lead.num_samples,
                            sr=lead.super_resolution.enabled).items()})
        claimed: list[str] = []
        deadline = renewed = time.monotonic()
        deadline += self.settings.batch_wait_ms / 1000
        while True:
            for raw in self.connection.lrange(queue.key, 0, SCAN_LIMIT - 1):
                if len(claimed) + 1 >= limit or not fits(len(claimed) + 2):
                    break
                job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                spec = self.runner.store.spec(job_id)
                if spec is None or spec_key(spec) != key:
                    continue
                if self.runner.store.status(job_id) != JobStatus.queued:
                    continue
                if self._claim_one(queue.key, job_id, ttl):
                    claimed.append(job_id)
            full = len(claimed) + 1 >= limit or not fits(len(claimed) + 2)
            left = deadline - time.monotonic()
            if full or left <= 0:
                break
            if time.monotonic() - renewed > ttl / 3:  # a long MMD_BATCH_WAIT_MS: keep them ours
                self.heartbeat(ttl)
                renewed = time.monotonic()
            time.sleep(min(0.02, left))
        if claimed:
            log.info("job %s runs in a batch with %s", job.id, claimed)
        return claimed

    def _claim_one(self, queue_key: str, job_id: str, ttl: int) -> bool:
        """Take ``job_id`` off the queue list and mark it started by this worker (an execution in
        the started registry) in one transaction; False if another worker got it first (or the
        queue kept changing under us: it stays queued, nothing is lost)."""
        try:
            job: Job | None = Job.fetch(job_id, connection=self.connection)
        except Exception:  # noqa: BLE001 - RQ job hash gone (expired): the record decides
            job = None
        for _ in range(CLAIM_RETRIES):
            with self.connection.pipeline() as pipe:
                try:
                    pipe.watch(queue_key)  # type: ignore[no-untyped-call]
                    if pipe.lpos(queue_key, job_id) is None:
                        return False
                    pipe.multi()
                    pipe.lrem(queue_key, 1, job_id)
                    execution = None
                    if job is not None:
                        job.prepare_for_execution(self.worker_name, pipeline=pipe)
                        execution = Execution.create(job, ttl, pipe, worker_name=self.worker_name)
                    pipe.execute()
                except WatchError:
                    continue  # the queue changed between WATCH and EXEC: look again
            if job is None or execution is None:
                log.warning("claimed job %s has no RQ job; running it from its record", job_id)
            else:
                with self._lock:
                    self.active.append((job, execution))
            return True
        return False

    def heartbeat(self, ttl: int) -> None:
        """Renew the claimed jobs' started-registry entries (called by the job heartbeat)."""
        with self._lock:
            active = list(self.active)
        if not active:
            return
        with self.connection.pipeline() as pipe:
            for job, execution in active:
                execution.heartbeat(job.started_job_registry, ttl, pipeline=pipe)
            pipe.execute()

    def finish(self, queue: Queue) -> None:
        """Move the claimed RQ jobs to finished (their real status is in the job record); ones
        the runner never took (still queued in their record: the batch ended before it
        reached them) go back to the front of the queue."""
        with self._lock:
            active, self.active = self.active, []
        for job, execution in active:
            unused = self.runner.store.status(job.id) == JobStatus.queued
            with self.connection.pipeline() as pipe:
                execution.delete(job, pipe)
                if unused:
                    job.set_status(RQStatus.QUEUED, pipeline=pipe)
                    pipe.lpush(queue.key, job.id)
                else:
                    job.set_status(RQStatus.FINISHED, pipeline=pipe)
                    job.finished_job_registry.add(job, self.settings.result_ttl_s, pipeline=pipe)
                pipe.execute()
