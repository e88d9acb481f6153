"""Signed result links (core/signing.py): any change or a passed expiry is rejected; replicas
without a configured key share one from Redis (real redis-server)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr
from redis import Redis

from core.settings import Settings
from core.signing import LinkRejected, LinkSigner

NOW = 1_800_000_000.0


def _parts(link: str) -> tuple[str, int, str]:
    u = urlsplit(link)
    q = parse_qs(u.query)
    return u.path, int(q["expires"][0]), q["sig"][0]


@pytest.fixture
def signer(settings: Settings, redis_conn: Redis) -> LinkSigner:
    keyed = settings.model_copy(update={"result_link_key": SecretStr("k" * 32),
                                        "result_link_ttl_s": 60})
    return LinkSigner(keyed, redis_conn)


def test_a_link_verifies_until_it_expires(signer: LinkSigner) -> None:
    link, expires = signer.sign("job1", 0, now=NOW)
    path, exp, sig = _parts(link)
    assert path == "/results/job1/0.mp4" and exp == expires == NOW + 60
    signer.verify("job1", 0, exp, sig, now=NOW + 59)
    with pytest.raises(LinkRejected, match="expired"):
        signer.verify("job1", 0, exp, sig, now=NOW + 60)


def test_any_change_is_rejected(signer: LinkSigner, settings: Settings,
                                redis_conn: Redis) -> None:
    link, _ = signer.sign("job1", 0, now=NOW)
    _, exp, sig = _parts(link)
    for job, sample, expires, s in [("job2", 0, exp, sig), ("job1", 1, exp, sig),
                                    ("job1", 0, exp + 1, sig), ("job1", 0, exp, sig[:-2] + "AA"),
                                    ("job1", 0, exp, "")]:
        with pytest.raises(LinkRejected, match="signature"):
            signer.verify(job, sample, expires, s, now=NOW)
    other = LinkSigner(settings.model_copy(update={"result_link_key": SecretStr("x" * 32)}),
                       redis_conn)
    with pytest.raises(LinkRejected, match="signature"):
        other.verify("job1", 0, exp, sig, now=NOW)


def test_replicas_share_the_key_from_redis(settings: Settings, redis_conn: Redis) -> None:
    a, b = LinkSigner(settings, redis_conn), LinkSigner(settings, redis_conn)
    link, _ = a.sign("job1", 2, now=NOW)
    _, exp, sig = _parts(link)
    b.verify("job1", 2, exp, sig, now=NOW)
    assert len(a.key()) == 64 and a.key() == redis_conn.get(settings.key("result-link-key"))
    c = LinkSigner(settings.model_copy(update={"key_prefix": settings.key_prefix + "x"}),
                   redis_conn)
    with pytest.raises(LinkRejected):  # another deployment on the same Redis: another key
        c.verify("job1", 2, exp, sig, now=NOW)
