"""Real-server fixtures for every test (a pytest plugin of tests/conftest.py): one redis-server
and one SeaweedFS per session, settings isolated per test on them, a job store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from core.settings import ModelSpec, Settings
from core.store import JobStore
from tests.helpers.servers import redis_server, weed_s3


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
def offline_settings(tmp_path: Path) -> Settings:
    """Settings isolated per test (own key prefix, queue and data dir) for logic that needs no
    Redis: no server is started (``MMD_REDIS_URL`` unset). The model is the random ``tiny``
    preset named ``default`` (the unconfigured default is the shipped ``demo`` model)."""
    tag = uuid.uuid4().hex[:8]
    return Settings(models={"default": ModelSpec(preset="tiny")}, default_model="default",
                    data_dir=tmp_path / "data", key_prefix=f"t{tag}",
                    queue_name=f"q{tag}", worker_ready_file=None, max_upload_bytes=2_000_000,
                    max_clip_duration_s=60.0, max_num_samples=2, max_steps=50, max_sr_steps=30,
                    open_mode=True, webhook_allow_private=True, rate_limit_per_minute=0,
                    max_active_jobs_per_key=0)


@pytest.fixture
def settings(offline_settings: Settings, redis_url: str) -> Settings:
    """:func:`offline_settings` on the session's real redis-server."""
    return offline_settings.model_copy(update={"redis_url": redis_url})


@pytest.fixture
def store(settings: Settings, redis_conn: Redis) -> JobStore:
    """The gateway/worker job store on the isolated ``settings``."""
    return JobStore(redis_conn, settings)
