"""docker-compose.yml (+ the CPU override) and deploy/prometheus.yml."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
CPU = REPO_ROOT / "docker-compose.cpu.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI (.ci/run installs it)")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


def _config(*files: Path) -> dict[str, Any]:
    """The merged, interpolated model as `docker-compose config` prints it."""
    cmd = [_tool("docker-compose")]
    for f in files:
        cmd += ["-f", str(f)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    result = subprocess.run([*cmd, "config"], capture_output=True, text=True, timeout=60,
                            cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_accepted_and_has_the_stack() -> None:
    cfg = _config(COMPOSE)
    services = cfg["services"]
    assert set(services) == {"redis", "s3", "gateway", "worker", "prometheus", "cleanup"}
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert "-bucket=mmd" in services["s3"]["command"]
    assert services["gateway"]["environment"]["MMD_S3_BUCKET"] == "mmd"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["worker"]["environment"]["MMD_DEVICE"] == "cuda"
    named = set(cfg["volumes"])
    for svc in services.values():
        for vol in svc.get("volumes", []):
            source = vol["source"] if isinstance(vol, dict) else vol.split(":")[0]
            if source.startswith("/"):  # bind mounts only for config files from deploy/
                assert Path(source).parent == REPO_ROOT / "deploy" and Path(source).is_file()
            else:
                assert source in named, f"{source} is not a named volume"
    for name in ("gateway", "worker"):
        assert services[name]["command"][0] in ("gateway", "worker")


def test_cleanup_is_a_one_shot_with_the_gateway_image_and_storage() -> None:
    services = _config(COMPOSE)["services"]
    cleanup, gateway = services["cleanup"], services["gateway"]
    assert cleanup["profiles"] == ["cleanup"]  # `up` leaves it alone; `run --rm cleanup` sweeps
    assert cleanup["command"] == ["cleanup"]  # one sweep, no --every loop
    assert cleanup["image"] == gateway["image"]
    assert cleanup.get("restart", "no") == "no"
    for key, value in cleanup["environment"].items():  # the shared x-mmd-env block
        assert gateway["environment"][key] == value, key
    assert {"MMD_STORAGE_BACKEND", "MMD_S3_BUCKET", "MMD_S3_ENDPOINT_URL"} <= set(
        cleanup["environment"])


def test_cpu_override_replaces_the_gpu_worker() -> None:
    cfg = _config(COMPOSE, CPU)
    services = cfg["services"]
    assert services["worker"]["profiles"] == ["gpu"]  # not started without --profile gpu
    cpu = services["worker-cpu"]
    assert "deploy" not in cpu
    assert cpu["environment"]["MMD_DEVICE"] == "cpu"
    assert "worker" in cpu["networks"]["default"]["aliases"]
    assert services["gateway"]["environment"]["MMD_MODELS"] == cpu["environment"]["MMD_MODELS"]
    # Apart from device/precision/models, the CPU worker is configured like the GPU one.
    gpu_env = dict(services["worker"]["environment"])
    for key in ("MMD_DEVICE", "MMD_PRECISION", "MMD_MODELS"):
        gpu_env.pop(key), cpu["environment"].pop(key)
    assert cpu["environment"].pop("MMD_WARMUP") == "false"
    assert gpu_env == cpu["environment"]


def test_seaweedfs_credentials_match_the_services() -> None:
    import json

    identities = json.loads((REPO_ROOT / "deploy" / "seaweedfs-s3.json").read_text())["identities"]
    creds = identities[0]["credentials"][0]
    env = _config(COMPOSE)["services"]["gateway"]["environment"]
    assert env["MMD_S3_ACCESS_KEY_ID"] == creds["accessKey"]
    assert env["MMD_S3_SECRET_ACCESS_KEY"] == creds["secretKey"]


def test_prometheus_config_is_valid_and_scrapes_both() -> None:
    promtool = _tool("promtool")
    cfg_path = REPO_ROOT / "deploy" / "prometheus.yml"
    result = subprocess.run([promtool, "check", "config", str(cfg_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    targets = {t for job in yaml.safe_load(cfg_path.read_text())["scrape_configs"]
               for sc in job["static_configs"] for t in sc["targets"]}
    services = _config(COMPOSE)["services"]
    assert f"gateway:{services['gateway']['environment']['MMD_PORT']}" in targets
    assert f"worker:{services['worker']['environment']['MMD_WORKER_METRICS_PORT']}" in targets
