"""Property-based run of every operation in the gateway's live OpenAPI schema (schemathesis,
in-process ASGI, real redis-server): no input gives a 5xx. Bounded examples keep it < 60 s."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from redis import Redis

from core.settings import Settings
from core.store import JobStore
from service.app import create_app
from tests.helpers.auth import KEY_A, bearer, keyed_settings

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

MAX_EXAMPLES = 25


@pytest.fixture
def gateway(settings: Settings, redis_conn: Redis) -> FastAPI:
    # a live worker heartbeat, so that /readyz answers 200 (its 503 without workers is by design)
    JobStore(redis_conn, settings).worker_heartbeat("schemathesis", 600)
    return create_app(keyed_settings(settings, rate_limit_per_minute=0,
                                     max_active_jobs_per_key=0, webhook_allow_private=False))


@pytest.fixture
def api_schema(gateway: FastAPI):
    return schemathesis.openapi.from_asgi("/openapi.json", gateway)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                     phases=[Phase.explicit, Phase.generate],
                     suppress_health_check=list(HealthCheck))
def test_no_server_error_with_a_key(case) -> None:
    case.call_and_validate(headers=bearer(KEY_A), checks=[not_a_server_error])


@schema.parametrize()
@hypothesis_settings(max_examples=3, deadline=None, derandomize=True,
                     phases=[Phase.explicit, Phase.generate],
                     suppress_health_check=list(HealthCheck))
def test_no_server_error_without_a_key(case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
