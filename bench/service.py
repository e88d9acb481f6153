"""Jobs per minute through gateway + worker for N concurrent jobs, plain against optimised,
measured in the same run and printed as one table.

    python3 bench/service.py                           # tiny preset, CPU, N = 1 4 8
    python3 bench/service.py --concurrency 8 --batch   # + the optimised worker with MMD_MAX_BATCH=8
    python3 bench/service.py --device cuda --preset landscape --worker-env MMD_PRECISION=fp16
    --batch
    python3 bench/service.py --url http://127.0.0.1:8000 --api-key KEY   # an existing service
    python3 bench/service.py --latency --stages        # + gateway latency and per-stage timing

Modes (each its own real ``mmd gateway`` + ``mmd worker`` processes on one real redis-server,
all started before measuring so that the modes run interleaved for each N):

* ``plain``: what the official code computes: official sampler settings (DPM-Solver 20 steps
  order 3 singlestep, SR DDIM 25), worker with fp32, math attention, NCHW, no compile, SR one
  frame per call (``MMD_SR_MAX_BATCH_FRAMES=1``), one job at a time (``MMD_MAX_BATCH=1``);
* ``optimised``: the fast preset's sampler settings (core/sampling.py) sent
  explicitly in the request body, worker speed switches at their defaults (plus ``--worker-env``),
  ``MMD_MAX_BATCH=1``;
* ``batched`` (``--batch``): ``optimised`` with dynamic batching, ``MMD_MAX_BATCH`` = the largest N.

N clients each run ``--rounds`` jobs back to back (submit, poll ``GET /jobs/{id}``, download the
MP4), so N jobs are in flight. A client polls after 5 % of the time its job has waited so far
(20 ms to ``--poll-interval`` s), so latency resolution is ~5 % and polling costs the 2-core
gateway little. ``wall`` runs from the first submission to the last download; latency is one
job's submit -> MP4 downloaded as the client saw it. ``x plain`` = jobs/min over the plain row's at
the same N.
With ``--url`` the server's worker settings apply to both modes: only the request bodies differ.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import percentile
from core.sampling import SuperResolutionParams
from model.samplers import SamplerSpec
from worker.sampling import preset_specs, sampler_spec

FAST_BASE, FAST_SR = preset_specs("fast")
OFFICIAL_BASE, OFFICIAL_SR = preset_specs("official")

MODES = ("plain", "optimised", "batched")
TERMINAL = ("succeeded", "failed", "canceled")
# Worker settings of the plain path (model.speed.PLAIN, fp32, SR batch 1, no batching).
PLAIN_ENV = {"MMD_PRECISION": "fp32", "MMD_CHANNELS_LAST": "false",
             "MMD_CHANNELS_LAST_BASE": "false", "MMD_SDPA_BACKEND": "math", "MMD_COMPILE": "false",
             "MMD_CUDA_GRAPHS": "false", "MMD_SR_MAX_BATCH_FRAMES": "1", "MMD_MAX_BATCH": "1"}


@dataclass(frozen=True)
class Row:
    """One (N, mode) measurement: ``latencies_s`` and ``batch_sizes`` of the succeeded jobs."""

    concurrency: int
    mode: str
    jobs: int
    succeeded: int
    wall_s: float
    latencies_s: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    errors: tuple[str, ...] = ()

    @property
    def jobs_per_min(self) -> float:
        return 60.0 * self.succeeded / self.wall_s if self.wall_s > 0 else 0.0


def _base_body(spec: SamplerSpec) -> dict[str, Any]:
    """``spec`` as the request's ``sampler`` field (warns if the API cannot express it)."""
    body = {"name": spec.name, "steps": spec.steps, "order": spec.order, "method": spec.method,
            "eta": spec.eta}
    if SamplerSpec(**body) != spec:
        print(f"warning: the request schema cannot express {spec}; sending {body}",
              file=sys.stderr)
    return body


