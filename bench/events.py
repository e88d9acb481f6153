"""Cost of a job's progress write now that it also appends the job's event (one Lua call:
HSET progress + XADD + PEXPIRE + HGET cancel) against the plain HSET + HGET pipeline it replaced,
on a real redis-server (a temp one, or ``--redis URL``); and the memory of one capped stream.

    python3 bench/events.py
    python3 bench/events.py --redis redis://127.0.0.1:6379/0 --writes 5000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.contract import JobSpec, Progress
from core.sampling import SamplerParams, SuperResolutionParams
from core.settings import Settings
from core.store import JobStore, utcnow


def per_write_us(fn: Callable[[Progress], object], writes: int, repeats: int = 3) -> float:
    fn(Progress(stage="base"))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(writes):
            fn(Progress(stage="base", step=i, total=writes, fraction=i / writes))
        best = min(best, (time.perf_counter() - t0) / writes * 1e6)
    return best


def run(url: str, writes: int) -> None:
    redis = Redis.from_url(url)
    tag = uuid.uuid4().hex[:8]
    store = JobStore(redis, Settings(redis_url=url, key_prefix=f"bench{tag}", queue_name=tag))
    spec = JobSpec(id="job", mode="joint", model="default", seed=1, num_samples=1,
                   sampler=SamplerParams(), super_resolution=SuperResolutionParams(),
                   created_at=utcnow())
    store.create_and_enqueue(spec)
    store.claim("job")
    key = store.job_key("job")

    def before(p: Progress) -> object:
        with redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, "progress", p.model_dump_json())
            pipe.hget(key, "cancel")
            return pipe.execute()

    old = per_write_us(before, writes)
    new = per_write_us(lambda p: store.set_progress("job", p), writes)
    events = store.events_key("job")
    print(f"progress write, HSET+HGET pipeline (before):  {old:6.0f} us  (best of 3 x {writes})")
    print(f"progress write + event, one Lua call (now):   {new:6.0f} us")
    print(f"one job's stream: {redis.xlen(events)} events (MMD_EVENTS_MAX_LEN="
          f"{store.settings.events_max_len}, approximate), {redis.memory_usage(events)} bytes")
    store.queue.empty()
    redis.delete(key, events)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis", help="a Redis URL (default: a temporary redis-server)")
    p.add_argument("--writes", type=int, default=2000)
    args = p.parse_args()
    if args.redis:
        run(args.redis, args.writes)
        return
    from tests.e2e.servers import redis_server

    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as url:
        run(url, args.writes)


if __name__ == "__main__":
    main()
