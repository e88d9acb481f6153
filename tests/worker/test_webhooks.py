"""Webhooks: HMAC signature, retries with backoff, delivery from a finished job — against a real
local HTTP server."""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from redis import Redis

from core.settings import Settings
from core.store import JobStore
from tests.helpers.jobs import FakeGenerate, make_runner, make_spec
from worker.webhooks import SIGNATURE_HEADER, WebhookSender, sign


class Receiver:
    """A webhook endpoint that fails the first ``fail_first`` deliveries with 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.calls: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                code = 503 if len(receiver.calls) <= receiver.fail_first else 204
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.server.shutdown()


def test_signature_is_hmac_sha256_of_body() -> None:
    expected = "sha256=" + hmac.new(b"s3cret", b'{"a":1}', "sha256").hexdigest()
    assert sign(b'{"a":1}', "s3cret") == expected
    assert sign(b'{"a":2}', "s3cret") != expected


def test_retries_with_backoff_then_delivers(receiver: Receiver) -> None:
    sleeps: list[float] = []
    sender = WebhookSender(secret="k", timeout_s=5, retries=3, backoff_s=0.5, sleep=sleeps.append,
                           allow_private=True)
    assert sender.send(receiver.url, "job.succeeded", {"id": "x"}).result(timeout=20) is True
    sender.close()
    assert len(receiver.calls) == 3 and sleeps == [0.5, 1.0]
    ids = {headers["X-MMD-Delivery"] for headers, _ in receiver.calls}
    assert len(ids) == 1  # one delivery id across retries
    headers, body = receiver.calls[-1]
    assert headers[SIGNATURE_HEADER] == sign(body, "k")


def test_gives_up_after_retries(receiver: Receiver) -> None:
    sender = WebhookSender(secret=None, timeout_s=5, retries=1, backoff_s=0, sleep=lambda s: None,
                           allow_private=True)
    assert sender.send(receiver.url, "job.failed", {}).result(timeout=20) is False
    sender.close()
    assert len(receiver.calls) == 2 and SIGNATURE_HEADER not in receiver.calls[0][0]


def test_finished_job_posts_its_view(settings: Settings, redis_conn: Redis) -> None:
    store = JobStore(redis_conn, settings)
    hook = Receiver(fail_first=0)
    try:
        sender = WebhookSender(secret="topsecret", timeout_s=5, retries=0, backoff_s=0,
                               allow_private=True)
        runner = make_runner(settings, store, FakeGenerate())
        runner.webhooks = sender
        spec = make_spec(webhook_url=hook.url)
        store.create_and_enqueue(spec)
        assert runner.run(spec.id) == "succeeded"
        sender.close(wait=True)
    finally:
        hook.server.shutdown()
    assert len(hook.calls) == 1
    headers, body = hook.calls[0]
    assert headers["X-MMD-Event"] == "job.succeeded"
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], sign(body, "topsecret"))
    payload = json.loads(body)
    assert payload["id"] == spec.id and payload["status"] == "succeeded"
    assert payload["result"]["sha256"] and payload["result"]["random_weights"] is True
