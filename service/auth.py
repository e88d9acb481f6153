"""API-key authentication: ``Authorization: Bearer <key>`` checked against hashed keys.

Keys are configured as sha256 hex digests (``MMD_API_KEYS``, ``MMD_API_KEYS_FILE``), each
optionally named (``name:hex``). A request's key is hashed and compared with every configured
digest in constant time (``hmac.compare_digest``, no early exit). The caller's identity, its
*key id* (the name, or ``key-`` + the first 12 hex digits of the digest), is what job records
and uploads store as their owner: never the key itself. In open mode (``MMD_OPEN_MODE=true``)
no key is needed and every request acts as the owner ``open``.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from core.keys import KeyEntry, parse_key_entry
from core.settings import Settings

OPEN_OWNER = "open"


def load_keys(settings: Settings) -> tuple[KeyEntry, ...]:
    """All configured keys: ``MMD_API_KEYS`` then the lines of ``MMD_API_KEYS_FILE``."""
    entries = [parse_key_entry(e, where="MMD_API_KEYS") for e in settings.api_keys]
    path: Path | None = settings.api_keys_file
    if path is not None:
        if not path.is_file():
            raise ValueError(f"MMD_API_KEYS_FILE={path} does not exist; create it (one sha256 hex "
                             "digest or name:digest a line) or unset it")
        for n, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append(parse_key_entry(line, where=f"{path}:{n}"))
    return tuple(entries)


class Authenticator:
    """Maps a request's bearer token to a key id, or raises 401."""

    def __init__(self, settings: Settings) -> None:
        self.open = settings.open_mode
        self.keys = load_keys(settings)

    def identify(self, authorization: str | None) -> str:
        if self.open:
            return OPEN_OWNER
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        digest = hashlib.sha256(token.encode()).digest()
        found: str | None = None
        for entry in self.keys:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(digest, entry.digest):
                found = entry.key_id
        if found is None:
            raise _unauthorized("invalid API key; check the 'Authorization: Bearer <key>' header")
        return found


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="mmd"'})


def get_owner(request: Request) -> str:
    """FastAPI dependency: the caller's key id (401 without a valid key unless open mode)."""
    auth: Authenticator = request.app.state.mmd.auth
    return auth.identify(request.headers.get("authorization"))


Owner = Annotated[str, Depends(get_owner)]
