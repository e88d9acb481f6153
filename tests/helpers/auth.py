"""Helpers for the auth/limit tests: a gateway with two API keys over the real redis-server."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from core.keys import hash_key
from core.settings import Settings
from service.app import create_app

KEY_A = "key-A-0123456789abcdef"
KEY_B = "key-B-fedcba9876543210"
JOB_BODY = {"seed": 1, "sampler": {"steps": 3}}


def keyed_settings(settings: Settings, **update: Any) -> Settings:
    """``settings`` with auth on, key A named ``alice`` and key B configured as a bare digest."""
    return settings.model_copy(update={
        "open_mode": False, "api_keys": [f"alice:{hash_key(KEY_A)}", hash_key(KEY_B)],
        "rate_limit_per_minute": 0, "max_active_jobs_per_key": 0, **update})


def keyed_client(settings: Settings, **update: Any) -> TestClient:
    return TestClient(create_app(keyed_settings(settings, **update)))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
