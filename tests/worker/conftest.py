from tests.e2e.fixtures import redis_conn, redis_url, s3_endpoint, settings  # noqa: F401
