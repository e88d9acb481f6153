"""Per-key rate limit (submissions per minute) and active-job quota, in Redis: 429 with
Retry-After, independent per key, shared by two gateway apps (replicas) on the same Redis."""

from __future__ import annotations

import time
from pathlib import Path

from redis import Redis

from core.settings import Settings
from core.store import JobStore
from service.limits import Limiter
from tests.helpers.auth import JOB_BODY, KEY_A, KEY_B, bearer, keyed_client, keyed_settings
from tests.helpers.media import write_clip


def test_submissions_per_minute_across_replicas(settings: Settings) -> None:
    one = keyed_client(settings, rate_limit_per_minute=3)
    two = keyed_client(settings, rate_limit_per_minute=3)  # a second replica, same Redis
    for attempt in range(2):  # the window is the calendar minute: redo if one just ended
        minute = int(time.time() // 60)
        key = KEY_A if attempt == 0 else KEY_B
        codes = [c.post("/generate", json=JOB_BODY, headers=bearer(key)).status_code
                 for c in (one, two, one)]
        r = two.post("/generate", json=JOB_BODY, headers=bearer(key))
        if int(time.time() // 60) == minute:
            break
    assert codes == [202, 202, 202]
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "MMD_RATE_LIMIT_PER_MINUTE" in r.json()["detail"]
    if key == KEY_A:  # (the usual case) key B's own window is untouched
        assert one.post("/generate", json=JOB_BODY, headers=bearer(KEY_B)).status_code == 202


def test_window_resets_next_minute(settings: Settings, redis_conn: Redis) -> None:
    limiter = Limiter(redis_conn, keyed_settings(settings, rate_limit_per_minute=2))
    t0 = 600_000 * 60.0
    assert limiter.admit("k", "a", now=t0) is None
    assert limiter.admit("k", "b", now=t0 + 1) is None
    assert limiter.admit("k", "c", now=t0 + 2) is not None
    assert limiter.admit("k", "d", now=t0 + 60) is None


def test_active_job_quota_frees_on_cancel(settings: Settings, redis_conn: Redis) -> None:
    c = keyed_client(settings, max_active_jobs_per_key=2)
    ids = [c.post("/generate", json=JOB_BODY, headers=bearer(KEY_A)).json()["id"]
           for _ in range(2)]
    r = c.post("/generate", json=JOB_BODY, headers=bearer(KEY_A))
    assert r.status_code == 429 and r.headers["retry-after"] == "5"
    assert "MMD_MAX_ACTIVE_JOBS_PER_KEY" in r.json()["detail"]
    assert c.post("/generate", json=JOB_BODY, headers=bearer(KEY_B)).status_code == 202
    assert c.post(f"/jobs/{ids[0]}/cancel", headers=bearer(KEY_A)).status_code == 202
    assert c.post("/generate", json=JOB_BODY, headers=bearer(KEY_A)).status_code == 202
    # a running job still counts; a finished one does not
    store = JobStore(redis_conn, settings)
    assert store.claim(ids[1])
    assert c.post("/generate", json=JOB_BODY, headers=bearer(KEY_A)).status_code == 429
    from core.contract import JobError

    store.fail(ids[1], JobError(code="internal", message="x"))
    assert c.post("/generate", json=JOB_BODY, headers=bearer(KEY_A)).status_code == 202


def test_rejected_submission_is_not_counted(settings: Settings) -> None:
    c = keyed_client(settings, rate_limit_per_minute=1)
    bad = c.post("/generate", json={**JOB_BODY, "num_samples": 99}, headers=bearer(KEY_A))
    assert bad.status_code == 422
    assert c.post("/generate", json=JOB_BODY, headers=bearer(KEY_A)).status_code == 202


def test_uploads_per_minute_have_their_own_limit(settings: Settings, tmp_path: Path) -> None:
    wav = ("a.wav", write_clip(tmp_path / "a.wav", video=False).read_bytes(), "audio/wav")
    one = keyed_client(settings, upload_rate_limit_per_minute=2, rate_limit_per_minute=1)
    two = keyed_client(settings, upload_rate_limit_per_minute=2)  # a second replica
    uploads = settings.data_dir / "uploads"
    for attempt in range(2):  # the window is the calendar minute: redo if one just ended
        minute = int(time.time() // 60)
        key = KEY_A if attempt == 0 else KEY_B
        codes = [c.post("/uploads", files={"file": wav}, headers=bearer(key)).status_code
                 for c in (one, two)]
        stored = sorted(uploads.rglob("*"))
        r = one.post("/uploads", files={"file": wav}, headers=bearer(key))
        if int(time.time() // 60) == minute:
            break
    assert codes == [201, 201]
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "MMD_UPLOAD_RATE_LIMIT_PER_MINUTE" in r.json()["detail"]
    assert sorted(uploads.rglob("*")) == stored  # nothing of the refused upload is kept
    # job submissions count in their own window (limit 1 here), untouched by the uploads
    assert one.post("/generate", json=JOB_BODY, headers=bearer(key)).status_code == 202
    if key == KEY_A:
        assert two.post("/uploads", files={"file": wav}, headers=bearer(KEY_B)).status_code == 201


def test_upload_window_resets_and_zero_means_unlimited(settings: Settings,
                                                       redis_conn: Redis) -> None:
    limiter = Limiter(redis_conn, keyed_settings(settings, upload_rate_limit_per_minute=1,
                                                 rate_limit_per_minute=1))
    t0 = 600_000 * 60.0
    assert limiter.admit_upload("k", now=t0) is None
    rejected = limiter.admit_upload("k", now=t0 + 20)
    assert rejected is not None and 1 <= rejected.retry_after_s <= 60
    assert limiter.admit("k", "job-1", now=t0 + 21) is None  # jobs: separate window
    assert limiter.admit_upload("k", now=t0 + 60) is None
    unlimited = Limiter(redis_conn, keyed_settings(settings, upload_rate_limit_per_minute=0))
    assert all(unlimited.admit_upload("k", now=t0) is None for _ in range(5))
