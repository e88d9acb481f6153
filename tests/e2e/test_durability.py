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
from typing import Any

import httpx
import pytest
from redis import Redis
from rq import Queue, Worker

from tests.e2e.conftest import Stack, start_stack, stop_stack
from tests.e2e.servers import RedisServer, restartable_redis, wait_for

pytestmark = pytest.mark.e2e

TERMINAL = ("succeeded", "failed", "canceled")
HEARTBEAT_TTL_S = "2"  # RQ job heartbeat 4 s; each worker cleans the registry every 2 s
KILLS = 4  # in the random run, each followed by a replacement worker
RETRIES = KILLS + 1  # more than the kills: a job can never run out of retries


def job_body(seed: int, steps: int) -> dict[str, Any]:
    return {"seed": seed, "sampler": {"name": "ddim", "steps": steps},
            "super_resolution": {"enabled": False}}


def submit(c: httpx.Client, body: dict[str, Any]) -> str:
    r = c.post("/generate", json=body)
    assert r.status_code == 202, (r.status_code, r.text)
    return str(r.json()["id"])


def wait_all(stack: Stack, ids: list[str], timeout: float, tick: Any = None) -> dict[str, dict]:
    """Poll every job until all are terminal; ``tick()`` runs between rounds."""
    deadline = time.monotonic() + timeout
    views: dict[str, dict] = {}
    with stack.client() as c:
        while time.monotonic() < deadline:
            for job_id in ids:
                if views.get(job_id, {}).get("status") not in TERMINAL:
                    views[job_id] = c.get(f"/jobs/{job_id}").json()
            if all(v["status"] in TERMINAL for v in views.values()):
                return views
            if tick is not None:
                tick()
            time.sleep(0.2)
    pending = {i: v["status"] for i, v in views.items() if v["status"] not in TERMINAL}
    raise AssertionError(f"{len(pending)} jobs not terminal after {timeout} s: {pending}\n"
                         + stack.log_tail())


def check_results(stack: Stack, views: dict[str, dict], tmp: Path) -> None:
    """Every job succeeded, its result downloads and decodes to its frames + audio, and storage
    holds exactly one object per job (no duplicate, no stray partial file)."""
    import av

    failed = {i: v.get("error") for i, v in views.items() if v["status"] != "succeeded"}
    assert not failed, f"jobs not succeeded: {failed}\n{stack.log_tail()}"
    with stack.client() as c:
        for job_id, view in views.items():
            r = c.get(f"/jobs/{job_id}/result")
            assert r.status_code == 200, (job_id, r.status_code, r.text[:200])
            assert len(r.content) == view["result"]["bytes"]
            path = tmp / f"{job_id}.mp4"
            path.write_bytes(r.content)
            with av.open(str(path)) as box:
                frames = sum(1 for _ in box.decode(video=0))
            with av.open(str(path)) as box:
                samples = sum(f.samples for f in box.decode(audio=0))
            res = view["result"]
            assert frames == round(res["duration_s"] * res["fps"]) > 0, (job_id, frames, res)
            assert samples > 0, (job_id, samples)  # the tiny preset's audio is 2,048 samples
    data = Path(stack.env["MMD_DATA_DIR"])
    for job_id in views:
        stored = sorted(p.name for p in (data / "results" / job_id).iterdir())
        assert stored == ["sample_0.mp4"], (job_id, stored)
    strays = [p for p in data.rglob("*") if p.is_file() and p.parent.name != ".partial"
              and not (p.name == "sample_0.mp4" and p.parent.parent.name == "results")]
    assert strays == [], strays


def busy_workers(stack: Stack) -> list[int]:
    """Pids of our workers that RQ lists as busy with a job."""
    redis = Redis.from_url(stack.env["MMD_REDIS_URL"])
    queue = Queue(stack.env["MMD_QUEUE_NAME"], connection=redis)
    alive = {p.pid for p in stack.workers()}
    return [w.pid for w in Worker.all(queue=queue)
            if w.get_state() == "busy" and w.get_current_job_id() and w.pid in alive]


def kill_pid(stack: Stack, pid: int) -> None:
    proc = next(p for p in stack.workers() if p.pid == pid)
    proc.kill()  # SIGKILL: no cleanup, no warm shutdown
    proc.wait(10)


def attempts(stack: Stack, ids: list[str]) -> dict[str, int]:
    redis = Redis.from_url(stack.env["MMD_REDIS_URL"])
    prefix = stack.env["MMD_KEY_PREFIX"]
    return {i: int(redis.hget(f"{prefix}:job:{i}", "attempts") or 0) for i in ids}


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
