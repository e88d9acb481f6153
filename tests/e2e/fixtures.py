"""Fixtures shared by tests/service, tests/worker and tests/e2e (imported by their conftests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from redis import Redis

from core.settings import Settings
from core.store import JobStore
from tests.e2e.servers import redis_server, weed_s3


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server for the session; tests isolate themselves by key prefix/queue."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_conn(redis_url: str) -> Redis:
    return Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real SeaweedFS S3 server with bucket "mmd"."""
    with weed_s3(tmp_path_factory.mktemp("weed")) as endpoint:
        yield endpoint


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    """Settings isolated per test: own key prefix, queue and data dir."""
    tag = uuid.uuid4().hex[:8]
    return Settings(redis_url=redis_url, data_dir=tmp_path / "data", key_prefix=f"t{tag}",
                    queue_name=f"q{tag}", worker_ready_file=None, max_upload_bytes=2_000_000,
                    max_clip_duration_s=60.0, max_num_samples=2, max_steps=50, max_sr_steps=30,
                    open_mode=True, webhook_allow_private=True, rate_limit_per_minute=0,
                    max_active_jobs_per_key=0)



@pytest.fixture
def store(settings: Settings, redis_conn: Redis) -> JobStore:
    """The gateway/worker job store on the isolated ``settings``."""
    return JobStore(redis_conn, settings)

def write_clip(path: Path, *, seconds: float = 2.0, fps: int = 10, size: int = 32,
               audio: bool = True, video: bool = True) -> Path:
    """A small real media file (H.264+AAC MP4, or WAV when video=False) made with PyAV."""
    import av

    rng = np.random.default_rng(0)
    n_frames = int(seconds * fps)
    with av.open(str(path), "w") as out:
        vs = as_ = None
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width = vs.height = size
            vs.pix_fmt = "yuv420p"
        if audio:
            as_ = out.add_stream("aac" if video else "pcm_s16le", rate=16000)
            as_.layout = "mono"
        if vs is not None:
            for i in range(n_frames):
                img = np.full((size, size, 3), (i * 10) % 255, np.uint8)
                img[: size // 2] = rng.integers(0, 255, (size // 2, size, 3), dtype=np.uint8)
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if as_ is not None:
            t = np.arange(int(seconds * 16000)) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
            chunk = 1024
            for start in range(0, len(wave), chunk):
                piece = wave[start:start + chunk][None, :]
                frame = av.AudioFrame.from_ndarray(piece, format="s16", layout="mono")
                frame.sample_rate = 16000
                frame.pts = start
                for packet in as_.encode(frame):
                    out.mux(packet)
            for packet in as_.encode():
                out.mux(packet)
    return path
