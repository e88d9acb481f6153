"""Durability on real processes: workers killed with SIGKILL mid-job, and a redis-server (AOF,
``appendfsync always``) killed and restarted with jobs queued and running. No job is lost, none
is duplicated in storage, and every ``succeeded`` job's result downloads and decodes.

Abandoned jobs are found by the surviving workers' own registry cleanup (every
``MMD_WORKER_HEARTBEAT_TTL_S``); these tests never scrape the gateway's ``/metrics``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.durability import (
    TERMINAL,
    attempts,
    busy_workers,
    check_results,
    job_body,
    kill_pid,
    submit,
    wait_all,
)
from tests.helpers.servers import RedisServer, restartable_redis, wait_for
from tests.helpers.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e


HEARTBEAT_TTL_S = "2"  # RQ job heartbeat 4 s; each worker cleans the registry every 2 s


KILLS = 4  # in the random run, each followed by a replacement worker


RETRIES = KILLS + 1  # more than the kills: a job can never run out of retries


@pytest.fixture(scope="module")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with restartable_redis(tmp_path_factory.mktemp("aof-redis"), aof=True) as server:
        yield server


@pytest.fixture(scope="module")
def kill_stack(aof_redis: RedisServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(aof_redis.url, tmp_path_factory.mktemp("kill"), MMD_WARMUP="false",
                    MMD_WORKER_HEARTBEAT_TTL_S=HEARTBEAT_TTL_S, MMD_JOB_RETRIES=str(RETRIES),
                    MMD_REDIS_RETRY_S="30")
    yield s
    stop_stack(s)


def test_killed_workers_job_completes_on_the_other(kill_stack: Stack,
                                                   tmp_path: Path) -> None:
    """Two workers; SIGKILL the one running the job: the survivor finds it abandoned on its
    own (no /metrics scrape) and completes it."""
    stack = kill_stack
    stack.add_worker()
    wait_for(lambda: len(stack.workers()) == 2 and httpx.get(stack.base + "/readyz").json()
             .get("workers", 0) >= 2, 60, "second worker")
    with stack.client() as c:
        job_id = submit(c, job_body(1, 24))
    stack.wait(job_id, timeout=60, until=lambda v: v["progress"]["step"] >= 1
               or v["status"] in TERMINAL)
    busy = busy_workers(stack)
    assert len(busy) == 1, busy
    killed_at = time.monotonic()
    kill_pid(stack, busy[0])
    view = stack.wait(job_id, timeout=90)
    print(f"\nkilled worker's job done {time.monotonic() - killed_at:.1f} s after the kill")
    assert view["result"]["nfe"]["base"] == 24
    assert attempts(stack, [job_id])[job_id] == 2
    check_results(stack, {job_id: view}, tmp_path)


def test_random_kills_lose_and_duplicate_nothing(kill_stack: Stack, tmp_path: Path) -> None:
    """20 jobs, 3 workers; SIGKILL a random busy worker at random times (KILLS kills, each
    followed by a replacement): every job succeeds exactly once in storage."""
    stack = kill_stack
    for _ in range(3 - len(stack.workers())):
        stack.add_worker()
    rng = random.Random(6)
    with stack.client() as c:
        ids = [submit(c, job_body(100 + i, rng.choice((4, 8, 12)))) for i in range(20)]
    kills: list[float] = []
    next_kill = time.monotonic() + rng.uniform(1.0, 3.0)

    def maybe_kill() -> None:
        nonlocal next_kill
        if len(kills) >= KILLS or time.monotonic() < next_kill:
            return
        busy = busy_workers(stack)
        if not busy:
            return
        kill_pid(stack, rng.choice(busy))
        kills.append(time.monotonic())
        stack.add_worker()  # what a supervisor (Kubernetes, compose restart) does
        next_kill = time.monotonic() + rng.uniform(1.5, 4.0)

    views = wait_all(stack, ids, timeout=150, tick=maybe_kill)
    tries = attempts(stack, ids)
    print(f"\n{len(kills)} kills; attempts per job: {sorted(tries.values())}")
    assert len(kills) >= KILLS - 1, f"only {len(kills)} kills landed: jobs too short?"
    assert sum(tries.values()) > len(ids), "no kill interrupted a job"
    check_results(stack, views, tmp_path)


def test_redis_restart_with_queued_jobs(kill_stack: Stack, aof_redis: RedisServer,
                                        tmp_path: Path) -> None:
    """SIGKILL redis-server (AOF, appendfsync always) with jobs running on every worker and
    more queued, restart it 3 s later on the same port and dir: the same worker processes (none
    restarted) and the gateway reconnect on their own, and every job completes."""
    stack = kill_stack
    for _ in range(3 - len(stack.workers())):
        stack.add_worker()
    wait_for(lambda: httpx.get(stack.base + "/readyz").json().get("workers", 0) >= 3, 60,
             "three ready workers")
    pids = sorted(p.pid for p in stack.workers())
    with stack.client() as c:
        ids = [submit(c, job_body(200 + i, 12)) for i in range(9)]
    wait_for(lambda: len(busy_workers(stack)) >= 2, 60, "busy workers")
    aof_redis.kill()
    with stack.client() as c:  # the gateway answers, but cannot reach Redis
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
    time.sleep(3)
    aof_redis.start()
    views = wait_all(stack, ids, timeout=120)
    assert sorted(p.pid for p in stack.workers()) == pids, "a worker died during the outage"
    print(f"\nafter the Redis restart: attempts per job {sorted(attempts(stack, ids).values())}")
    check_results(stack, views, tmp_path)
