"""Signed, expiring result links that a browser can play (``<video src>`` sends no bearer header).

A link is ``/results/{job_id}/{sample}.mp4?expires=<unix s>&sig=<HMAC>``, the HMAC-SHA256 of
``"{job_id}:{sample}:{expires}"`` under ``MMD_RESULT_LINK_KEY`` (or, unset, a random key created
once in Redis and shared by every gateway replica). It carries no API key; a changed job id,
sample or expiry, or a passed expiry, is rejected (403). On S3 the result's link is the presigned
URL instead (see ``service.links``). No torch, no web framework here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from redis import Redis

from core.settings import Settings


class LinkRejected(ValueError):
    """A signed link is expired or its signature does not match."""


def signature(key: bytes, job_id: str, sample: int, expires: int) -> str:
    """The link signature: URL-safe base64 of HMAC-SHA256 over job id, sample and expiry."""
    mac = hmac.new(key, f"{job_id}:{sample}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def link_path(job_id: str, sample: int) -> str:
    """The route of a signed link, without its query."""
    return f"/results/{job_id}/{sample}.mp4"


@dataclass
class LinkSigner:
    """Makes and checks signed links with the configured key (or the shared one in Redis)."""

    settings: Settings
    redis: Redis
    _key: bytes | None = None

    def key(self) -> bytes:
        if self._key is None:
            configured = self.settings.result_link_key
            if configured is not None:
                self._key = configured.get_secret_value().encode()
            else:  # one random key for every replica, created by whichever asks first
                name = self.settings.key("result-link-key")
                self.redis.set(name, secrets.token_hex(32), nx=True)
                stored = self.redis.get(name)
                assert stored is not None
                self._key = stored if isinstance(stored, bytes) else str(stored).encode()
        return self._key

    def sign(self, job_id: str, sample: int, *, now: float | None = None) -> tuple[str, int]:
        """``(path?query, expires)`` for sample ``sample`` of job ``job_id``, valid for
        ``MMD_RESULT_LINK_TTL_S`` from ``now``."""
        expires = int(now if now is not None else time.time()) + self.settings.result_link_ttl_s
        query = urlencode({"expires": expires,
                           "sig": signature(self.key(), job_id, sample, expires)})
        return f"{link_path(job_id, sample)}?{query}", expires

    def verify(self, job_id: str, sample: int, expires: int, sig: str, *,
               now: float | None = None) -> None:
        """Raises :class:`LinkRejected` unless ``sig`` signs these values and ``expires`` is
        still ahead."""
        expected = signature(self.key(), job_id, sample, expires)
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise LinkRejected("this result link's signature does not match (the link was "
                               "changed or signed with another key); GET /jobs/{id} for a fresh "
                               "signed_url")
        if expires <= (now if now is not None else time.time()):
            raise LinkRejected("this result link has expired; GET /jobs/{id} for a fresh "
                               "signed_url")
