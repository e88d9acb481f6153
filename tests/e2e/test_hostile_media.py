"""Hostile uploads against the real stack (redis-server, `mmd gateway`, one `mmd worker` with the
tiny preset): every file of the generated corpus gets its precise 4xx and ``error.code`` at
upload, or a ``failed`` job with a precise ``error.code``; nothing rejected is stored or
enqueued; afterwards the same worker process still serves normal jobs, and the two real clips
are accepted and processed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.hostile_media import corpus, good_mp4, good_wav
from tests.helpers.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

FAST = {"sampler.name": "ddim", "sampler.steps": "2", "super_resolution.enabled": "false"}
LIMITS = {"MMD_MAX_DECODED_FRAMES": "60", "MMD_MAX_DECODED_SAMPLES": "200000",
          "MMD_MAX_UPLOAD_BYTES": "5000000"}


@pytest.fixture(scope="module")
def media_stack(e2e_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(e2e_redis, tmp_path_factory.mktemp("hostile"), **LIMITS)
    yield s
    stop_stack(s)


def _stored_uploads(stack: Stack) -> list[Path]:
    root = Path(stack.env["MMD_DATA_DIR"]) / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _post(stack: Stack, endpoint: str, filename: str, data: bytes,
          fields: dict[str, str]) -> tuple[int, dict]:
    with stack.client() as c:
        r = c.post(f"/{endpoint}", files={"file": (filename, data, "application/octet-stream")},
                   data=FAST | fields)
    return r.status_code, r.json()


def test_hostile_corpus_then_a_normal_job(media_stack: Stack, tmp_path: Path) -> None:
    cases = corpus()
    assert len(cases) >= 30
    jobs: dict[str, tuple[str, str]] = {}  # case -> (job id, expected code)
    wrong: list[str] = []
    for case in cases:
        status, body = _post(media_stack, case.endpoint, case.filename, case.make(tmp_path),
                             dict(case.fields))
        if case.fails_in_worker:
            if status != 202:
                wrong.append(f"{case.name}: expected 202 (fails in the worker), "
                             f"got {status} {body}")
            else:
                jobs[case.name] = (body["id"], case.code)
            continue
        code = (body.get("error") or {}).get("code")
        if (status, code) != (case.status, case.code):
            wrong.append(f"{case.name}: expected {case.status} {case.code}, got {status} {body}")
    assert not wrong, "\n".join(wrong)
    # only the accepted uploads were stored, one each
    assert len(_stored_uploads(media_stack)) == len(jobs)

    for name, (job_id, code) in jobs.items():
        view = media_stack.wait(job_id, timeout=60)
        assert view["status"] == "failed", (name, view)
        assert view["error"]["code"] == code, (name, view["error"])
        assert len(view["error"]["message"]) > 20
    assert media_stack.worker.poll() is None, "the worker died\n" + media_stack.log_tail()

    # the same worker process serves normal jobs in both directions
    status, body = _post(media_stack, "video-to-audio", "clip.mp4", good_mp4(tmp_path), {})
    assert status == 202, body
    view = media_stack.wait(body["id"], timeout=90)
    assert view["status"] == "succeeded", view
    status, body = _post(media_stack, "audio-to-video", "a.wav", good_wav(tmp_path), {})
    assert status == 202, body
    assert media_stack.wait(body["id"], timeout=90)["status"] == "succeeded"
    assert media_stack.worker.poll() is None


def test_real_clips_are_accepted_and_processed(media_stack: Stack, shared_media: Path) -> None:
    ids = []
    for name, endpoint in (("landscape.mp4", "video-to-audio"), ("audioset.mp4", "audio-to-video")):
        status, body = _post(media_stack, endpoint, name, (shared_media / name).read_bytes(),
                             {"start_s": "1"})
        assert status == 202, (name, body)
        ids.append(body["id"])
    for job_id in ids:
        view = media_stack.wait(job_id, timeout=90)
        assert view["status"] == "succeeded", view
