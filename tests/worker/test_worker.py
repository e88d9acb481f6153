"""MMDWorker with real RQ on a real Redis: jobs run in-process (no fork), progress lands in
the job hash, readiness is advertised and withdrawn, abandoned jobs are retried."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from redis import Redis
from rq.job import Job
from rq.registry import StartedJobRegistry

from core.contract import JobStatus
from core.settings import Settings
from core.store import JobStore
from tests.helpers.jobs import FakeGenerate, make_runner, make_spec
from worker.worker import MMDWorker


def test_burst_worker_runs_job_without_forking(settings: Settings, redis_conn: Redis,
                                               tmp_path: Path) -> None:
    store = JobStore(redis_conn, settings)
    ready = tmp_path / "ready"
    worker = MMDWorker([store.queue], connection=redis_conn, name=f"test-{uuid.uuid4().hex[:8]}",
                       runner=make_runner(settings, store, FakeGenerate()), ready_file=ready,
                       heartbeat_ttl_s=3)
    try:
        spec = make_spec()
        store.create_and_enqueue(spec)
        worker.mark_ready()
        assert ready.exists() and store.ready_workers() == 1
        assert worker.work(burst=True) is True
        assert store.status(spec.id) is JobStatus.succeeded
        rq_job = Job.fetch(spec.id, connection=redis_conn)
        assert rq_job.return_value() == "succeeded"
        progress = store.view(spec.id).progress  # the job hash: the one progress record
        assert (progress.stage, progress.fraction) == ("done", 1.0)
        assert rq_job.timeout == settings.job_timeout_s == 3600
    finally:
        worker.mark_unready()
    assert not ready.exists() and store.ready_workers() == 0


def test_readiness_expires_without_heartbeat(settings: Settings, redis_conn: Redis) -> None:
    store = JobStore(redis_conn, settings)
    store.worker_heartbeat("gone", 1)
    assert store.ready_workers() == 1
    time.sleep(1.1)
    assert store.ready_workers() == 0


def _abandon(settings: Settings, redis_conn: Redis) -> tuple[JobStore, str]:
    """Enqueue a job, let a worker take it, then pretend the worker died (expired heartbeat)."""
    store = JobStore(redis_conn, settings)
    spec = make_spec()
    store.create_and_enqueue(spec)
    worker = MMDWorker([store.queue], connection=redis_conn, name=f"test-{uuid.uuid4().hex[:8]}",
                       runner=make_runner(settings, store, FakeGenerate()), ready_file=None)
    job, _queue = worker.dequeue_job_and_maintain_ttl(timeout=1)
    assert job.id == spec.id
    worker.prepare_execution(job)
    assert store.claim(spec.id)
    registry = StartedJobRegistry(queue=store.queue)
    assert spec.id in registry.get_job_ids(cleanup=False)
    registry.cleanup(timestamp=time.time() + 10_000)  # as if its heartbeats stopped long ago
    return store, spec.id


def test_abandoned_job_is_requeued_while_retries_remain(settings: Settings,
                                                        redis_conn: Redis) -> None:
    store, job_id = _abandon(settings, redis_conn)
    assert store.status(job_id) is JobStatus.queued
    assert job_id in store.queue.get_job_ids()


def test_abandoned_job_without_retries_fails_worker_lost(settings: Settings,
                                                         redis_conn: Redis) -> None:
    store, job_id = _abandon(settings.model_copy(update={"job_retries": 0}), redis_conn)
    view = store.view(job_id)
    assert view is not None and view.status is JobStatus.failed
    assert view.error is not None and view.error.code == "worker_lost"


def test_job_timeout_fails_with_timeout_code(settings: Settings, redis_conn: Redis) -> None:
    short = settings.model_copy(update={"job_timeout_s": 1})
    store = JobStore(redis_conn, short)
    slow = FakeGenerate(on_step=lambda s, i: time.sleep(0.5))
    worker = MMDWorker([store.queue], connection=redis_conn, name=f"test-{uuid.uuid4().hex[:8]}",
                       runner=make_runner(short, store, slow), ready_file=None)
    try:
        spec = make_spec()
        store.create_and_enqueue(spec)
        t0 = time.monotonic()
        worker.work(burst=True)
        assert time.monotonic() - t0 < 2.4  # stopped by the 1 s timeout, not after 5 steps
    finally:
        worker.mark_unready()
    view = store.view(spec.id)
    assert view is not None and view.status is JobStatus.failed
    assert view.error is not None and view.error.code == "timeout"
    assert "MMD_JOB_TIMEOUT_S=1" in view.error.message


def test_workers_of_one_process_have_distinct_names(settings: Settings, redis_conn: Redis) -> None:
    """RQ refuses to register a second live worker under one name; a process may run several
    (one after another, or a registration left behind), so each instance gets its own."""
    store = JobStore(redis_conn, settings)
    runner = make_runner(settings, store, FakeGenerate())
    first = MMDWorker([store.queue], connection=redis_conn, runner=runner, ready_file=None)
    second = MMDWorker([store.queue], connection=redis_conn, runner=runner, ready_file=None)
    assert first.name != second.name
    first.register_birth()  # left registered, as by a worker that never shut down
    try:
        t0 = time.monotonic()
        assert second.work(burst=True) is False  # registers, finds no job, shuts down
        assert time.monotonic() - t0 < 10  # no minute-long wait on the command channel
    finally:
        first.register_death()
