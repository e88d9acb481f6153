"""Fixtures of the gateway tests: real Redis, isolated settings, a job store, a test client."""

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app


@pytest.fixture
def client(settings: Settings) -> TestClient:
    """An open-mode gateway app on ``settings`` (test files with API keys override it)."""
    return TestClient(create_app(settings))
