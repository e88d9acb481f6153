"""Service figures: submit->result time of a small job (queue wait and per stage), then gateway
latency of submit and poll under concurrent clients.

    python3 bench/service.py                 # starts redis-server + mmd gateway + mmd worker
    python3 bench/service.py --url http://127.0.0.1:8000 --skip-latency   # an existing service

With the self-started stack, the worker is stopped (SIGTERM) before the latency phase so that the
numbers measure the gateway and Redis alone (submitted jobs just queue up).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def start_stack(tmp: Path, threads: int) -> tuple[str, list[subprocess.Popen]]:
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("redis-server not found (apt-get install redis-server)")
    rport, gport = _port(), _port()
    procs = [subprocess.Popen([redis_bin, "--port", str(rport), "--bind", "127.0.0.1", "--save",
                               "", "--dir", str(tmp)], stdout=subprocess.DEVNULL)]
    env = {**os.environ, "MMD_REDIS_URL": f"redis://127.0.0.1:{rport}/0",
           "MMD_DATA_DIR": str(tmp / "data"), "MMD_PORT": str(gport),
           "MMD_WORKER_METRICS_PORT": str(_port()), "MMD_WORKER_READY_FILE": str(tmp / "ready"),
           "MMD_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": str(threads),
           # a local bench stack: no API keys, no per-key limits
           "MMD_OPEN_MODE": "true", "MMD_RATE_LIMIT_PER_MINUTE": "0",
           "MMD_MAX_ACTIVE_JOBS_PER_KEY": "0", "PYTHONPATH": str(REPO)}
    for sub in ("gateway", "worker"):
        procs.append(subprocess.Popen([sys.executable, "-m", "service.cli", sub], cwd=REPO,
                                      env=env))
    base = f"http://127.0.0.1:{gport}"
    _wait(base + "/readyz", 300)
    return base, procs


def job_timing(base: str, body: dict, runs: int) -> None:
    print(f"== submit -> result ({runs} runs): {body}")
    rows = []
    with httpx.Client(base_url=base, timeout=30) as c:
        for i in range(runs):
            t0 = time.perf_counter()
            job_id = c.post("/generate", json={**body, "seed": i}).json()["id"]
            while (view := c.get(f"/jobs/{job_id}").json())["status"] in ("queued", "running"):
                time.sleep(0.02)
            size = len(c.get(f"/jobs/{job_id}/result").content)
            wall = time.perf_counter() - t0
            assert view["status"] == "succeeded", view
            ts = {k: datetime.fromisoformat(view[k]) for k in
                  ("created_at", "started_at", "finished_at")}
            wait = (ts["started_at"] - ts["created_at"]).total_seconds()
            run = (ts["finished_at"] - ts["started_at"]).total_seconds()
            stages = view["result"]["stage_seconds"]
            rows.append((wall, wait, run, stages))
            print(f"  run {i}: client {wall:.3f} s | queue wait {wait:.3f} s | worker {run:.3f} s"
                  f" | " + " ".join(f"{k} {v:.3f}" for k, v in stages.items())
                  + f" | {size} bytes")
    med = statistics.median
    print(f"  median: client {med(r[0] for r in rows):.3f} s, queue wait "
          f"{med(r[1] for r in rows):.3f} s, worker {med(r[2] for r in rows):.3f} s")


def _pct(values: list[float]) -> str:
    values = sorted(values)
    q = statistics.quantiles(values, n=100, method="inclusive")
    return (f"n={len(values)} p50 {q[49] * 1e3:.1f} ms  p90 {q[89] * 1e3:.1f} ms  "
            f"p99 {q[98] * 1e3:.1f} ms  max {values[-1] * 1e3:.1f} ms")


async def latency(base: str, clients: int, per_client: int) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as c:
        ids: list[str] = []
        submit: list[float] = []
        poll: list[float] = []

        async def submitter() -> None:
            for _ in range(per_client):
                t0 = time.perf_counter()
                r = await c.post("/generate", json={"sampler": {"steps": 2}})
                submit.append(time.perf_counter() - t0)
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])

        t0 = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(clients)))
        submit_wall = time.perf_counter() - t0

        async def poller(k: int) -> None:
            for j in range(per_client):
                t1 = time.perf_counter()
                r = await c.get(f"/jobs/{ids[(k * per_client + j) % len(ids)]}")
                poll.append(time.perf_counter() - t1)
                assert r.status_code == 200

        t0 = time.perf_counter()
        await asyncio.gather(*(poller(k) for k in range(clients)))
        poll_wall = time.perf_counter() - t0
    print(f"== gateway latency, {clients} concurrent clients x {per_client} requests")
    print(f"  POST /generate   {_pct(submit)}  ({len(submit) / submit_wall:.0f} req/s)")
    print(f"  GET /jobs/{{id}}  {_pct(poll)}  ({len(poll) / poll_wall:.0f} req/s)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=None, help="an existing gateway (default: start a stack)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="base DPM-Solver steps")
    p.add_argument("--sr-steps", type=int, default=25, help="SR DDIM steps")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--requests", type=int, default=20, help="requests per client and phase")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the worker")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-jobs", action="store_true")
    args = p.parse_args()
    procs: list[subprocess.Popen] = []
    tmp = tempfile.TemporaryDirectory(prefix="mmd-bench-")
    try:
        base = args.url
        if base is None:
            base, procs = start_stack(Path(tmp.name), args.threads)
        body = {"sampler": {"name": "dpm_solver", "steps": args.steps},
                "super_resolution": {"sampler": "ddim", "steps": args.sr_steps}}
        if not args.skip_jobs:
            job_timing(base, body, args.runs)
        if not args.skip_latency:
            if procs:
                procs[-1].terminate()  # the worker: queued jobs now stay queued
                procs[-1].wait(60)
            asyncio.run(latency(base, 1, 200))  # unloaded reference
            asyncio.run(latency(base, args.clients, args.requests))
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
