"""``MMD_METRICS_TOKEN``: unset, ``/metrics`` is open (Prometheus scrapes from inside the
cluster); set, it needs ``Authorization: Bearer <token>``. Checked with the test client and with a
real Prometheus scraping a real ``mmd gateway`` process, once with the token and once without."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.settings import Settings
from service.app import create_app
from tests.helpers.servers import free_port, mmd_process, stop, wait_for

TOKEN = "metrics-token-0123456789"


def test_metrics_are_open_by_default(settings: Settings) -> None:
    assert Settings.model_fields["metrics_token"].default is None
    client = TestClient(create_app(settings))
    r = client.get("/metrics")
    assert r.status_code == 200 and "mmd_queue_depth" in r.text


def test_metrics_token_is_required_when_set(settings: Settings,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMD_METRICS_TOKEN", TOKEN)
    assert Settings().metrics_token == SecretStr(TOKEN)  # read from the environment
    client = TestClient(create_app(settings.model_copy(
        update={"metrics_token": SecretStr(TOKEN)})))
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "MMD_METRICS_TOKEN" in r.json()["detail"]
        assert "mmd_queue_depth" not in r.text
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and "mmd_queue_depth" in r.text
    assert client.get("/healthz").status_code == 200  # the probes stay open
    assert client.get("/readyz").status_code == 503  # (no worker) but not 401


def test_prometheus_scrapes_with_the_token_and_is_refused_without(
        settings: Settings, redis_url: str, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    env = {"MMD_REDIS_URL": redis_url, "MMD_OPEN_MODE": "true", "MMD_PORT": str(port),
           "MMD_KEY_PREFIX": settings.key_prefix, "MMD_QUEUE_NAME": settings.queue_name,
           "MMD_DATA_DIR": str(tmp_path / "data"), "MMD_METRICS_TOKEN": TOKEN}
    gateway = mmd_process(["gateway"], env, tmp_path / "gateway.log")
    (tmp_path / "token").write_text(TOKEN)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: with-token\n"
        f"    authorization:\n      credentials_file: {tmp_path / 'token'}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        f"  - job_name: without-token\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
    prom_port = free_port()
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as fh:
        prom = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=fh, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{prom_port}/api/v1/query"
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200, 30,
                 "gateway", gateway, tmp_path / "gateway.log")

        def up() -> dict[str, float]:
            data = httpx.get(api, params={"query": "up"}, timeout=5).json()["data"]["result"]
            return {s["metric"]["job"]: float(s["value"][1]) for s in data}

        wait_for(lambda: len(up()) == 2, 30, "prometheus scrape", prom, log)
        assert up() == {"with-token": 1.0, "without-token": 0.0}
        data = httpx.get(api, params={"query": "mmd_queue_depth"}, timeout=5).json()
        assert {s["metric"]["job"] for s in data["data"]["result"]} == {"with-token"}
    finally:
        stop(prom)
        stop(gateway)
