"""Per-key rate limit (submissions per minute) and active-job quota, in Redis: 429 with
Retry-After, independent per key, shared by two gateway apps (replicas) on the same Redis."""

from __future__ import annotations

import time

from redis import Redis

from service.jobs import JobStore
from service.limits import Limiter
from service.settings import Settings
from tests.service.auth_helpers import JOB_BODY, KEY_A, KEY_B, bearer, keyed_client
from tests.service.auth_helpers import keyed_settings


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
    from service.schemas import JobError

    store.fail(ids[1], JobError(code="internal", message="x"))
    assert c.post("/generate", json=JOB_BODY, headers=bearer(KEY_A)).status_code == 202


def test_rejected_submission_is_not_counted(settings: Settings) -> None:
    c = keyed_client(settings, rate_limit_per_minute=1)
    bad = c.post("/generate", json={**JOB_BODY, "num_samples": 99}, headers=bearer(KEY_A))
    assert bad.status_code == 422
    assert c.post("/generate", json=JOB_BODY, headers=bearer(KEY_A)).status_code == 202
