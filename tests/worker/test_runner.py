"""The job runner against a real Redis and local storage, with a small fake generation function
(the real pipeline runs in tests/e2e). Real MP4s are muxed and probed back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.contract import JobStatus, Progress
from core.settings import Settings
from core.storage import LocalStorage
from core.store import JobStore, result_key
from tests.helpers.http import http_server, serve_dir
from tests.helpers.jobs import F, FakeGenerate, H, make_runner, make_spec
from tests.helpers.media import write_clip
from worker import media


def test_success_writes_mp4s_progress_and_result(settings: Settings, store: JobStore) -> None:
    gen = FakeGenerate()
    runner = make_runner(settings, store, gen)
    seen: list[Progress] = []
    runner.on_progress = seen.append
    spec = make_spec(num_samples=2)
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "succeeded"
    view = store.view(spec.id)
    assert view is not None and view.status is JobStatus.succeeded
    assert view.started_at is not None and view.finished_at >= view.started_at
    r = view.result
    assert r is not None and r.num_samples == 2 and len(r.samples) == 2
    assert (r.width, r.height, r.fps, r.sample_rate) == (H, H, 10, 16000)
    assert r.random_weights is True and r.duration_s == pytest.approx(F / 10)
    assert r.nfe == {"base": 3, "sr": 2} and "mux" in r.stage_seconds
    storage = LocalStorage(settings.data_dir)
    for i, sample in enumerate(r.samples):
        path = storage.local_path(result_key(spec.id, i))
        assert path is not None and path.stat().st_size == sample.bytes
        import hashlib

        assert hashlib.sha256(path.read_bytes()).hexdigest() == sample.sha256
        info = media.probe(path)
        video = next(s for s in info.streams if s.type == "video")
        audio = next(s for s in info.streams if s.type == "audio")
        assert (video.width, video.height, video.fps) == (H, H, 10.0)
        assert audio.sample_rate == 16000
    assert r.samples[1].url.endswith("?sample=1")
    sampled = [p for p in seen if p.stage in ("base", "sr")]
    assert [(p.stage, p.step) for p in sampled] == [("base", 1), ("base", 2), ("base", 3),
                                                    ("sr", 1), ("sr", 2)]
    fractions = [p.fraction for p in sampled]
    # fake models: evaluations weigh alike, base 3 steps vs SR 2 steps x F frames
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert fractions[2] == pytest.approx(3 / (3 + 2 * F), abs=1e-4)
    request = gen.requests[0]
    assert request.seed == 3 and request.base_sampler.steps == 3 and request.sr_sampler.steps == 2


def test_cancel_while_running_stops_at_next_step(settings: Settings, store: JobStore) -> None:
    spec = make_spec()
    steps: list[tuple[str, int]] = []

    def on_step(stage: str, step: int) -> None:
        steps.append((stage, step))
        if (stage, step) == ("base", 2):
            assert store.cancel(spec.id) is JobStatus.running  # the gateway's side

    runner = make_runner(settings, store, FakeGenerate(on_step=on_step))
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "canceled"
    assert steps == [("base", 1), ("base", 2)]  # stopped within one step
    view = store.view(spec.id)
    assert view is not None and view.status is JobStatus.canceled and view.result is None
    assert LocalStorage(settings.data_dir).size(result_key(spec.id, 0)) is None


def test_canceled_before_start_never_runs(settings: Settings, store: JobStore) -> None:
    gen = FakeGenerate()
    spec = make_spec()
    store.create_and_enqueue(spec)
    assert store.cancel(spec.id) is JobStatus.canceled
    assert make_runner(settings, store, gen).run(spec.id) == "canceled"
    assert gen.requests == []


def test_failures_get_codes(settings: Settings, store: JobStore, tmp_path: Path) -> None:
    boom = make_spec()
    store.create_and_enqueue(boom)
    make_runner(settings, store, FakeGenerate(error=RuntimeError("kaput"))).run(boom.id)
    view = store.view(boom.id)
    assert view is not None and view.status is JobStatus.failed
    assert view.error is not None and view.error.code == "internal"
    assert "kaput" in view.error.message

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"definitely not a video")
    LocalStorage(settings.data_dir).put_file("uploads/x/input.mp4", bad, content_type="video/mp4")
    spec = make_spec("video-to-audio", input_key="uploads/x/input.mp4")
    store.create_and_enqueue(spec)
    make_runner(settings, store, FakeGenerate()).run(spec.id)
    view = store.view(spec.id)
    assert view is not None and view.error is not None
    assert view.error.code in ("decode_failed", "unsupported_container", "no_video_stream")

    missing = make_spec(model="other")
    store.create_and_enqueue(missing)
    make_runner(settings, store, FakeGenerate()).run(missing.id)
    view = store.view(missing.id)
    assert view is not None and view.error is not None and view.error.code == "unknown_model"


def test_conditional_inputs_are_decoded_at_model_size(settings: Settings, store: JobStore,
                                                      tmp_path: Path) -> None:
    storage = LocalStorage(settings.data_dir)
    storage.put_file("uploads/v/input.mp4", write_clip(tmp_path / "c.mp4"),
                     content_type="video/mp4")
    storage.put_file("uploads/a/input.wav", write_clip(tmp_path / "a.wav", video=False),
                     content_type="audio/wav")
    gen = FakeGenerate()
    runner = make_runner(settings, store, gen, sr=False)
    v2a = make_spec("video-to-audio", input_key="uploads/v/input.mp4", start_s=0.5)
    a2v = make_spec("audio-to-video", input_key="uploads/a/input.wav")
    for spec in (v2a, a2v):
        store.create_and_enqueue(spec)
        assert runner.run(spec.id) == "succeeded"
    cv = gen.requests[0].condition_video
    assert cv.dtype == np.uint8 and cv.shape == (F, 16, 16, 3) and gen.requests[0].mode == \
        "video-to-audio"
    ca = gen.requests[1].condition_audio
    assert ca.dtype == np.float32 and ca.shape == (2048,) and np.abs(ca).max() > 0.1
    assert gen.requests[0].super_resolution is False  # the model has no SR network


def test_audio_url_is_fetched_with_a_size_limit(settings: Settings, store: JobStore,
                                                tmp_path: Path) -> None:
    write_clip(tmp_path / "tone.wav", video=False)
    with serve_dir(tmp_path) as base:
        gen = FakeGenerate()
        ok = make_spec("audio-to-video", input_url=f"{base}/tone.wav")
        store.create_and_enqueue(ok)
        assert make_runner(settings, store, gen).run(ok.id) == "succeeded"
        assert gen.requests[0].condition_audio.shape == (2048,)
        small = settings.model_copy(update={"max_upload_bytes": 1000})
        big = make_spec("audio-to-video", input_url=f"{base}/tone.wav")
        missing = make_spec("audio-to-video", input_url=f"{base}/nope.wav")
        for spec, code in ((big, "input_too_large"), (missing, "fetch_failed")):
            store.create_and_enqueue(spec)
            make_runner(small, store, FakeGenerate()).run(spec.id)
            view = store.view(spec.id)
            assert view is not None and view.error is not None and view.error.code == code


def test_audio_url_fetch_refuses_private_targets_and_redirects(settings: Settings,
                                                               store: JobStore) -> None:
    """The worker re-checks audio_url at fetch time (the gateway's check can be stale: DNS
    rebinding) and never follows a redirect, which could point at an internal host."""
    from http.server import BaseHTTPRequestHandler

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Redirect) as base:
        url = f"{base}/clip.wav"
        strict = settings.model_copy(update={"webhook_allow_private": False})
        private = make_spec("audio-to-video", input_url=url)
        store.create_and_enqueue(private)
        make_runner(strict, store, FakeGenerate()).run(private.id)
        view = store.view(private.id)
        assert view is not None and view.error is not None
        assert view.error.code == "unsafe_url" and "127.0.0.1" in view.error.message

        lenient = settings.model_copy(update={"webhook_allow_private": True})
        redirected = make_spec("audio-to-video", input_url=url)
        store.create_and_enqueue(redirected)
        gen = FakeGenerate()
        make_runner(lenient, store, gen).run(redirected.id)
        view = store.view(redirected.id)
        assert view is not None and view.error is not None
        assert view.error.code == "fetch_failed" and "302" in view.error.message
        assert gen.requests == []  # nothing was generated from the redirect target


def test_peak_memory_per_stage_reaches_the_worker_metric(settings: Settings,
                                                        store: JobStore) -> None:
    """``GenerationResult.peak_memory_bytes`` (CUDA only in the pipeline) sets
    ``mmd_peak_memory_bytes`` per stage."""
    from worker import metrics

    gen = FakeGenerate(peak_memory_bytes={"base": 123_456, "sr": 7_890})
    spec = make_spec()
    store.create_and_enqueue(spec)
    assert make_runner(settings, store, gen).run(spec.id) == "succeeded"
    assert metrics.PEAK_MEMORY.labels(stage="base")._value.get() == 123_456
    assert metrics.PEAK_MEMORY.labels(stage="sr")._value.get() == 7_890


def test_an_error_between_phases_still_ends_every_claimed_job(
        settings: Settings, store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception outside one job's own handling (RQ's timeout can strike anywhere) ends each
    claimed job with a recorded error instead of leaving it running."""
    def broken(runs: object) -> object:
        raise RuntimeError("between phases")

    monkeypatch.setattr("worker.runner._groups", broken)
    specs = [make_spec(), make_spec()]
    for spec in specs:
        store.create_and_enqueue(spec)
    runner = make_runner(settings, store, FakeGenerate())
    assert runner.run_many([s.id for s in specs]) == ["failed", "failed"]
    for spec in specs:
        view = store.view(spec.id)
        assert view is not None and view.error is not None and view.error.code == "internal"
        assert "between phases" in view.error.message
