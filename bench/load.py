"""Load on loopback: N submissions from C concurrent clients, then every job polled to a terminal
status; prints submit / poll latency percentiles and the job outcome counts.

    python3 bench/load.py                         # starts redis-server + gateway + 3 workers
    python3 bench/load.py --n 1000 --concurrency 50 --workers 3
    python3 bench/load.py --url http://127.0.0.1:8000 --n 200   # an existing service

Each job is the cheapest one (DPM-Solver, 1 step of order 1, SR off; the random ``tiny`` preset
when self-started, with ``MMD_WARMUP=false`` and 1 torch thread per worker). A client submits its
share, then polls its oldest unfinished job (the queue is FIFO) every ``poll_interval_s`` until
all are terminal. Every loop is bounded in count and in time (``--timeout``): a job still not
terminal at the end is reported as lost.

Every submission carries an ``Idempotency-Key``; one whose connection drops before an answer
(``httpx.TransportError``: e.g. the server closing an idle keep-alive connection just as the
request goes out) is sent again with the same key, up to ``SUBMIT_TRIES`` times, as a careful
client does: the gateway answers a repeat with the job the first attempt made, if it made one,
so a retry never creates a second job. Retries are counted and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
TERMINAL = ("succeeded", "failed", "canceled")
CHEAP_JOB: dict[str, Any] = {"sampler": {"name": "dpm_solver", "steps": 1, "order": 1},
                             "super_resolution": {"enabled": False}}
SUBMIT_TRIES = 3  # attempts per submission on a dropped connection (same Idempotency-Key)


@dataclass
class LoadReport:
    submit_s: list[float] = field(default_factory=list)  # latency of each POST /generate
    poll_s: list[float] = field(default_factory=list)  # latency of each GET /jobs/{id}
    statuses: dict[str, str] = field(default_factory=dict)  # job id -> last status seen
    submit_errors: list[str] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)  # submissions resent after a dropped one
    failures: dict[str, str] = field(default_factory=dict)  # error code -> one message
    wall_s: float = 0.0

    @property
    def lost(self) -> list[str]:
        return [i for i, s in self.statuses.items() if s not in TERMINAL]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.statuses.values():
            out[s] = out.get(s, 0) + 1
        return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def table(report: LoadReport, n: int, concurrency: int) -> str:
    lines = [f"load: {n} submissions, {concurrency} concurrent clients, "
             f"{report.wall_s:.1f} s wall, outcomes {report.counts()}, "
             f"lost {len(report.lost)}, submit errors {len(report.submit_errors)}, "
             f"resent after a dropped connection {len(report.retries)}",
             *(f"  failed with {code}: {msg[:200]}" for code, msg in report.failures.items()),
             *(f"  submit error {e[:200]}" for e in report.submit_errors[:3]),
             *(f"  resent {e[:200]}" for e in report.retries[:3]),
             f"{'request':<18}{'count':>7}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
             f"{'max ms':>9}{'req/s':>8}"]
    for name, values in (("POST /generate", report.submit_s), ("GET /jobs/{id}", report.poll_s)):
        if not values:
            continue
        pct = [percentile(values, q) * 1000 for q in (50, 90, 99, 100)]
        rate = len(values) / report.wall_s if report.wall_s else 0.0
        lines.append(f"{name:<18}{len(values):>7}" + "".join(f"{v:>9.1f}" for v in pct)
                     + f"{rate:>8.0f}")
    return "\n".join(lines)


async def _submit(c: httpx.AsyncClient, body: dict[str, Any], key: str, label: str,
                  report: LoadReport) -> httpx.Response | None:
    """POST /generate with ``key`` as its Idempotency-Key, resent on a dropped connection (at
    most ``SUBMIT_TRIES`` attempts); None (an error recorded) when no attempt got an answer."""
    for attempt in range(1, SUBMIT_TRIES + 1):
        try:
            return await c.post("/generate", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:
            if attempt == SUBMIT_TRIES:
                report.submit_errors.append(f"{label}: {type(exc).__name__}: {exc} "
                                            f"({SUBMIT_TRIES} attempts)")
                return None
            report.retries.append(f"{label}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.2 * attempt)
        except httpx.HTTPError as exc:  # not a dropped connection: no retry
            report.submit_errors.append(f"{label}: {type(exc).__name__}: {exc}")
            return None
    return None


async def _client(c: httpx.AsyncClient, indices: range, body: dict[str, Any], report: LoadReport,
                  deadline: float, poll_interval_s: float, run: str) -> None:
    mine: list[str] = []
    for i in indices:  # bounded: this client's share of the submissions
        if time.monotonic() > deadline:
            report.submit_errors.append(f"#{i}: not submitted before the deadline")
            continue
        t0 = time.perf_counter()
        r = await _submit(c, {**body, "seed": i}, f"{run}-{i}", f"#{i}", report)
        if r is None:
            continue
        report.submit_s.append(time.perf_counter() - t0)
        if r.status_code != 202:
            report.submit_errors.append(f"#{i}: {r.status_code} {r.text[:200]}")
            continue
        job_id = r.json()["id"]
        report.statuses[job_id] = "queued"
        mine.append(job_id)
    pending = list(mine)
    while pending and time.monotonic() < deadline:  # bounded by the deadline
        job_id = pending[0]
        t0 = time.perf_counter()
        try:
            r = await c.get(f"/jobs/{job_id}")
        except httpx.HTTPError:
            await asyncio.sleep(poll_interval_s)
            continue
        report.poll_s.append(time.perf_counter() - t0)
        view = r.json() if r.status_code == 200 else {"status": f"http {r.status_code}"}
        status = view.get("status", "?")
        report.statuses[job_id] = status
        if view.get("error"):
            report.failures.setdefault(view["error"]["code"], view["error"]["message"])
        if status in TERMINAL:
            pending.pop(0)  # the next one is probably done too: poll it at once
        else:
            await asyncio.sleep(poll_interval_s)


async def run_load(base: str, *, n: int, concurrency: int, timeout_s: float,
                   body: dict[str, Any] | None = None, poll_interval_s: float = 0.5,
                   headers: dict[str, str] | None = None) -> LoadReport:
    """Submit ``n`` jobs from ``concurrency`` clients, then poll each to a terminal status."""
    if n < 1 or concurrency < 1:
        raise ValueError(f"n and concurrency must be >= 1, got n={n}, concurrency={concurrency}")
    report = LoadReport()
    run = uuid.uuid4().hex[:12]  # Idempotency-Keys of this run: f"{run}-{i}"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    started = time.monotonic()
    deadline = started + timeout_s
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits,
                                 headers=headers or {}) as c:
        await asyncio.gather(*(
            _client(c, range(k, n, concurrency), body or CHEAP_JOB, report, deadline,
                    poll_interval_s, run) for k in range(concurrency)))
    report.wall_s = time.monotonic() - started
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", help="an existing gateway (default: start one with --workers)")
    ap.add_argument("--n", type=int, default=1000, help="submissions (default 1000)")
    ap.add_argument("--concurrency", type=int, default=50, help="concurrent clients (default 50)")
    ap.add_argument("--workers", type=int, default=3, help="workers to start (default 3)")
    ap.add_argument("--timeout", type=float, default=600, help="overall time bound, s")
    ap.add_argument("--api-key", default=None, help="Bearer key for a gateway that needs one")
    args = ap.parse_args()
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    if args.url:
        report = asyncio.run(run_load(args.url, n=args.n, concurrency=args.concurrency,
                                      timeout_s=args.timeout, headers=headers))
        print(table(report, args.n, args.concurrency))
        return 1 if report.lost or report.submit_errors else 0
    sys.path.insert(0, str(REPO))
    from tests.helpers.servers import restartable_redis
    from tests.helpers.stack import start_stack, stop_stack

    with tempfile.TemporaryDirectory(prefix="mmd-load-") as tmp_name:
        tmp = Path(tmp_name)
        with restartable_redis(tmp / "redis") as redis:
            stack = start_stack(redis.url, tmp / "stack", MMD_WARMUP="false",
                                MMD_LOG_LEVEL="WARNING")
            try:
                for _ in range(args.workers - 1):
                    stack.add_worker()
                report = asyncio.run(run_load(stack.base, n=args.n,
                                              concurrency=args.concurrency,
                                              timeout_s=args.timeout))
            finally:
                stop_stack(stack)
    print(table(report, args.n, args.concurrency))
    return 1 if report.lost or report.submit_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
