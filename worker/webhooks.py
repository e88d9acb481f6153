"""Webhook delivery: JSON POST signed with HMAC-SHA256 over the body, retried with exponential
backoff in a background thread so that the job result never waits for the receiver.

Headers: ``X-MMD-Signature: sha256=<hex>`` (present when ``MMD_WEBHOOK_SECRET`` is set),
``X-MMD-Event: job.<status>``, ``X-MMD-Delivery: <uuid>`` (the same on every retry).
Receivers verify with ``hmac.compare_digest(sign(body, secret), header)``.

SSRF: before every attempt the URL is checked again (``core.netguard``: http(s) only, the host
must resolve to public addresses unless ``MMD_WEBHOOK_ALLOW_PRIVATE``), so a name that was public
at submission and now resolves to a private address (DNS rebinding) is refused, and the request
goes to the very address that was checked (pinned; ``Host`` header and TLS SNI keep the name);
redirects are never followed (a 3xx is a failed delivery).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx

from core.netguard import Target, UnsafeURLError, pin
from worker.metrics import WEBHOOKS

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-MMD-Signature"


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(target: Target, body: bytes, headers: dict[str, str], timeout_s: float) -> httpx.Response:
    """POST to the pinned address (``Host`` header and TLS SNI of the original name; the
    certificate is verified against that name); redirects are not followed."""
    extra = {"Host": target.host_header} if target.host_header else {}
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        request = client.build_request("POST", target.url, content=body,
                                       headers={**headers, **extra}, extensions=extensions)
        return client.send(request)


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


class WebhookSender:
    """Delivers webhooks on a small thread pool; :meth:`close` waits for pending deliveries."""

    def __init__(self, *, secret: str | None, timeout_s: float, retries: int, backoff_s: float,
                 sleep: Callable[[float], None] = time.sleep,
                 allow_private: bool | None = None) -> None:
        if allow_private is None:  # default: MMD_WEBHOOK_ALLOW_PRIVATE
            from core.settings import get_settings

            allow_private = get_settings().webhook_allow_private
        self.allow_private = allow_private
        self.secret = secret
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook")

    def send(self, url: str, event: str, payload: dict[str, Any]) -> Future[bool]:
        """Queue one delivery; the future resolves to True once the receiver answered 2xx."""
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        return self._pool.submit(self.deliver, url, event, body)

    def deliver(self, url: str, event: str, body: bytes) -> bool:
        """POST ``body`` with up to ``retries`` retries (backoff ``backoff_s * 2**attempt``)."""
        headers = {"Content-Type": "application/json", "X-MMD-Event": event,
                   "X-MMD-Delivery": str(uuid.uuid4()), "User-Agent": "mmd-serve-webhook/0.1"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.secret)
        for attempt in range(self.retries + 1):
            try:
                target = pin(url, allow_private=self.allow_private)
            except UnsafeURLError as exc:
                log.warning("webhook %s refused: %s", url, exc)
                WEBHOOKS.labels(outcome="refused").inc()
                return False
            try:
                r = _post(target, body, headers, self.timeout_s)
                if 200 <= r.status_code < 300:
                    WEBHOOKS.labels(outcome="delivered").inc()
                    return True
                if not _retryable(r.status_code):
                    log.warning("webhook %s answered %d; not retrying", url, r.status_code)
                    break
                reason = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                WEBHOOKS.labels(outcome="retried").inc()
                delay = self.backoff_s * 2**attempt
                log.info("webhook %s failed (%s); retry %d in %.1f s", url, reason, attempt + 1,
                         delay)
                self._sleep(delay)
        WEBHOOKS.labels(outcome="failed").inc()
        log.warning("webhook %s gave up after %d attempt(s)", url, attempt + 1)
        return False

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
