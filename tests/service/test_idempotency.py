"""``Idempotency-Key`` on every submitting route, against the real redis-server and local storage:
an identical retry replays the original job (or upload), the same key with a different request
(other file bytes, other parameters, other file name) is a ``422`` like ``/generate``'s, and the
rejected request leaves nothing behind (no stored upload, no job, no quota slot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from redis import Redis

from core.settings import Settings
from core.store import JobStore
from service.app import create_app
from service.deps import AppState
from service.submit import Idempotency
from tests.helpers.media import write_clip

DIFFERENT = "already used with a different request"


def _stored(settings: Settings) -> list[Path]:
    root = Path(settings.data_dir) / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _media(tmp_path: Path, endpoint: str, seconds: float) -> tuple[str, bytes, str]:
    if endpoint == "video-to-audio":
        path = write_clip(tmp_path / f"clip-{seconds}.mp4", seconds=seconds)
        return "clip.mp4", path.read_bytes(), "video/mp4"
    path = write_clip(tmp_path / f"a-{seconds}.wav", seconds=seconds, video=False)
    return "a.wav", path.read_bytes(), "audio/wav"


def _post(client: TestClient, endpoint: str, media: tuple[str, bytes, str], key: str,
          **fields: str):
    return client.post(f"/{endpoint}", files={"file": media},
                       data={"seed": "1", "sampler.steps": "3", **fields},
                       headers={"Idempotency-Key": key})


@pytest.mark.parametrize("endpoint", ["video-to-audio", "audio-to-video"])
def test_multipart_job_routes_replay_only_an_identical_request(
        endpoint: str, client: TestClient, settings: Settings, store: JobStore,
        tmp_path: Path) -> None:
    media = _media(tmp_path, endpoint, 2.0)
    first = _post(client, endpoint, media, "k-1")
    assert first.status_code == 202, first.text
    again = _post(client, endpoint, media, "k-1")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    stored = _stored(settings)
    assert len(stored) == 1 and store.queue.count == 1

    other_file = _media(tmp_path, endpoint, 1.0)
    for media_, fields in [(other_file, {}),  # other bytes, same params
                           (media, {"seed": "2"}),  # same bytes, other params
                           ((f"x-{media[0]}", media[1], media[2]), {})]:  # other file name
        r = _post(client, endpoint, media_, "k-1", **fields)
        assert r.status_code == 422, r.text
        assert DIFFERENT in r.json()["detail"] and "use a new key" in r.json()["detail"]
    assert _stored(settings) == stored  # nothing kept of the rejected uploads
    assert store.queue.count == 1
    assert _post(client, endpoint, other_file, "k-2").status_code == 202  # a new key works


def test_multipart_422_matches_the_generate_422(client: TestClient, tmp_path: Path) -> None:
    body = {"seed": 1, "sampler": {"steps": 3}}
    assert client.post("/generate", json=body, headers={"Idempotency-Key": "g"}).status_code == 202
    gen = client.post("/generate", json={**body, "seed": 2}, headers={"Idempotency-Key": "g"})
    media = _media(tmp_path, "audio-to-video", 2.0)
    assert _post(client, "audio-to-video", media, "m").status_code == 202
    multi = _post(client, "audio-to-video", media, "m", seed="2")
    assert gen.status_code == multi.status_code == 422
    assert gen.json() == multi.json()


def test_key_reuse_is_checked_before_the_quota(settings: Settings, tmp_path: Path) -> None:
    quota = TestClient(create_app(settings.model_copy(update={"max_active_jobs_per_key": 1})))
    media = _media(tmp_path, "audio-to-video", 2.0)
    assert _post(quota, "audio-to-video", media, "q").status_code == 202
    # the one active slot is taken: a replay still answers, a mismatch is 422 (not 429)
    assert _post(quota, "audio-to-video", media, "q").status_code == 200
    assert _post(quota, "audio-to-video", media, "q", seed="5").status_code == 422


def test_uploads_replay_only_the_same_file(client: TestClient, settings: Settings,
                                           tmp_path: Path) -> None:
    media = _media(tmp_path, "audio-to-video", 2.0)
    headers = {"Idempotency-Key": "u-1"}
    first = client.post("/uploads", files={"file": media}, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post("/uploads", files={"file": media}, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    stored = _stored(settings)
    assert len(stored) == 1
    other = client.post("/uploads", files={"file": _media(tmp_path, "audio-to-video", 1.0)},
                        headers=headers)
    assert other.status_code == 422 and DIFFERENT in other.json()["detail"]
    assert _stored(settings) == stored


def test_a_concurrent_winner_with_another_request_is_a_422(settings: Settings,
                                                           redis_conn: Redis) -> None:
    """The race inside one key: the request that loses ``reserve`` compares fingerprints too."""
    state = AppState(settings=settings, redis=redis_conn, store=JobStore(redis_conn, settings),
                     storage=None, auth=None, limiter=None)  # type: ignore[arg-type]
    idem = Idempotency(state, "open /video-to-audio", "race")
    assert idem.reserve("job-a", "print-a") is None
    assert idem.reserve("job-b", "print-a") == "job-a"
    with pytest.raises(HTTPException) as err:
        idem.reserve("job-c", "print-b")
    assert err.value.status_code == 422 and DIFFERENT in str(err.value.detail)
    assert Idempotency(state, "open /video-to-audio", None).reserve("x", "p") is None
