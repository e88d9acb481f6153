"""The end-to-end stack: real redis-server, a real `mmd worker` process running the real
pipeline with the random ``tiny`` preset, and a real `mmd gateway` (uvicorn) process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.servers import redis_server
from tests.helpers.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def e2e_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("e2e-redis")) as url:
        yield url


@pytest.fixture(scope="module")
def stack(e2e_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(e2e_redis, tmp_path_factory.mktemp("stack"))
    yield s
    stop_stack(s)
