"""A real stack for end-to-end tests and benchmarks: redis-server, `mmd gateway` and `mmd worker`
processes (``start_stack`` / ``stop_stack``)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx

from tests.helpers.servers import free_port, mmd_process, stop, wait_for


@dataclass
class Stack:
    base: str  # gateway URL
    env: dict[str, str]
    worker: Popen
    gateway: Popen
    worker_metrics: str
    logs: Path
    extra_workers: list[Popen] = field(default_factory=list)

    def add_worker(self, **env: str) -> Popen:
        """Another `mmd worker` on the same queue (no metrics port, no warm-up, own ready
        file); stopped with the stack."""
        n = len(self.extra_workers) + 2
        proc = mmd_process(["worker"], {**self.env, "MMD_WORKER_METRICS_PORT": "0",
                                        "MMD_WARMUP": "false",
                                        "MMD_WORKER_READY_FILE": str(self.logs / f"ready{n}"),
                                        **env}, self.logs / f"worker{n}.log")
        self.extra_workers.append(proc)
        return proc

    def workers(self) -> list[Popen]:
        """Every worker process started for this stack that is still alive."""
        return [p for p in [self.worker, *self.extra_workers] if p.poll() is None]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30)

    def wait(self, job_id: str, *, timeout: float = 180, until: Any = None) -> dict[str, Any]:
        """Poll ``GET /jobs/{id}`` until terminal (or until ``until(view)`` is true)."""
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while time.monotonic() < deadline:
                view = c.get(f"/jobs/{job_id}").json()
                if until(view) if until else view["status"] in ("succeeded", "failed", "canceled"):
                    return view
                time.sleep(0.1)
        raise AssertionError(f"job {job_id} not done after {timeout} s: {view}\n"
                             + self.log_tail())

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}"
                         for p in sorted(self.logs.glob("*.log")))


# The stack's model unless a test asks for another: the random tiny preset named "default"
# (None = no MMD_MODELS at all: the unconfigured default, the shipped demo model).
TINY_MODELS = '{"default": {"preset": "tiny"}}'


def stack_env(redis: str, tmp: Path, *, models: str | None = TINY_MODELS,
              **extra: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    env = {
        "MMD_REDIS_URL": redis, "MMD_DATA_DIR": str(tmp / "data"), "MMD_KEY_PREFIX": f"e{tag}",
        "MMD_QUEUE_NAME": f"e{tag}", "MMD_WORKER_READY_FILE": str(tmp / "ready"),
        "MMD_WORKER_HEARTBEAT_TTL_S": "3", "MMD_WORKER_METRICS_PORT": str(free_port()),
        "MMD_PORT": str(free_port()), "MMD_MAX_UPLOAD_BYTES": "5000000",
        "MMD_WEBHOOK_RETRIES": "0", "MMD_LOG_LEVEL": "INFO",
        "MMD_OPEN_MODE": "true", "MMD_WEBHOOK_ALLOW_PRIVATE": "true",
        "MMD_RATE_LIMIT_PER_MINUTE": "0", "MMD_MAX_ACTIVE_JOBS_PER_KEY": "0",
        "OMP_NUM_THREADS": "1", "MMD_TORCH_THREADS": "1",
    }
    if models is not None:
        env["MMD_MODELS"] = models
    env.update(extra)
    return env


def start_stack(redis: str, tmp: Path, *, models: str | None = TINY_MODELS,
                **extra: str) -> Stack:
    env = stack_env(redis, tmp, models=models, **extra)
    tmp.mkdir(parents=True, exist_ok=True)
    worker = mmd_process(["worker"], env, tmp / "worker.log")
    gateway = mmd_process(["gateway"], env, tmp / "gateway.log")
    stack = Stack(base=f"http://127.0.0.1:{env['MMD_PORT']}", env=env, worker=worker,
                  gateway=gateway, logs=tmp,
                  worker_metrics=f"http://127.0.0.1:{env['MMD_WORKER_METRICS_PORT']}/metrics")
    try:
        wait_for(lambda: httpx.get(stack.base + "/healthz").status_code == 200, 60, "gateway",
                 gateway, tmp / "gateway.log")
        wait_for(lambda: httpx.get(stack.base + "/readyz").status_code == 200, 120,
                 "worker readiness", worker, tmp / "worker.log")
    except BaseException:
        stop_stack(stack)
        raise
    return stack


def stop_stack(stack: Stack) -> None:
    stop(stack.gateway)
    for proc in stack.extra_workers:
        proc.terminate()
    for proc in [stack.worker, *stack.extra_workers]:
        stop(proc, timeout=60)
