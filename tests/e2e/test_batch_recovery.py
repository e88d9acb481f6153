"""Durability of dynamic batching on real processes: a worker running a BATCH of jobs
(``MMD_MAX_BATCH=3``) is killed with SIGKILL mid-batch; a second worker finds every member
abandoned (the lead job RQ gave the dead worker and the ones it claimed for the batch) and
completes each exactly once, with one result file each.

Real redis-server, real ``mmd gateway`` and ``mmd worker`` processes (random ``tiny`` preset,
SR off, few DDIM steps); helpers shared with ``test_durability.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

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
from tests.helpers.servers import wait_for
from tests.helpers.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

BATCH = 3
STEPS = 30  # long enough that the batch is still running when it is killed


@pytest.fixture(scope="module")
def batch_stack(e2e_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(e2e_redis, tmp_path_factory.mktemp("batch-kill"), MMD_WARMUP="false",
                    MMD_MAX_BATCH=str(BATCH), MMD_BATCH_WAIT_MS="3000",
                    MMD_WORKER_HEARTBEAT_TTL_S="2", MMD_JOB_RETRIES="2")
    yield s
    stop_stack(s)


def test_killed_batch_completes_every_job_once_on_another_worker(batch_stack: Stack,
                                                                 tmp_path: Path) -> None:
    """Worker A runs 3 jobs as one batch; SIGKILL A once every member reported progress; a new
    worker B re-runs all 3 (attempt 2 each): every job succeeds once, one MP4 each, and RQ's
    started and failed registries are left empty."""
    stack = batch_stack
    worker_a = stack.worker
    with stack.client() as c:
        ids = [submit(c, job_body(300 + i, STEPS)) for i in range(BATCH)]

    def batch_running() -> bool:
        with stack.client() as c:
            views = [c.get(f"/jobs/{i}").json() for i in ids]
        assert not any(v["status"] in TERMINAL for v in views), views  # killed too late
        return all(v["status"] == "running" and v["progress"]["step"] >= 1 for v in views)

    wait_for(batch_running, 60, "a running batch of 3 jobs")
    assert busy_workers(stack) == [worker_a.pid]
    assert attempts(stack, ids) == {i: 1 for i in ids}
    kill_pid(stack, worker_a.pid)
    killed_at = time.monotonic()
    with stack.client() as c:  # the kill froze all 3 mid-sampling
        assert all(c.get(f"/jobs/{i}").json()["status"] == "running" for i in ids)

    stack.add_worker()  # worker B: what a supervisor does after the kill
    views = wait_all(stack, ids, timeout=60)
    print(f"\nbatch re-run done {time.monotonic() - killed_at:.1f} s after the kill; batch "
          f"sizes on B: {[v['result']['batch_size'] for v in views.values() if v.get('result')]}")
    assert attempts(stack, ids) == {i: 2 for i in ids}, stack.log_tail()
    for job_id, view in views.items():
        assert view["status"] == "succeeded", (job_id, view, stack.log_tail())
        assert view["result"]["nfe"]["base"] == STEPS, view["result"]
    check_results(stack, views, tmp_path)

    redis = Redis.from_url(stack.env["MMD_REDIS_URL"])
    queue = Queue(stack.env["MMD_QUEUE_NAME"], connection=redis)
    wait_for(lambda: StartedJobRegistry(queue=queue).get_job_ids() == [], 10,
             "an empty started registry")
    assert FailedJobRegistry(queue=queue).get_job_ids() == []
    assert queue.get_job_ids() == []
    ready = httpx.get(stack.base + "/readyz").json()
    assert ready.get("workers") == 1, ready  # B only: A's readiness entry expired
