"""Load on loopback: 1,000 submissions from 50 concurrent clients against a real gateway and
3 real workers (random ``tiny`` preset, DPM-Solver 1 step, SR off, 1 torch thread each): every
job reaches a terminal status, none is lost, and each has exactly one result object (a
submission resent after a dropped connection carries the same Idempotency-Key, so it cannot make
a second job: ``len(report.statuses) == N`` counts distinct job ids). Prints the submit / poll
latency table of ``bench/load.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry

from bench.load import percentile, run_load, table
from tests.helpers.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

N, CONCURRENCY, WORKERS = 1000, 50, 3
TIMEOUT_S = 420  # a bound, not the expected time (about 1-2 min on an idle 2-core machine)


@pytest.fixture(scope="module")
def load_stack(e2e_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(e2e_redis, tmp_path_factory.mktemp("load"), MMD_WARMUP="false",
                    MMD_LOG_LEVEL="WARNING")
    yield s
    stop_stack(s)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 90) == 3.0


def test_thousand_submissions_none_lost(load_stack: Stack) -> None:
    stack = load_stack
    for _ in range(WORKERS - 1):
        stack.add_worker()
    t0 = time.monotonic()
    report = asyncio.run(run_load(stack.base, n=N, concurrency=CONCURRENCY, timeout_s=TIMEOUT_S))
    print(f"\n{table(report, N, CONCURRENCY)}\n({time.monotonic() - t0:.1f} s)")
    assert report.submit_errors == []
    # A dropped connection is resent with the same Idempotency-Key (bench/load.py): a CI run on
    # a loaded 2-core machine saw 5 of 1,000 submissions drop (httpx ReadError, no gateway log
    # line). More than 2 % dropping would be a gateway problem, not a race.
    assert len(report.retries) <= N // 50, report.retries[:10]
    assert len(report.statuses) == N and len(report.submit_s) == N
    assert report.lost == [], f"{len(report.lost)} jobs not terminal\n{stack.log_tail()}"
    assert report.counts() == {"succeeded": N}, (report.counts(), report.failures)
    assert len(report.poll_s) >= N
    assert len(stack.workers()) == WORKERS  # no worker died under load
    redis = Redis.from_url(stack.env["MMD_REDIS_URL"])
    queue = Queue(stack.env["MMD_QUEUE_NAME"], connection=redis)
    assert queue.count == 0
    assert StartedJobRegistry(queue=queue).count == 0
    results = Path(stack.env["MMD_DATA_DIR"]) / "results"
    stored = {p.parent.name for p in results.glob("*/sample_0.mp4")}
    assert stored == set(report.statuses)
    assert sum(1 for p in results.rglob("*") if p.is_file()) == N