def sr_spec_of(name: str, steps: int) -> SamplerSpec:
    """The SR ``SamplerSpec`` a request's ``super_resolution`` sampler name and steps run."""
    return sampler_spec(SuperResolutionParams(sampler=name, steps=steps).sampler_params())  # type: ignore[arg-type]


def _sr_body(spec: SamplerSpec) -> dict[str, Any]:
    """``spec`` as the request's ``super_resolution`` sampler fields (the worker maps them
    through ``core.sampling.SR_VARIANTS``; warns if that gives another sampler)."""
    body = {"sampler": spec.name, "steps": spec.steps}
    if sr_spec_of(spec.name, spec.steps) != spec:
        print(f"warning: the request schema cannot express SR {spec}; sending {body}",
              file=sys.stderr)
    return body


def request_bodies(*, base_steps: int | None = None, sr_steps: int | None = None,
                   sr: bool = True) -> dict[str, dict[str, Any]]:
    """``{"plain": body, "optimised": body}`` for ``POST /generate``: official and fast sampler
    settings, each with its steps replaced by ``base_steps`` / ``sr_steps`` when given."""
    bodies = {}
    for mode, base, sr_spec in (("plain", OFFICIAL_BASE, OFFICIAL_SR),
                                ("optimised", FAST_BASE, FAST_SR)):
        if base_steps is not None:
            base = replace(base, steps=base_steps, order=min(base.order, base_steps))
        if sr_steps is not None:
            sr_spec = sr_spec_of(sr_spec.name, sr_steps)
        bodies[mode] = {"sampler": _base_body(base),
                        "super_resolution": {**_sr_body(sr_spec), "enabled": sr}}
    return bodies


async def measure(base: str, concurrency: int, body: dict[str, Any], *, mode: str,
                  rounds: int = 1, timeout_s: float = 3600, poll_interval_s: float = 1.0,
                  headers: dict[str, str] | None = None) -> Row:
    """``concurrency`` clients each run ``rounds`` jobs of ``body`` back to back."""
    if concurrency < 1 or rounds < 1:
        raise ValueError(f"concurrency and rounds must be >= 1; got {concurrency}, {rounds}")
    latencies: list[float] = []
    batch_sizes: list[int] = []
    errors: list[str] = []
    deadline = time.monotonic() + timeout_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def one_job(c: httpx.AsyncClient, seed: int) -> None:
        t0 = time.perf_counter()
        r = await c.post("/generate", json={**body, "seed": seed})
        if r.status_code != 202:
            errors.append(f"submit {r.status_code}: {r.text[:200]}")
            return
        job_id = r.json()["id"]
        while (view := (await c.get(f"/jobs/{job_id}")).json())["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                errors.append(f"job {job_id} still {view['status']} after {timeout_s} s")
                return
            waited = time.perf_counter() - t0
            await asyncio.sleep(min(poll_interval_s, max(0.02, 0.05 * waited)))
        if view["status"] != "succeeded":
            errors.append(f"job {job_id} {view['status']}: {view.get('error')}")
            return
        mp4 = await c.get(f"/jobs/{job_id}/result", follow_redirects=True)
        if mp4.status_code != 200 or len(mp4.content) != view["result"]["bytes"]:
            errors.append(f"job {job_id}: result download {mp4.status_code}, "
                          f"{len(mp4.content)} of {view['result']['bytes']} bytes")
            return
        latencies.append(time.perf_counter() - t0)
        batch_sizes.append(int(view["result"].get("batch_size", 1)))

    async def client(c: httpx.AsyncClient, k: int) -> None:
        for r in range(rounds):
            await one_job(c, 1000 * k + r)

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits,
                                 headers=headers or {}) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, k) for k in range(concurrency)))
        wall = time.perf_counter() - t0
    return Row(concurrency, mode, concurrency * rounds, len(latencies), wall, tuple(latencies),
               tuple(batch_sizes), tuple(errors))


