"""``/docs`` works offline: every script and stylesheet the page loads is served by the gateway
itself (service/docs.py, from the swagger-ui-bundle-v2 wheel), none from a CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_docs_page_loads_only_local_assets(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    urls += re.findall(r"""url:\s*["']([^"']+)["']""", page.text)
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls), urls
    assert any(u.endswith("swagger-ui.css") for u in urls), urls
    assert "/openapi.json" in urls
    for url in urls:
        assert url.startswith("/"), f"{url} is not served by the gateway (offline /docs)"
        r = client.get(url)
        assert r.status_code == 200, url
        if url.endswith(".js"):
            assert "javascript" in r.headers["content-type"] and len(r.content) > 100_000
        if url.endswith(".css"):
            assert r.headers["content-type"].startswith("text/css")
    assert client.get("/redoc").status_code == 404  # CDN-only, so not served
    assert client.get("/docs/oauth2-redirect").status_code == 200
