"""What route handlers get injected: the settings, the job store and the storage backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis import Redis

from core.settings import Settings
from core.storage import Storage
from core.store import JobStore
from service.auth import Authenticator
from service.limits import Limiter


@dataclass(frozen=True)
class AppState:
    settings: Settings
    redis: Redis
    store: JobStore
    storage: Storage
    auth: Authenticator
    limiter: Limiter


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.mmd
    return state


State = Annotated[AppState, Depends(get_state)]


def base_url(request: Request, settings: Settings) -> str:
    """Where clients reach the gateway: ``MMD_PUBLIC_URL`` or the request's own base URL."""
    return (settings.public_url or str(request.base_url)).rstrip("/")
