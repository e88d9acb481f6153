"""Fixtures of the core tests: the real redis-server, isolated settings and a job store."""

from tests.e2e.fixtures import redis_conn, redis_url, settings, store  # noqa: F401
