"""The stack of the live-use tests (events, page, signed links, ``mmd submit``): a real
redis-server, one real `mmd worker` (random ``tiny`` preset) and two real gateways on its queue,
one with API keys (A named ``alice``, and B) and one in open mode."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx

from core.keys import hash_key
from tests.helpers.servers import free_port, mmd_process, stop, wait_for
from tests.helpers.stack import Stack, start_stack, stop_stack

KEY_A = "live-key-A-0123456789abcdef"
KEY_B = "live-key-B-fedcba9876543210"
# tiny preset: 8 frames 16x16, SR x4 -> 64x64; a few steps so a job takes seconds
FAST = {"sampler": {"name": "dpm_solver", "steps": 3, "order": 2},
        "super_resolution": {"enabled": True, "sampler": "ddim", "steps": 2}}
LINK_TTL_S = 4  # MMD_RESULT_LINK_TTL_S of the keyed gateway: short, so expiry is observable


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class LiveStack:
    stack: Stack  # worker + keyed gateway
    open_base: str  # the open-mode gateway
    open_gateway: Popen
    open_env: dict[str, str]

    @property
    def base(self) -> str:
        return self.stack.base

    def client(self, key: str | None = KEY_A) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30,
                            headers=bearer(key) if key else {})

    def submit(self, body: dict[str, Any] | None = None, key: str = KEY_A) -> str:
        with self.client(key) as c:
            r = c.post("/generate", json=body if body is not None else {"seed": 1, **FAST})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def wait(self, job_id: str, key: str = KEY_A, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.client(key) as c:
            while time.monotonic() < deadline:
                view = c.get(f"/jobs/{job_id}").json()
                if view["status"] in ("succeeded", "failed", "canceled"):
                    return dict(view)
                time.sleep(0.1)
        raise AssertionError(f"job {job_id} not done: {view}\n{self.stack.log_tail()}")

    def restart_open_gateway(self) -> None:
        """SIGTERM the open gateway (its open event streams are closed after
        MMD_GATEWAY_SHUTDOWN_GRACE_S) and start a new one on the same port."""
        stop(self.open_gateway)
        log = self.stack.logs / "gateway-open-2.log"
        self.open_gateway = mmd_process(["gateway"], self.open_env, log)
        wait_for(lambda: httpx.get(self.open_base + "/healthz").status_code == 200, 60,
                 "open gateway (restarted)", self.open_gateway, log)


def start_live(redis: str, tmp: Path) -> Iterator[LiveStack]:
    keys = json.dumps([f"alice:{hash_key(KEY_A)}", hash_key(KEY_B)])
    stack = start_stack(redis, tmp, MMD_OPEN_MODE="false", MMD_API_KEYS=keys,
                        MMD_RESULT_LINK_TTL_S=str(LINK_TTL_S), MMD_EVENTS_KEEPALIVE_S="0.5",
                        MMD_EVENTS_POLL_S="0.25")
    port = free_port()
    env = {**stack.env, "MMD_OPEN_MODE": "true", "MMD_API_KEYS": "[]", "MMD_PORT": str(port),
           "MMD_RESULT_LINK_TTL_S": "3600", "MMD_GATEWAY_SHUTDOWN_GRACE_S": "1"}
    gateway = mmd_process(["gateway"], env, tmp / "gateway-open.log")
    live = LiveStack(stack, f"http://127.0.0.1:{port}", gateway, env)
    try:
        wait_for(lambda: httpx.get(live.open_base + "/healthz").status_code == 200, 60,
                 "open gateway", gateway, tmp / "gateway-open.log")
        yield live
    finally:
        stop(live.open_gateway)
        stop_stack(stack)


@dataclass
class SSE:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


def read_sse(base: str, job_id: str, key: str | None = KEY_A, last_id: str | None = None,
             timeout: float = 180) -> tuple[httpx.Response, list[SSE], list[str]]:
    """Read ``GET /jobs/{id}/events`` until the server ends it: (response, events, comments).
    A minimal parser of its own (the client's is what the other tests use)."""
    headers = {**(bearer(key) if key else {}), "Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    events: list[SSE] = []
    comments: list[str] = []
    fields: dict[str, list[str]] = {}
    with httpx.stream("GET", f"{base}/jobs/{job_id}/events", headers=headers,
                      timeout=httpx.Timeout(timeout)) as resp:
        if resp.status_code != 200:
            resp.read()
            return resp, events, comments
        for line in resp.iter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif line == "":
                if "data" in fields:
                    ids = fields.get("id")
                    events.append(SSE(fields.get("event", ["message"])[0],
                                      "\n".join(fields["data"]), ids[0] if ids else None))
                fields = {}
            else:
                name, _, value = line.partition(": ")
                fields.setdefault(name, []).append(value)
    return resp, events, comments
