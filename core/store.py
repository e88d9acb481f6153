"""Job records in Redis, shared by the gateway (writes queued/canceled) and the worker (running,
progress, succeeded/failed/canceled). No torch here.

One hash per job, ``{prefix}:job:{id}``: ``spec`` (JobSpec JSON), ``status``, ``created_at``,
``started_at``, ``finished_at``, ``progress``, ``error``, ``result`` (JSON), ``cancel`` ("1" once a
cancel was asked for) and ``attempts``. Status changes go through one Lua script so that a cancel
and a worker picking the job up can never both win; that script and the progress write also
append the job's event (``{prefix}:events:{id}``, :mod:`core.events`) in the same call. RQ only
carries the job id to the worker (``worker.jobs.run_job``) and provides the queue, the timeout
and the abandoned-job retries.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Callback, Queue, Retry
from rq.exceptions import AbandonedJobError
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty

from core.contract import JobError, JobResult, JobSpec, JobStatus, JobView, Progress
from core.events import APPEND_AFTER_TRANSITION_LUA, PROGRESS_LUA, events_key
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

JOB_FUNCTION = "worker.jobs.run_job"
FAILURE_CALLBACK = "core.store.on_rq_failure"

# KEYS[1] = job hash, KEYS[2] = its event stream (core.events); ARGV[1] = allowed current
# statuses, comma separated; ARGV[2] = the stream's max length; ARGV[3..] = field, value
_TRANSITION_LUA = APPEND_AFTER_TRANSITION_LUA + """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {0, ''} end
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == cur then
    if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
    if #KEYS > 1 then append_event(ARGV[2]) end
    return {1, cur}
  end
end
return {0, cur}
"""


def redis_client(url: str, *, retry_s: float) -> Redis:
    """A client that rides out a Redis outage (restart, failover) of about ``retry_s`` seconds:
    each command is retried on connection errors with backoff capped at 1 s, reconnecting as
    it goes, instead of failing the job or killing the worker."""
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry as RedisRetry

    retries = max(1, int(retry_s) + 4)  # the first few waits are shorter than 1 s
    return Redis.from_url(
        url, health_check_interval=30,
        retry=RedisRetry(ExponentialBackoff(cap=1.0, base=0.1), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError])


def utcnow() -> datetime:
    return datetime.now(UTC)


def result_key(job_id: str, sample: int) -> str:
    """The storage key of sample ``sample`` of job ``job_id``'s result MP4."""
    return f"results/{job_id}/sample_{sample}.mp4"


