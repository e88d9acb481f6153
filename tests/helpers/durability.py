"""Checks shared by the durability tests: submitting, waiting for, and verifying many jobs on a
stack whose workers get killed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from redis import Redis
from rq import Queue, Worker

from tests.helpers.stack import Stack

TERMINAL = ("succeeded", "failed", "canceled")


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
