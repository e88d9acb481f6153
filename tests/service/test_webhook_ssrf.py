"""Webhook SSRF guard: http(s) only, private/loopback/link-local/... targets refused at
submission (422) and again by the worker right before delivery; redirects never followed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.netguard import UnsafeURLError, check_url
from core.settings import Settings
from tests.helpers.auth import JOB_BODY, KEY_A, bearer, keyed_client
from worker.webhooks import WebhookSender

BLOCKED = ["http://127.0.0.1/h", "http://10.1.2.3/h", "http://169.254.169.254/latest/meta-data",
           "http://[::1]/h", "http://[::ffff:127.0.0.1]/h", "http://[fe80::1]/h",
           "http://0.0.0.0/h", "http://224.0.0.1/h", "http://192.168.1.1/h", "http://172.16.0.1/h",
           "http://100.64.0.1/h", "http://localhost:8080/h", "https://[::ffff:10.0.0.1]/h"]


@pytest.mark.parametrize("url", BLOCKED)
def test_private_targets_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="non-public"):
        check_url(url, allow_private=False)
    assert check_url(url, allow_private=True) == url


@pytest.mark.parametrize("url", ["ftp://example.com/h", "file:///etc/passwd", "gopher://x/",
                                 "http:///nohost"])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        check_url(url, allow_private=True)


def test_public_literal_is_accepted() -> None:
    assert check_url("https://8.8.8.8/hook", allow_private=False)
    assert check_url("https://[2001:4860:4860::8888]/hook", allow_private=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/h", "http://localhost/h",
                                 "http://[::ffff:127.0.0.1]/h"])
def test_submission_with_private_webhook_is_422(settings: Settings, url: str) -> None:
    c = keyed_client(settings, webhook_allow_private=False)
    r = c.post("/generate", json={**JOB_BODY, "webhook_url": url}, headers=bearer(KEY_A))
    assert r.status_code == 422 and "non-public" in r.text
    r = c.post("/generate", json={"mode": "audio-to-video", "audio_url": url, **JOB_BODY},
               headers=bearer(KEY_A))
    assert r.status_code == 422 and "audio_url" in r.text
    ok = keyed_client(settings, webhook_allow_private=True)
    assert ok.post("/generate", json={**JOB_BODY, "webhook_url": url},
                   headers=bearer(KEY_A)).status_code == 202


class _Server:
    def __init__(self, status: int, location: str | None = None) -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.hits.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def servers() -> Iterator[list[_Server]]:
    made: list[_Server] = []
    yield made
    for s in made:
        s.server.shutdown()


def test_delivery_rechecks_the_target(servers: list[_Server]) -> None:
    target = _Server(204)
    servers.append(target)
    strict = WebhookSender(secret="s", timeout_s=5, retries=0, backoff_s=0, allow_private=False)
    assert strict.send(target.url + "/hook", "job.succeeded", {}).result(20) is False
    strict.close()
    assert target.hits == []  # never contacted
    loose = WebhookSender(secret="s", timeout_s=5, retries=0, backoff_s=0, allow_private=True)
    assert loose.send(target.url + "/hook", "job.succeeded", {}).result(20) is True
    loose.close()
    assert target.hits == ["/hook"]


def test_redirects_are_not_followed(servers: list[_Server]) -> None:
    target = _Server(204)
    redirector = _Server(307, location=target.url + "/internal")
    servers.extend([target, redirector])
    sender = WebhookSender(secret=None, timeout_s=5, retries=2, backoff_s=0, allow_private=True,
                           sleep=lambda s: None)
    assert sender.send(redirector.url + "/hook", "job.failed", {}).result(20) is False
    sender.close()
    assert redirector.hits == ["/hook"] and target.hits == []


def test_pin_connects_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    import ipaddress

    import core.netguard as netguard

    monkeypatch.setattr(netguard, "resolve",
                        lambda host, port: [ipaddress.ip_address("93.184.216.34")])
    t = netguard.pin("https://user@hooks.example.com:8443/h?x=1", allow_private=False)
    assert t.url == "https://93.184.216.34:8443/h?x=1"
    assert (t.host_header, t.sni_hostname) == ("hooks.example.com:8443", "hooks.example.com")
    t = netguard.pin("http://hooks.example.com/h", allow_private=False)
    assert (t.url, t.host_header, t.sni_hostname) == ("http://93.184.216.34/h",
                                                       "hooks.example.com", None)


def test_dns_rebinding_is_caught_at_delivery(settings: Settings, servers: list[_Server],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Public at submission, loopback at delivery: accepted (202), then never delivered."""
    import ipaddress

    import core.netguard as netguard

    target = _Server(204)
    servers.append(target)
    port = target.url.rsplit(":", 1)[1]
    answers = {"now": "93.184.216.34"}
    monkeypatch.setattr(netguard, "resolve",
                        lambda host, p: [ipaddress.ip_address(answers["now"])])
    c = keyed_client(settings, webhook_allow_private=False)
    url = f"http://rebind.example:{port}/hook"
    assert c.post("/generate", json={**JOB_BODY, "webhook_url": url},
                  headers=bearer(KEY_A)).status_code == 202
    answers["now"] = "127.0.0.1"
    sender = WebhookSender(secret="s", timeout_s=5, retries=0, backoff_s=0, allow_private=False)
    assert sender.send(url, "job.succeeded", {}).result(20) is False
    sender.close()
    assert target.hits == []


def test_pinned_delivery_reaches_the_checked_address(servers: list[_Server],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that only our (patched) resolver knows: the request goes to its checked address
    with the original name in the Host header."""
    import ipaddress

    import core.netguard as netguard

    target = _Server(204)
    servers.append(target)
    seen: list[str] = []
    orig = target.server.RequestHandlerClass.do_POST

    def record(handler) -> None:
        seen.append(handler.headers["Host"])
        orig(handler)

    monkeypatch.setattr(target.server.RequestHandlerClass, "do_POST", record)
    monkeypatch.setattr(netguard, "resolve", lambda h, p: [ipaddress.ip_address("127.0.0.1")])
    monkeypatch.setattr(netguard, "is_public", lambda addr: True)  # pretend loopback is public
    port = target.url.rsplit(":", 1)[1]
    sender = WebhookSender(secret="s", timeout_s=5, retries=0, backoff_s=0, allow_private=False)
    assert sender.send(f"http://only-in-test.invalid:{port}/hook", "job.succeeded",
                       {}).result(20) is True
    sender.close()
    assert target.hits == ["/hook"] and seen == [f"only-in-test.invalid:{port}"]
