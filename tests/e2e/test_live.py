"""Watching jobs live, through real processes (redis-server, `mmd worker`, two `mmd gateway`s):
the SSE event stream, signed result links, `mmd submit` and the page at / in headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import av
import httpx
import pytest
from redis import Redis

from client import Client
from core.contract import JobSpec, JobStatus, Progress
from core.sampling import SamplerParams, SuperResolutionParams
from core.settings import Settings
from core.store import JobStore, utcnow
from tests.helpers.live_stack import (
    FAST,
    KEY_A,
    KEY_B,
    LINK_TTL_S,
    LiveStack,
    read_sse,
    start_live,
)
from tests.helpers.media import write_clip
from tests.helpers.servers import REPO_ROOT, redis_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with redis_server(tmp_path_factory.mktemp("live-redis")) as url:
        yield from start_live(url, tmp_path_factory.mktemp("live"))


def _id_key(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def _without_links(doc: dict[str, Any]) -> dict[str, Any]:
    """A job document minus its signed links (they are re-signed, with a new expiry, per read)."""
    out = json.loads(json.dumps(doc))
    if out.get("result"):
        for name in ("signed_url", "signed_url_expires_at"):
            out["result"].pop(name)
        for s in out["result"]["samples"]:
            s.pop("signed_url")
    return out


# --- the event stream ---------------------------------------------------------------------
def test_events_are_ordered_and_end_with_the_job_document(live: LiveStack) -> None:
    job_id = live.submit({"seed": 5, **FAST})
    resp, events, _ = read_sse(live.base, job_id)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["x-accel-buffering"] == "no"
    assert resp.headers["cache-control"] == "no-cache"

    *progress, done = events
    assert [e.event for e in progress] == ["progress"] * len(progress)
    assert done.event == "done"
    stored = [e for e in events if e.id is not None]
    ids = [_id_key(e.id) for e in stored if e.id]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # strictly increasing stream ids
    data = [e.json() for e in progress]
    assert data[0]["status"] == "queued" and data[0]["stage"] == "queued"
    statuses = [d["status"] for d in data]
    assert statuses == sorted(statuses, key=["queued", "running"].index)  # queued, then running
    fractions = [d["fraction"] for d in data]
    assert fractions == sorted(fractions)  # progress never goes back
    assert all(d["queue_position"] is None for d in data if d["status"] == "running")
    base = [(d["step"], d["total"]) for d in data if d["stage"] == "base" and d["total"]]
    assert base[-1] == (3, 3) and [s for s, _ in base] == sorted(s for s, _ in base)
    sr = [(d["step"], d["total"]) for d in data if d["stage"] == "sr" and d["total"]]
    assert sr[-1] == (2, 2)
    assert {"mux", "upload"} <= {d["stage"] for d in data}
    assert set(data[0]) == {"status", "stage", "step", "total", "fraction", "queue_position"}

    doc = done.json()
    assert doc["status"] == "succeeded" and doc["result"]["num_samples"] == 1
    with live.client() as c:
        now = c.get(f"/jobs/{job_id}").json()
    assert _without_links(doc) == _without_links(now)  # the whole GET /jobs/{id} document
    assert doc["result"]["signed_url"].startswith(live.base + f"/results/{job_id}/0.mp4?")


def test_last_event_id_resumes_after_that_event(live: LiveStack) -> None:
    job_id = live.submit({"seed": 6, **FAST})
    _, full, _ = read_sse(live.base, job_id)
    stored = [e for e in full if e.id]
    middle = stored[len(stored) // 2]
    _, resumed, _ = read_sse(live.base, job_id, last_id=middle.id)
    tail = stored[len(stored) // 2 + 1:]
    assert [(e.id, e.event) for e in resumed] == [(e.id, e.event) for e in tail]
    assert [e.data for e in resumed[:-1]] == [e.data for e in tail[:-1]]
    assert resumed[-1].event == "done" and resumed[-1].json()["status"] == "succeeded"
    # resuming after the done event itself: the done event again, and the stream ends
    _, again, _ = read_sse(live.base, job_id, last_id=full[-1].id)
    assert [e.event for e in again] == ["done"]
    # an id that is not a stream id reads from the start
    _, fresh, _ = read_sse(live.base, job_id, last_id="garbage")
    assert [e.id for e in fresh] == [e.id for e in full]


def test_another_keys_job_is_404_like_get_job(live: LiveStack) -> None:
    job_id = live.submit({"seed": 7, **FAST})
    with live.client(KEY_B) as c:
        get = c.get(f"/jobs/{job_id}")
    resp, events, _ = read_sse(live.base, job_id, key=KEY_B)
    assert get.status_code == resp.status_code == 404 and events == []
    assert resp.json() == get.json()  # exactly the same answer: ids cannot be probed
    with live.client(KEY_B) as c:
        unknown = c.get("/jobs/no-such-job/events")
    assert unknown.status_code == 404
    resp, _, _ = read_sse(live.base, job_id, key=None)
    assert resp.status_code == 401
    live.wait(job_id)  # key A still sees it finish


def _stuck_job(live: LiveStack, redis: Redis, owner: str = "alice") -> str:
    """A job queued on a queue no worker listens to (as when every worker is busy)."""
    env = live.stack.env
    settings = Settings(redis_url=env["MMD_REDIS_URL"], key_prefix=env["MMD_KEY_PREFIX"],
                        queue_name=env["MMD_QUEUE_NAME"] + "-nobody")
    spec = JobSpec(id=f"stuck{time.time_ns()}", mode="joint", model="default", seed=1,
                   num_samples=1, sampler=SamplerParams(), created_at=utcnow(),
                   super_resolution=SuperResolutionParams())
    JobStore(redis, settings).create_and_enqueue(spec, owner=owner)
    return spec.id


def test_keepalive_while_queued_then_cancel_ends_the_stream(live: LiveStack) -> None:
    redis = Redis.from_url(live.stack.env["MMD_REDIS_URL"])
    job_id = _stuck_job(live, redis)
    prefix = live.stack.env["MMD_KEY_PREFIX"]
    # the stream expires with the job record
    job_ttl = redis.ttl(f"{prefix}:job:{job_id}")
    events_ttl = redis.ttl(f"{prefix}:events:{job_id}")
    assert events_ttl > 0 and abs(job_ttl - events_ttl) <= 1

    headers = {"Authorization": f"Bearer {KEY_A}"}
    seen: list[str] = []
    with httpx.stream("GET", f"{live.base}/jobs/{job_id}/events", headers=headers,
                      timeout=30) as resp:
        lines = resp.iter_lines()
        t0 = time.monotonic()
        for line in lines:  # MMD_EVENTS_KEEPALIVE_S=0.5 on this gateway
            seen.append(line)
            if sum(s.startswith(": keep-alive") for s in seen) >= 3:
                break
        waited = time.monotonic() - t0
        with httpx.Client(base_url=live.base, headers=headers) as c:
            assert c.post(f"/jobs/{job_id}/cancel").json()["status"] == "canceled"
        seen.extend(lines)  # to the end: the server closes the stream after `done`
    assert waited < 10
    assert "event: progress" in seen and seen.count("event: done") == 1
    done = json.loads(seen[seen.index("event: done") + 1].removeprefix("data: "))
    assert done["status"] == JobStatus.canceled.value and done["id"] == job_id
    job_ttl = redis.ttl(f"{prefix}:job:{job_id}")
    events_ttl = redis.ttl(f"{prefix}:events:{job_id}")
    assert events_ttl > 0 and abs(job_ttl - events_ttl) <= 1


def test_client_resumes_the_stream_across_a_gateway_restart(live: LiveStack) -> None:
    """The events live in Redis: a client whose gateway restarts reconnects (to the new
    process) with Last-Event-ID and misses nothing, repeats nothing."""
    redis = Redis.from_url(live.stack.env["MMD_REDIS_URL"])
    job_id = _stuck_job(live, redis, owner="open")
    got: list[Any] = []
    with Client(live.open_base) as client:
        job = client.job(job_id)
        stream = job.events()
        got.append(next(stream))  # the queued event, from the first gateway process
        first_id = job.last_event_id
        live.restart_open_gateway()
        store = JobStore(redis, Settings(key_prefix=live.stack.env["MMD_KEY_PREFIX"],
                                         queue_name=live.stack.env["MMD_QUEUE_NAME"]))
        store.claim(job_id)  # a worker picks it up while the client is reconnecting
        store.set_progress(job_id, Progress(stage="base", step=1, total=2, fraction=0.5))
        with httpx.Client(base_url=live.open_base) as c:
            assert c.post(f"/jobs/{job_id}/cancel").status_code == 202
        store.mark_canceled(job_id)
        got.extend(stream)  # to the done event
    assert first_id is not None and got[0].event == "progress"
    assert [m.event for m in got] == ["progress", "progress", "progress", "done"]
    stages = [json.loads(m.data).get("stage") for m in got[:3]]
    statuses = [json.loads(m.data)["status"] for m in got]
    assert stages == ["queued", "starting", "base"]
    assert statuses == ["queued", "running", "running", "canceled"]
    ids = [_id_key(m.id) for m in got if m.id]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == 4


# --- signed result links ------------------------------------------------------------------
def _signed(doc: dict[str, Any]) -> str:
    return str(doc["result"]["signed_url"])


def _with_query(url: str, **change: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(change)
    return parts._replace(query=urlencode(query)).geturl()


def test_signed_link_plays_without_a_key_and_rejects_tampering(live: LiveStack) -> None:
    job_id = live.submit({"seed": 8, "num_samples": 2, **FAST})
    live.wait(job_id)
    with live.client() as c:
        doc = c.get(f"/jobs/{job_id}").json()
    text = json.dumps(doc)
    assert KEY_A not in text and KEY_B not in text  # no API key in any URL
    url = _signed(doc)
    assert "Bearer" not in url and "key" not in urlsplit(url).query
    with httpx.Client(timeout=30) as anon:  # no Authorization header at all
        r = anon.get(url)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "video/mp4"
        assert hashlib.sha256(r.content).hexdigest() == doc["result"]["sha256"]
        part = anon.get(url, headers={"Range": "bytes=0-99"})  # what <video> asks for
        assert part.status_code == 206 and part.content == r.content[:100]
        second = anon.get(doc["result"]["samples"][1]["signed_url"])
        assert second.status_code == 200
        assert hashlib.sha256(second.content).hexdigest() == doc["result"]["samples"][1]["sha256"]

        sig = parse_qs(urlsplit(url).query)["sig"][0]
        expires = int(parse_qs(urlsplit(url).query)["expires"][0])
        flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
        tampered = [
            _with_query(url, sig=flipped),
            _with_query(url, expires=str(expires + 3600)),  # a longer life
            url.replace(f"/results/{job_id}/0.mp4", f"/results/{job_id}/1.mp4"),  # other sample
            url.replace(job_id, job_id[:-1] + ("0" if job_id[-1] != "0" else "1")),  # other job
            url.split("?")[0],  # unsigned
        ]
        for bad in tampered:
            r = anon.get(bad)
            assert r.status_code == 403, (bad, r.status_code, r.text)
        # the bearer route still needs the key
        assert anon.get(f"{live.base}/jobs/{job_id}/result").status_code == 401

        # expiry: the keyed gateway signs links for LINK_TTL_S seconds
        assert anon.get(url).status_code == 200
        time.sleep(max(0.0, expires - time.time()) + 1.1)
        r = anon.get(url)
        assert r.status_code == 403 and "expired" in r.text
    assert expires - time.time() < LINK_TTL_S + 1


# --- mmd submit -----------------------------------------------------------------------------
def _mmd(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], check=False, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_mmd_submit_writes_a_playable_mp4(live: LiveStack, tmp_path: Path) -> None:
    out = tmp_path / "joint.mp4"
    r = _mmd("submit", "joint", "--server", live.base, "--api-key", KEY_A, "--seed", "3",
             "--sampler", "dpm_solver", "--steps", "3", "--param", "sampler.order=2",
             "--sr-steps", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "100.0%" in r.stderr  # the progress bar reached the end
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert len(frames) == 8 and frames[0].shape == (64, 64, 3) and samples >= 2048


def test_mmd_submit_audio_to_video_uploads_the_file(live: LiveStack, tmp_path: Path) -> None:
    wav = write_clip(tmp_path / "tone.wav", video=False, seconds=1.0)
    out = tmp_path / "a2v.mp4"
    r = _mmd("submit", "audio-to-video", str(wav), "--server", live.base, "--api-key", KEY_A,
             "--seed", "4", "--sampler", "ddim", "--steps", "3", "--no-sr", "--quiet",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 8 and frames[0].shape == (16, 16, 3)  # no SR: the model's size


def test_mmd_submit_fails_with_the_services_message(live: LiveStack, tmp_path: Path) -> None:
    out = tmp_path / "bad.mp4"
    r = _mmd("submit", "joint", "--server", live.base, "--api-key", KEY_A, "--steps", "0",
             "--out", str(out), timeout=60)
    assert r.returncode == 1 and not out.exists()
    assert "422" in r.stderr and "steps" in r.stderr, r.stderr
    r = _mmd("submit", "joint", "--server", live.base, "--api-key", "wrong-key",
             "--out", str(out), timeout=60)
    assert r.returncode == 1 and "invalid API key" in r.stderr, r.stderr


# --- the page at / in headless Chromium ---------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.parametrize("keyed", [False, True], ids=["open", "api-key"])
def test_page_generates_and_plays_the_result(live: LiveStack, keyed: bool) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    base = live.base if keyed else live.open_base
    urls: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox",
                                          "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            page.on("request", lambda req: urls.append(req.url))
            page.goto(base + "/")
            key_box = page.locator("#api-key")
            page.wait_for_function("window.fetch && document.readyState === 'complete'")
            page.wait_for_timeout(300)  # /ui/config answered
            assert key_box.is_visible() is keyed  # asks for a key only when one is needed
            if keyed:
                key_box.fill(KEY_A)
            page.locator("#params summary").click()
            page.fill("#seed", "12")
            page.fill("#steps", "3")
            page.fill("#sr-steps", "2")
            # a prompt is sent: the tiny model has no aligner, so the service's 422 is shown
            page.fill("#prompt", "red")
            page.get_by_role("button", name="Generate").click()
            page.wait_for_selector("#job-error:not([hidden])", timeout=30_000)
            assert "no prompt aligner" in (page.locator("#job-error").text_content() or "")
            page.fill("#prompt", "")
            page.get_by_role("button", name="Generate").click()
            # live progress from the event stream: the status text shows a sampler stage
            page.wait_for_function(
                "/(running|succeeded)/.test(document.getElementById('job-status').textContent)",
                timeout=120_000)
            page.wait_for_selector("#result-video[src]", state="attached", timeout=180_000)
            assert page.locator("#job-status").text_content() == "succeeded"
            assert page.eval_on_selector("#progress", "p => p.value") == 1
            page.wait_for_function("document.getElementById('result-video').readyState >= 2",
                                   timeout=30_000)
            duration = page.eval_on_selector("#result-video", "v => v.duration")
            assert duration == pytest.approx(0.8, abs=0.1)  # 8 frames at 10 fps
            played = page.eval_on_selector(
                "#result-video", "v => { v.muted = true; return v.play().then(() => 'ok') }")
            assert played == "ok"
            page.wait_for_function("document.getElementById('result-video').currentTime > 0.2",
                                   timeout=20_000)
            href = page.get_attribute("#download", "href")
            assert href and "/results/" in href and "sig=" in href
            job_id = page.locator("#job-id").text_content()
            assert job_id and job_id in page.locator("#recent").text_content()
        finally:
            browser.close()
    assert any(u.endswith("/events") for u in urls)  # progress came from the event stream
    assert all(KEY_A not in u for u in urls)  # the key never went into a URL


def test_page_video_to_audio_by_drag_and_drop(live: LiveStack, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    clip = write_clip(tmp_path / "clip.mp4", seconds=2.0, size=32)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(live.open_base + "/")
            page.check("input[name=mode][value=video-to-audio]")
            assert page.locator("#drop-zone").is_visible()
            transfer = page.evaluate_handle(
                """([b64, name]) => {
                     const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                     const dt = new DataTransfer();
                     dt.items.add(new File([bytes], name, { type: "video/mp4" }));
                     return dt;
                   }""", [base64.b64encode(clip.read_bytes()).decode(), "clip.mp4"])
            page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
            assert "clip.mp4" in page.locator("#drop-text").text_content()
            page.locator("#params summary").click()
            page.fill("#steps", "3")
            page.uncheck("#sr-enabled")
            page.get_by_role("button", name="Generate").click()
            page.wait_for_selector("#result-video[src]", state="attached", timeout=180_000)
            job_id = page.locator("#job-id").text_content()
            page.wait_for_function("document.getElementById('result-video').readyState >= 1",
                                   timeout=30_000)
        finally:
            browser.close()
    doc = httpx.get(f"{live.open_base}/jobs/{job_id}").json()
    assert doc["status"] == "succeeded" and doc["request"]["mode"] == "video-to-audio"
    assert doc["request"]["input_filename"] == "clip.mp4"
    assert doc["request"]["sampler"]["steps"] == 3 and doc["result"]["width"] == 16