def format_table(rows: Sequence[Row]) -> str:
    """One line per row; ``x plain`` = jobs/min over the plain row's at the same N."""
    plain = {r.concurrency: r.jobs_per_min for r in rows if r.mode == "plain"}
    head = (f"{'N':>3} {'mode':<10}{'jobs':>5}{'ok':>4}{'wall s':>9}{'jobs/min':>10}"
            f"{'p50 s':>9}{'p90 s':>9}{'batch':>7}{'x plain':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lat = list(r.latencies_s)
        p50, p90 = (percentile(lat, 50), percentile(lat, 90)) if lat else (float("nan"),) * 2
        batch = statistics.mean(r.batch_sizes) if r.batch_sizes else float("nan")
        ratio = (f"{r.jobs_per_min / plain[r.concurrency]:.2f}x"
                 if plain.get(r.concurrency) else "-")
        lines.append(f"{r.concurrency:>3} {r.mode:<10}{r.jobs:>5}{r.succeeded:>4}{r.wall_s:>9.2f}"
                     f"{r.jobs_per_min:>10.2f}{p50:>9.2f}{p90:>9.2f}{batch:>7.1f}{ratio:>9}")
        lines += [f"    error: {e}" for e in r.errors[:3]]
    return "\n".join(lines)


def worker_env(mode: str, *, preset: str, device: str, threads: int, max_batch: int,
               extra: dict[str, str] | None = None, warmup: bool = True) -> dict[str, str]:
    """The environment of ``mode``'s gateway and workers (``extra`` = ``--worker-env``, not
    applied to the plain mode)."""
    env = {"MMD_MODELS": f'{{"default": {{"preset": "{preset}"}}}}', "MMD_DEVICE": device,
           "MMD_TORCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MMD_LOG_LEVEL": "WARNING", "MMD_WARMUP": str(warmup).lower()}
    if mode == "plain":
        return {**env, **PLAIN_ENV}
    return {**env, **(extra or {}), "MMD_MAX_BATCH": str(max_batch if mode == "batched" else 1)}


@contextmanager
def stacks(modes: Sequence[str], tmp: Path, *, workers: int, **env_args: Any) -> Iterator[dict]:
    """One real redis-server and, per mode, a gateway + ``workers`` warmed-up workers;
    yields ``{mode: tests.e2e.conftest.Stack}``."""
    from tests.helpers.servers import redis_server, wait_for
    from tests.helpers.stack import start_stack, stop_stack

    def start(mode: str) -> Any:
        env = worker_env(mode, **env_args)
        stack = start_stack(redis, tmp / mode, **env)
        try:
            for _ in range(workers - 1):
                stack.add_worker(**env)
            for n in range(2, workers + 1):
                wait_for(lambda n=n: (tmp / mode / f"ready{n}").exists(), 300,
                         f"{mode} worker {n}", None, tmp / mode / f"worker{n}.log")
        except BaseException:
            stop_stack(stack)
            raise
        return stack

    with ExitStack() as exit_stack:
        redis = exit_stack.enter_context(redis_server(tmp / "redis"))
        with ThreadPoolExecutor(len(modes)) as pool:  # stacks start in parallel
            futures = {mode: pool.submit(start, mode) for mode in modes}
        started = {}
        for mode, future in futures.items():
            if future.exception() is None:
                started[mode] = future.result()
                exit_stack.callback(stop_stack, started[mode])
        for future in futures.values():
            future.result()  # the first start error, after the others are scheduled to stop
        yield started


def run_bench(concurrency: Sequence[int], *, modes: Sequence[str] = ("plain", "optimised"),
              url: str | None = None, workers: int = 1, threads: int = 2, rounds: int = 1,
              preset: str = "tiny", device: str = "cpu", base_steps: int | None = None,
              sr_steps: int | None = None, sr: bool = True, poll_interval_s: float = 1.0,
              timeout_s: float = 3600, worker_extra: dict[str, str] | None = None,
              headers: dict[str, str] | None = None, warmup: bool = True) -> list[Row]:
    """Measure every (N, mode), N-major so that the modes interleave; returns the rows.
    ``warmup=False``: workers skip their warm-up generation (quicker start; smoke tests)."""
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {MODES}; got {list(modes)}")
    if url is not None and "batched" in modes:
        raise ValueError("mode 'batched' needs the self-started stack (its worker runs with "
                         "MMD_MAX_BATCH=N); drop --url or --batch")
    bodies = request_bodies(base_steps=base_steps, sr_steps=sr_steps, sr=sr)
    bodies["batched"] = bodies["optimised"]
    with tempfile.TemporaryDirectory(prefix="mmd-bench-") as tmp, ExitStack() as exit_stack:
        if url is None:
            started = exit_stack.enter_context(stacks(
                modes, Path(tmp), workers=workers, preset=preset, device=device,
                threads=threads, max_batch=max(concurrency), extra=worker_extra, warmup=warmup))
            bases = {m: s.base for m, s in started.items()}
        else:
            bases = {m: url for m in modes}
        rows = []
        for n in concurrency:
            for m in modes:
                rows.append(asyncio.run(measure(
                    bases[m], n, bodies[m], mode=m, rounds=rounds, timeout_s=timeout_s,
                    poll_interval_s=poll_interval_s, headers=headers)))
                print(f"  measured N={n} {m}: {rows[-1].jobs_per_min:.2f} jobs/min",
                      file=sys.stderr, flush=True)
        return rows


def stage_timing(base: str, body: dict[str, Any], runs: int) -> None:
    """Submit -> result of ``runs`` jobs one at a time, split into queue wait and stages."""
    print(f"== submit -> result, one job at a time ({runs} runs): {body}")
    rows = []
    with httpx.Client(base_url=base, timeout=30) as c:
        for i in range(runs):
            t0 = time.perf_counter()
            job_id = c.post("/generate", json={**body, "seed": i}).json()["id"]
            while (view := c.get(f"/jobs/{job_id}").json())["status"] in ("queued", "running"):
                time.sleep(0.02)
            size = len(c.get(f"/jobs/{job_id}/result", follow_redirects=True).content)
            wall = time.perf_counter() - t0
            assert view["status"] == "succeeded", view
            ts = {k: datetime.fromisoformat(view[k]) for k in
                  ("created_at", "started_at", "finished_at")}
            wait = (ts["started_at"] - ts["created_at"]).total_seconds()
            run = (ts["finished_at"] - ts["started_at"]).total_seconds()
            stages = view["result"]["stage_seconds"]
            rows.append((wall, wait, run))
            print(f"  run {i}: client {wall:.3f} s | queue wait {wait:.3f} s | worker {run:.3f} s"
                  f" | " + " ".join(f"{k} {v:.3f}" for k, v in stages.items())
                  + f" | {size} bytes")
    med = statistics.median
    print(f"  median: client {med(r[0] for r in rows):.3f} s, queue wait "
          f"{med(r[1] for r in rows):.3f} s, worker {med(r[2] for r in rows):.3f} s")


def _pct(values: list[float]) -> str:
    pct = [percentile(values, q) * 1e3 for q in (50, 90, 99, 100)]
    return (f"n={len(values)} p50 {pct[0]:.1f} ms  p90 {pct[1]:.1f} ms  p99 {pct[2]:.1f} ms  "
            f"max {pct[3]:.1f} ms")


async def latency(base: str, clients: int, per_client: int) -> None:
    """Gateway latency of ``POST /generate`` then ``GET /jobs/{id}`` from concurrent clients."""
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


def _extras(args: argparse.Namespace) -> None:
    """``--stages`` / ``--latency``: on ``--url`` or on a fresh optimised stack whose worker is
    stopped before the latency phase (submitted jobs just queue: gateway + Redis alone)."""
    body = request_bodies(base_steps=args.base_steps, sr_steps=args.sr_steps,
                          sr=not args.no_sr)["optimised"]
    with tempfile.TemporaryDirectory(prefix="mmd-bench-") as tmp, ExitStack() as exit_stack:
        base, stack = args.url, None
        if base is None:
            stack = exit_stack.enter_context(stacks(
                ["optimised"], Path(tmp), workers=1, preset=args.preset, device=args.device,
                threads=args.threads, max_batch=1, extra=dict(args.worker_env)))["optimised"]
            base = stack.base
        if args.stages:
            stage_timing(base, body, args.stage_runs)
        if args.latency:
            if stack is not None:
                for proc in stack.workers():
                    proc.terminate()
                    proc.wait(60)
            asyncio.run(latency(base, 1, 200))  # unloaded reference
            asyncio.run(latency(base, args.clients, args.requests))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=None, help="an existing gateway (default: start stacks)")
    p.add_argument("--api-key", default=None, help="Bearer key for a gateway that needs one")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8], help="N (1 4 8)")
    p.add_argument("--rounds", type=int, default=1, help="jobs per client, back to back (1)")
    p.add_argument("--batch", action="store_true", help="also the 'batched' mode")
    p.add_argument("--no-plain", action="store_true", help="skip the plain mode")
    p.add_argument("--workers", type=int, default=1, help="workers per stack (1)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker (2)")
    p.add_argument("--preset", default="tiny", help="model preset, random weights (tiny)")
    p.add_argument("--device", default="cpu", help="MMD_DEVICE of the workers (cpu)")
    p.add_argument("--worker-env", action="append", default=[], metavar="MMD_X=V",
                   type=lambda s: tuple(s.split("=", 1)),
                   help="extra setting of the optimised/batched workers (repeatable)")
    p.add_argument("--base-steps", type=int, default=None,
                   help="base sampler steps of both modes (default: 20 plain, FAST_BASE's)")
    p.add_argument("--sr-steps", type=int, default=None,
                   help="SR sampler steps of both modes (default: 25 plain, FAST_SR's)")
    p.add_argument("--no-sr", action="store_true", help="super-resolution off in both modes")
    p.add_argument("--poll-interval", type=float, default=1.0,
                   help="longest wait between two polls of a job, s (1.0)")
    p.add_argument("--timeout", type=float, default=3600, help="bound per (N, mode), s")
    p.add_argument("--stages", action="store_true", help="also per-stage timing of single jobs")
    p.add_argument("--stage-runs", type=int, default=3)
    p.add_argument("--latency", action="store_true", help="also gateway latency (no worker)")
    p.add_argument("--clients", type=int, default=50, help="latency phase clients (50)")
    p.add_argument("--requests", type=int, default=20, help="latency: requests per client")
    args = p.parse_args()
    if any(len(kv) != 2 for kv in args.worker_env):
        p.error("--worker-env takes MMD_NAME=VALUE")
    modes = [m for m in MODES if (m != "plain" or not args.no_plain)
             and (m != "batched" or args.batch)]
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    rows = run_bench(args.concurrency, modes=modes, url=args.url, workers=args.workers,
                     threads=args.threads, rounds=args.rounds, preset=args.preset,
                     device=args.device, base_steps=args.base_steps, sr_steps=args.sr_steps,
                     sr=not args.no_sr, poll_interval_s=args.poll_interval,
                     timeout_s=args.timeout, worker_extra=dict(args.worker_env), headers=headers)
    bodies = request_bodies(base_steps=args.base_steps, sr_steps=args.sr_steps, sr=not args.no_sr)
    where = (f"url={args.url} (the server's worker settings apply to both modes)" if args.url
             else f"preset={args.preset} device={args.device} workers={args.workers} "
                  f"threads={args.threads} worker-env={dict(args.worker_env)}")
    print(f"{where} rounds={args.rounds} load={os.getloadavg()[0]:.1f}")
    for mode in ("plain", "optimised"):
        print(f"  {mode} body: {bodies[mode]}")
    print(format_table(rows))
    if args.stages or args.latency:
        _extras(args)
    return 0 if all(r.succeeded == r.jobs for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