class JobStore:
    """Reads and writes job records; every method is one or two Redis round trips."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._transition = redis.register_script(_TRANSITION_LUA)
        self._progress = redis.register_script(PROGRESS_LUA)

    # --- keys --------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return self.settings.key("job", job_id)

    def events_key(self, job_id: str) -> str:
        return events_key(self.settings, job_id)

    @property
    def queue(self) -> Queue:
        return Queue(self.settings.queue_name, connection=self.redis)

    # --- gateway side ------------------------------------------------------------------
    def create_and_enqueue(self, spec: JobSpec, owner: str = "open") -> None:
        """Store the record (status queued, ``owner`` = the submitting key id, see
        ``service.auth``) and put the id on the RQ queue."""
        key = self.job_key(spec.id)
        progress = Progress(stage="queued")
        with self.redis.pipeline() as pipe:
            pipe.hset(
                key,
                mapping={
                    "spec": spec.model_dump_json(),
                    "owner": owner,
                    "status": JobStatus.queued.value,
                    "created_at": spec.created_at.isoformat(),
                    "progress": progress.model_dump_json(),
                    "attempts": "0",
                },
            )
            pipe.expire(key, self.settings.result_ttl_s)
            pipe.xadd(self.events_key(spec.id), {"status": JobStatus.queued.value,
                                                 "progress": progress.model_dump_json()})
            pipe.expire(self.events_key(spec.id), self.settings.result_ttl_s)
            pipe.execute()
        retries = self.settings.job_retries
        self.queue.enqueue(
            JOB_FUNCTION,
            spec.id,
            job_id=spec.id,
            job_timeout=self.settings.job_timeout_s,
            result_ttl=self.settings.result_ttl_s,
            failure_ttl=self.settings.result_ttl_s,
            retry=Retry(max=retries) if retries > 0 else None,
            on_failure=Callback(FAILURE_CALLBACK),
            description=f"{spec.mode} {spec.id}",
            meta={"key_prefix": self.settings.key_prefix},
        )

    def owned_by(self, job_id: str, owner: str) -> bool:
        """Whether job ``job_id`` exists and was submitted by key id ``owner`` (records written
        before owners existed belong to the open-mode owner ``"open"``)."""
        spec, stored = self.redis.hmget(self.job_key(job_id), ["spec", "owner"])
        return spec is not None and (_text(stored) if stored else "open") == owner

    def exists(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.job_key(job_id)))

    def spec(self, job_id: str) -> JobSpec | None:
        raw = self.redis.hget(self.job_key(job_id), "spec")
        return JobSpec.model_validate_json(raw) if raw else None

    def status(self, job_id: str) -> JobStatus | None:
        raw = self.redis.hget(self.job_key(job_id), "status")
        return JobStatus(_text(raw)) if raw else None

    def view(self, job_id: str) -> JobView | None:
        """The ``GET /jobs/{id}`` body, or None for an unknown id."""
        raw = self.redis.hgetall(self.job_key(job_id))
        if not raw or b"spec" not in raw:
            return None
        h = {_text(k): _text(v) for k, v in raw.items()}
        status = JobStatus(h["status"])
        position = None
        if status is JobStatus.queued:
            pos = self.queue.get_job_position(job_id)
            position = int(pos) if pos is not None else None
        return JobView(
            id=job_id,
            status=status,
            progress=Progress.model_validate_json(h["progress"]) if "progress" in h else Progress(),
            created_at=datetime.fromisoformat(h["created_at"]),
            started_at=datetime.fromisoformat(h["started_at"]) if h.get("started_at") else None,
            finished_at=datetime.fromisoformat(h["finished_at"]) if h.get("finished_at") else None,
            queue_position=position,
            error=JobError.model_validate_json(h["error"]) if h.get("error") else None,
            result=JobResult.model_validate_json(h["result"]) if h.get("result") else None,
            request=JobSpec.model_validate_json(h["spec"]),
        )

    def cancel(self, job_id: str) -> JobStatus | None:
        """Ask for cancellation. A queued job is canceled at once (and never runs); a running
        job gets the cancel flag, which the worker checks at every sampler step. Returns the
        status after the call (None for an unknown id)."""
        key = self.job_key(job_id)
        now = utcnow().isoformat()
        ok, _cur = self._move(job_id, [JobStatus.queued], JobStatus.canceled, finished_at=now,
                              cancel="1", error="",
                              progress=Progress(stage="canceled").model_dump_json())
        if ok:
            self.queue.remove(job_id)
            return JobStatus.canceled
        ok, cur = self._run_transition(key, [JobStatus.running], {"cancel": "1"})
        if ok:
            return JobStatus.running
        return JobStatus(cur) if cur else None

    # --- worker side -------------------------------------------------------------------
    def claim(self, job_id: str) -> bool:
        """queued -> running (also running -> running: a retry of an abandoned attempt); the
        stage turns ``starting`` (a running job never reports ``queued``)."""
        ok, _ = self._move(job_id, [JobStatus.queued, JobStatus.running], JobStatus.running,
                           started_at=utcnow().isoformat(),
                           progress=Progress(stage="starting").model_dump_json())
        if ok:
            self.redis.hincrby(self.job_key(job_id), "attempts", 1)
        return ok

    def cancel_requested(self, job_id: str) -> bool:
        return self.redis.hget(self.job_key(job_id), "cancel") == b"1"

    def set_progress(self, job_id: str, progress: Progress) -> bool:
        """Write the progress and append it to the job's event stream; returns whether a cancel
        was asked for (one atomic Lua call, one round trip)."""
        cancel = self._progress(keys=[self.job_key(job_id), self.events_key(job_id)],
                                args=[progress.model_dump_json(), self.settings.events_max_len])
        return bool(cancel == b"1")

    def succeed(self, job_id: str, result: JobResult) -> bool:
        return self._finish(job_id, JobStatus.succeeded, result=result.model_dump_json(),
                            progress=Progress(stage="done", step=1, total=1, fraction=1.0))

    def fail(self, job_id: str, error: JobError) -> bool:
        return self._finish(job_id, JobStatus.failed, error=error.model_dump_json())

    def mark_canceled(self, job_id: str) -> bool:
        return self._finish(job_id, JobStatus.canceled,
                            progress=Progress(stage="canceled"))

    def requeue(self, job_id: str) -> bool:
        """running -> queued (an abandoned attempt that RQ will retry)."""
        ok, _ = self._move(job_id, [JobStatus.running], JobStatus.queued,
                           progress=Progress(stage="queued").model_dump_json())
        return ok

    # --- workers' liveness -------------------------------------------------------------
    def worker_heartbeat(self, name: str, ttl_s: int) -> None:
        """Record that worker ``name`` is alive and ready for ``ttl_s`` seconds."""
        key = self.settings.key("workers")
        with self.redis.pipeline() as pipe:
            pipe.zadd(key, {name: time.time() + ttl_s})
            pipe.zremrangebyscore(key, 0, time.time())
            pipe.execute()

    def running_count(self) -> int:
        """Jobs in RQ's started registry. Counting runs RQ's cleanup, which finds jobs whose
        worker stopped heartbeating (abandoned) and hands them to :func:`on_rq_failure` (retry or
        fail). Safe from any thread (timer-based callback timeout, not SIGALRM)."""
        registry = StartedJobRegistry(queue=self.queue, death_penalty_class=TimerDeathPenalty)
        return int(registry.count)

    def worker_gone(self, name: str) -> None:
        self.redis.zrem(self.settings.key("workers"), name)

    def ready_workers(self) -> int:
        return int(self.redis.zcount(self.settings.key("workers"), time.time(), "+inf"))

    # --- internals ---------------------------------------------------------------------
    def _finish(self, job_id: str, status: JobStatus, *, progress: Progress | None = None,
                **fields: str) -> bool:
        extra = dict(fields, finished_at=utcnow().isoformat())
        if progress is not None:
            extra["progress"] = progress.model_dump_json()
        ok, _ = self._move(job_id, [JobStatus.queued, JobStatus.running], status, **extra)
        if ok:
            with self.redis.pipeline() as pipe:
                pipe.expire(self.job_key(job_id), self.settings.result_ttl_s)
                pipe.expire(self.events_key(job_id), self.settings.result_ttl_s)
                pipe.execute()
        return ok

    def _move(self, job_id: str, allowed: list[JobStatus], to: JobStatus,
              **fields: str) -> tuple[bool, str]:
        """A status change; it is appended to the job's event stream in the same call."""
        return self._run_transition(self.job_key(job_id), allowed, dict(fields, status=to.value),
                                    events=self.events_key(job_id))

    def _run_transition(self, key: str, allowed: list[JobStatus], fields: dict[str, str],
                        events: str | None = None) -> tuple[bool, str]:
        args: list[str | int] = [",".join(s.value for s in allowed), self.settings.events_max_len]
        for name, value in fields.items():
            args.extend((name, value))
        ok, cur = self._transition(keys=[key] if events is None else [key, events], args=args)
        return bool(ok), _text(cur)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def on_rq_failure(job: Any, connection: Redis, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ failure callback: keeps our record in step when RQ itself fails a job — in practice an
    abandoned job (its worker died), detected by RQ's started-job registry cleanup. With retries
    left the job goes back to queued (RQ re-enqueues it), otherwise it fails with
    ``worker_lost``. Errors inside the job function never get here: the job catches them."""
    settings = get_settings()
    prefix = (getattr(job, "meta", None) or {}).get("key_prefix", settings.key_prefix)
    if prefix != settings.key_prefix:
        settings = settings.model_copy(update={"key_prefix": prefix})
    store = JobStore(connection, settings)
    if store.status(job.id) not in (JobStatus.queued, JobStatus.running):
        return
    if store.cancel_requested(job.id):
        store.mark_canceled(job.id)
        return
    retries_left = getattr(job, "retries_left", None) or 0
    if retries_left > 0:
        store.requeue(job.id)
        log.warning("job %s lost its worker; retrying (%d retries left)", job.id, retries_left)
        return
    abandoned = exc_type is AbandonedJobError or isinstance(exc, AbandonedJobError)
    code = "worker_lost" if abandoned else "internal"
    message = (
        "the worker running this job stopped (crash, OOM or eviction) and no retries are left; "
        "resubmit the job"
        if abandoned
        else f"job failed outside the pipeline: {exc_type.__name__ if exc_type else 'error'}: {exc}"
    )
    store.fail(job.id, JobError(code=code, message=message))
