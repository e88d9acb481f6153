"""The per-job event stream is written in the same Redis call as the job hash (real
redis-server): progress and status transitions append snapshots, the stream lives as long as
the job record, and a progress write is one round trip."""

from __future__ import annotations

from typing import Any

import pytest
from redis import Redis

from core.contract import JobError, JobResult, JobSpec, JobStatus, Progress
from core.events import events_key, parse_entry, parse_event_id
from core.sampling import SamplerParams, SuperResolutionParams
from core.settings import Settings
from core.store import JobStore, utcnow


def _spec(job_id: str) -> JobSpec:
    return JobSpec(id=job_id, mode="joint", model="default", seed=1, num_samples=1,
                   sampler=SamplerParams(), super_resolution=SuperResolutionParams(),
                   created_at=utcnow())


def _events(store: JobStore, job_id: str) -> list[tuple[JobStatus, Progress]]:
    entries: Any = store.redis.xrange(store.events_key(job_id))
    return [parse_entry(fields) for _, fields in entries]


def _result() -> JobResult:
    return JobResult(url="/jobs/j/result", bytes=1, duration_s=0.8, sha256="0" * 64,
                     random_weights=True, model="default", width=64, height=64, fps=10,
                     sample_rate=16000)


def test_every_change_appends_a_snapshot_in_order(store: JobStore) -> None:
    store.create_and_enqueue(_spec("j1"), owner="alice")
    assert store.claim("j1")
    store.set_progress("j1", Progress(stage="base", step=1, total=3, fraction=0.1))
    store.cancel("j1")  # a running job only gets the cancel flag: no status change, no event
    store.set_progress("j1", Progress(stage="base", step=2, total=3, fraction=0.2))
    assert store.succeed("j1", _result())
    got = [(s.value, p.stage, p.step) for s, p in _events(store, "j1")]
    assert got == [("queued", "queued", 0), ("running", "starting", 0), ("running", "base", 1),
                   ("running", "base", 2), ("succeeded", "done", 1)]


def test_failure_and_requeue_are_events(store: JobStore) -> None:
    store.create_and_enqueue(_spec("j2"))
    store.claim("j2")
    store.requeue("j2")
    store.claim("j2")
    store.fail("j2", JobError(code="boom", message="x"))
    assert [s.value for s, _ in _events(store, "j2")] == [
        "queued", "running", "queued", "running", "failed"]


def test_stream_expires_with_the_job_record(store: JobStore, redis_conn: Redis) -> None:
    store.create_and_enqueue(_spec("j3"))
    job, events = store.job_key("j3"), store.events_key("j3")
    assert abs(redis_conn.ttl(job) - redis_conn.ttl(events)) <= 1
    redis_conn.expire(job, 500)  # whatever the record's TTL, the next append copies it
    store.set_progress("j3", Progress(stage="fetch"))
    assert 495 <= redis_conn.ttl(events) <= 500
    store.claim("j3")
    store.succeed("j3", _result())  # finishing resets both to MMD_RESULT_TTL_S
    ttl = store.settings.result_ttl_s
    assert ttl - 2 <= redis_conn.ttl(events) <= ttl and ttl - 2 <= redis_conn.ttl(job) <= ttl


def test_progress_is_one_round_trip(store: JobStore, redis_conn: Redis,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store.create_and_enqueue(_spec("j4"))
    store.claim("j4")
    store.set_progress("j4", Progress(stage="base", step=1, total=9))  # loads the script
    calls: list[Any] = []
    real_execute, real_pipeline = redis_conn.execute_command, redis_conn.pipeline

    def execute(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return real_execute(*args, **kwargs)

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        calls.append("PIPELINE")
        return real_pipeline(*args, **kwargs)

    monkeypatch.setattr(redis_conn, "execute_command", execute)
    monkeypatch.setattr(redis_conn, "pipeline", pipeline)
    assert store.set_progress("j4", Progress(stage="base", step=2, total=9)) is False
    assert calls == ["EVALSHA"]
    redis_conn.hset(store.job_key("j4"), "cancel", "1")
    calls.clear()
    assert store.set_progress("j4", Progress(stage="base", step=3, total=9)) is True
    assert calls == ["EVALSHA"]
    monkeypatch.undo()
    assert [p.step for _, p in _events(store, "j4")][-3:] == [1, 2, 3]


def test_no_event_for_an_unknown_job(store: JobStore, redis_conn: Redis) -> None:
    store.set_progress("ghost", Progress(stage="base"))
    assert not redis_conn.exists(store.events_key("ghost"))


def test_streams_are_capped(settings: Settings, redis_conn: Redis) -> None:
    store = JobStore(redis_conn, settings.model_copy(update={"events_max_len": 10}))
    store.create_and_enqueue(_spec("j5"))
    store.claim("j5")
    for step in range(1, 301):
        store.set_progress("j5", Progress(stage="base", step=step, total=300))
    n = redis_conn.xlen(events_key(store.settings, "j5"))
    assert n < 200  # approximate trimming (whole stream nodes of 100 entries)
    assert _events(store, "j5")[-1][1].step == 300  # the latest state is always kept


@pytest.mark.parametrize("value, expected", [
    ("1700000000000-0", "1700000000000-0"), (" 12-3 ", "12-3"), ("", None), (None, None),
    ("0", None), ("12-3; DROP", None), ("-1-0", None)])
def test_last_event_id_must_be_a_stream_id(value: str | None, expected: str | None) -> None:
    assert parse_event_id(value) == expected
