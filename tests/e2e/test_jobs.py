"""End to end on local storage: all three job kinds through HTTP, MP4s decoded back, cancel of a
running job, idempotent resubmission, and Prometheus scraping both processes."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

from tests.helpers.media import AUDIO, FRAMES, SIZE, decode, write_clip
from tests.helpers.servers import free_port, stop, wait_for
from tests.helpers.stack import Stack
from worker import media

pytestmark = pytest.mark.e2e

# the tiny preset: 8 frames of 16x16 (SR x4 -> 64x64) and 2048 audio samples at 16 kHz; the
# MP4's audio lasts as long as its video (0.8 s: silence after the model's 0.128 s)
MP4_SAMPLES = FRAMES * 16000 // 10


FAST = {"sampler": {"name": "dpm_solver", "steps": 3, "order": 2},
        "super_resolution": {"enabled": True, "sampler": "ddim", "steps": 2}}


def run_job(stack: Stack, tmp: Path, submit: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    with stack.client() as c:
        r = submit(c)
        assert r.status_code == 202, r.text
        view = stack.wait(r.json()["id"])
        assert view["status"] == "succeeded", (view, stack.log_tail())
        mp4 = c.get(view["result"]["url"])
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    res = view["result"]
    assert res["bytes"] == len(mp4.content)
    assert res["sha256"] == hashlib.sha256(mp4.content).hexdigest()
    return view, decode(mp4.content, tmp)


def check_av(info: dict[str, Any]) -> None:
    assert info["frames"] == FRAMES and info["shape"] == (SIZE, SIZE, 3)
    assert info["fps"] == 10.0 and info["rate"] == 16000
    assert MP4_SAMPLES <= info["samples"] <= MP4_SAMPLES + 1024  # AAC frames: 1024 samples


def test_joint_generation(stack: Stack, tmp_path: Path) -> None:
    view, info = run_job(stack, tmp_path, lambda c: c.post("/generate", json={"seed": 1, **FAST}))
    check_av(info)
    full = info["path"].read_bytes()
    with stack.client() as c:  # range requests against the real uvicorn server
        part = c.get(view["result"]["url"], headers={"Range": "bytes=8-107"})
    assert part.status_code == 206 and part.content == full[8:108]
    assert part.headers["content-range"] == f"bytes 8-107/{len(full)}"
    r = view["result"]
    assert r["random_weights"] is True and r["model"] == "default"
    assert (r["width"], r["height"], r["fps"]) == (SIZE, SIZE, 10)
    assert r["duration_s"] == pytest.approx(FRAMES / 10)
    assert r["nfe"]["base"] >= 3 and r["nfe"]["sr"] == 2
    assert {"base", "sr", "mux", "upload"} <= set(r["stage_seconds"])
    assert view["progress"] == {"stage": "done", "step": 1, "total": 1, "fraction": 1.0}
    assert view["started_at"] <= view["finished_at"] and view["queue_position"] is None


def test_video_to_audio_keeps_the_frames(stack: Stack, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", seconds=2.0, size=48)

    def submit(c: httpx.Client) -> httpx.Response:
        with open(clip, "rb") as fh:
            return c.post("/video-to-audio", files={"file": ("clip.mp4", fh, "video/mp4")},
                          data={"seed": "2", "sampler.name": "ddim", "sampler.steps": "3",
                                "super_resolution.enabled": "false"})

    view, info = run_job(stack, tmp_path, submit)
    assert info["frames"] == FRAMES and info["shape"] == (16, 16, 3)  # model size, no SR
    assert view["request"]["mode"] == "video-to-audio"
    expected = media.decode_video_clip(clip, num_frames=FRAMES, fps=10, size=16)
    with av.open(str(info["path"])) as c:
        got = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 12  # H.264 round trip


def test_audio_to_video_keeps_the_audio(stack: Stack, tmp_path: Path) -> None:
    wav = write_clip(tmp_path / "tone.wav", video=False, seconds=1.0)

    def submit(c: httpx.Client) -> httpx.Response:
        with open(wav, "rb") as fh:
            return c.post("/audio-to-video", files={"file": ("tone.wav", fh, "audio/wav")},
                          data={"params": '{"seed": 3, "sampler": {"name": "ddim", "steps": 3},'
                                          ' "super_resolution": {"steps": 2}}'})

    _view, info = run_job(stack, tmp_path, submit)
    check_av(info)
    original = media.decode_audio(wav, num_samples=AUDIO)
    back = media.decode_audio(info["path"], num_samples=AUDIO)
    corr = float(np.corrcoef(original[256:-256], back[256:-256])[0, 1])
    assert corr > 0.9, corr  # the 440 Hz tone survives AAC


def test_cancel_running_job_stops_within_a_step(stack: Stack) -> None:
    long = {"seed": 4, "sampler": {"name": "ddim", "steps": 500},
            "super_resolution": {"enabled": False}}
    with stack.client() as c:
        job_id = c.post("/generate", json=long).json()["id"]
        running = stack.wait(job_id, timeout=120, until=lambda v: v["progress"]["step"] >= 2
                             or (v["status"] != "queued" and v["status"] != "running"))
        assert running["status"] == "running" and running["progress"]["stage"] == "base"
        assert running["progress"]["total"] == 500
        r = c.post(f"/jobs/{job_id}/cancel")
        assert r.status_code == 202
        t0 = time.monotonic()
        done = stack.wait(job_id, timeout=30)
        assert done["status"] == "canceled" and time.monotonic() - t0 < 10
        assert done["progress"]["stage"] == "canceled"
        assert c.get(f"/jobs/{job_id}/result").status_code == 409


def test_idempotent_resubmission(stack: Stack) -> None:
    body = {"seed": 9, **FAST}
    with stack.client() as c:
        a = c.post("/generate", json=body, headers={"Idempotency-Key": "e2e-once"})
        b = c.post("/generate", json=body, headers={"Idempotency-Key": "e2e-once"})
        assert a.status_code == 202 and b.status_code == 200
        assert a.json()["id"] == b.json()["id"]
        assert stack.wait(a.json()["id"])["status"] == "succeeded"


def test_prometheus_scrapes_gateway_and_worker(stack: Stack, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    gw = stack.base.removeprefix("http://")
    wk = stack.worker_metrics.removeprefix("http://").removesuffix("/metrics")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: gateway\n    static_configs:\n      - targets: ['{gw}']\n"
        f"  - job_name: worker\n    static_configs:\n      - targets: ['{wk}']\n")
    port = free_port()
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=fh, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api/v1/query"
    try:
        def value(query: str) -> float | None:
            data = httpx.get(api, params={"query": query}, timeout=5).json()["data"]["result"]
            return sum(float(s["value"][1]) for s in data) if data else None

        def scraped() -> bool:
            finished = value('sum(mmd_jobs_finished_total{job="worker",status="succeeded"})')
            submitted = value('sum(mmd_jobs_submitted_total{job="gateway"})')
            return bool(finished and finished >= 1 and submitted and submitted >= 1)

        wait_for(scraped, 60, "prometheus scrape", proc, log)
        assert value('up{job="worker"}') == 1.0 and value('up{job="gateway"}') == 1.0
        assert value("mmd_worker_ready") == 1.0
    finally:
        stop(proc)


def test_job_of_a_killed_worker_is_retried_by_another(stack: Stack) -> None:
    """SIGKILL the worker mid-job: the heartbeat stops, a /metrics scrape runs RQ's cleanup,
    the job goes back to the queue and a fresh worker completes it."""
    from tests.helpers.servers import mmd_process

    body = {"seed": 11, "sampler": {"name": "ddim", "steps": 50},
            "super_resolution": {"enabled": False}}
    with stack.client() as c:
        job_id = c.post("/generate", json=body).json()["id"]
        stack.wait(job_id, timeout=60, until=lambda v: v["progress"]["step"] >= 1
                   or v["status"] not in ("queued", "running"))
        stack.worker.kill()
        stack.worker.wait(10)
        assert c.get(f"/jobs/{job_id}").json()["status"] == "running"  # nobody knows yet
        stack.worker = mmd_process(["worker"], {**stack.env, "MMD_WARMUP": "false"},
                                   stack.logs / "worker2.log")
        deadline = time.monotonic() + 60
        while c.get(f"/jobs/{job_id}").json()["status"] == "running" and \
                time.monotonic() < deadline:
            c.get("/metrics")  # what a Prometheus scrape does every few seconds
            time.sleep(0.5)
        view = stack.wait(job_id, timeout=120)
    assert view["status"] == "succeeded", stack.log_tail()
    assert view["result"]["nfe"]["base"] == 50
