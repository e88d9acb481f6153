"""The compose stack's entrypoint commands, run for real outside Docker.

The gateway and the CPU worker are started with the command line of docker-compose.yml /
docker-compose.cpu.yml (after the images' ``ENTRYPOINT``: ``mmd-gateway`` or ``mmd``) and the
environment those files and the Dockerfiles' ``ENV`` give them. Only host-specific values are
rewritten: service
addresses (``redis`` / ``s3`` become 127.0.0.1 servers started here, SeaweedFS exactly as compose
runs it), free ports, and paths under a temp dir. Then a job is served end to end, the MP4 is
fetched from S3 through the gateway's redirect and decoded, and the images' HEALTHCHECK commands
(docker/healthcheck.py) are run against the live processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.helpers.docker import dockerfile_env
from tests.helpers.seaweed import client, compose_s3
from tests.helpers.servers import free_port, redis_server, stop, wait_for

pytestmark = pytest.mark.e2e

HOST_SPECIFIC = {"MMD_REDIS_URL", "MMD_S3_ENDPOINT_URL", "MMD_S3_PUBLIC_ENDPOINT_URL",
                 "MMD_HOST", "MMD_PORT", "MMD_PUBLIC_URL", "MMD_WORKER_METRICS_PORT",
                 "MMD_WORKER_READY_FILE", "MMD_DATA_DIR"}


def _service(name: str) -> tuple[list[str], dict[str, str], str]:
    """(argv after the entrypoint, environment, Dockerfile) of a compose service (CPU stack)."""
    base = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    cpu = yaml.safe_load((REPO_ROOT / "docker-compose.cpu.yml").read_text())["services"]
    svc = {**base.get(name, {}), **cpu.get(name, {})}
    env = {**base.get(name, {}).get("environment", {}), **cpu.get(name, {}).get("environment", {})}
    dockerfile = "gateway.Dockerfile" if "gateway" in svc["image"] else "worker.Dockerfile"
    return list(svc["command"]), {**dockerfile_env(dockerfile), **env}, dockerfile


def _mmd(dockerfile: str) -> list[str]:
    """The image's ENTRYPOINT (`mmd-gateway` for the gateway image, `mmd` for the worker's): the
    installed script, or the same dispatcher via -m."""
    script, module = (("mmd-gateway", "service.commands") if dockerfile == "gateway.Dockerfile"
                      else ("mmd", "cli"))
    found = shutil.which(script)
    return [found] if found else [sys.executable, "-m", module]


def _process_env(container_env: dict[str, str], rewrites: dict[str, str]) -> dict[str, str]:
    assert set(rewrites) <= HOST_SPECIFIC
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    env.update(container_env)
    env.update(rewrites)
    env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2")
    return env


def _healthcheck(kind: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO_ROOT / "docker" / "healthcheck.py"), kind],
                          env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("entrypoints")
    _, gw_env, _ = _service("gateway")
    with redis_server(tmp / "redis") as redis_url, \
            compose_s3(tmp / "s3", gw_env["MMD_S3_BUCKET"]) as endpoint:
        yield {"redis": redis_url, "s3": endpoint, "tmp": str(tmp)}


def test_compose_entrypoints_serve_a_job(servers: dict[str, str]) -> None:
    tmp = Path(servers["tmp"])
    gw_args, gw_env, _ = _service("gateway")
    wk_args, wk_env, wk_dockerfile = _service("worker-cpu")
    assert (gw_args[0], wk_args[0], wk_dockerfile) == ("gateway", "worker", "worker.Dockerfile")
    assert wk_env["MMD_DEVICE"] == "cpu" and wk_env["MMD_STORAGE_BACKEND"] == "s3"
    port, metrics_port = free_port(), free_port()
    common = {"MMD_REDIS_URL": servers["redis"], "MMD_S3_ENDPOINT_URL": servers["s3"],
              "MMD_S3_PUBLIC_ENDPOINT_URL": servers["s3"]}
    for env in (gw_env, wk_env):  # every rewritten key is one the stack really sets
        assert set(common) <= set(env)
    gw = _process_env(gw_env, {**common, "MMD_HOST": "127.0.0.1", "MMD_PORT": str(port),
                               "MMD_PUBLIC_URL": f"http://127.0.0.1:{port}",
                               "MMD_DATA_DIR": str(tmp / "gw-data")})
    wk = _process_env(wk_env, {**common, "MMD_WORKER_METRICS_PORT": str(metrics_port),
                               "MMD_WORKER_READY_FILE": str(tmp / "worker-ready"),
                               "MMD_DATA_DIR": str(tmp / "wk-data")})
    logs = {name: tmp / f"{name}.log" for name in ("gateway", "worker")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, args, env, dockerfile in (("worker", wk_args, wk, wk_dockerfile),
                                            ("gateway", gw_args, gw, "gateway.Dockerfile")):
            with open(logs[name], "wb") as fh:
                procs[name] = subprocess.Popen([*_mmd(dockerfile), *args], env=env, cwd=tmp,
                                               stdout=fh,
                                               stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(base + "/healthz").status_code == 200, 60, "gateway",
                 procs["gateway"], logs["gateway"])
        assert _healthcheck("gateway", gw).returncode == 0
        wait_for(lambda: _healthcheck("worker", wk).returncode == 0, 120, "worker ready file",
                 procs["worker"], logs["worker"])
        assert httpx.get(base + "/readyz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 200

        body = {"seed": 3, "sampler": {"name": "dpm_solver", "steps": 3, "order": 2},
                "super_resolution": {"enabled": True, "sampler": "ddim", "steps": 2}}
        auth = {"Authorization": "Bearer mmd-dev-api-key"}  # the compose file's dev key
        assert httpx.post(base + "/generate", json=body).status_code == 401  # auth is on
        with httpx.Client(base_url=base, timeout=30, headers=auth) as c:
            r = c.post("/generate", json=body)
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            deadline = time.monotonic() + 120
            while (view := c.get(f"/jobs/{job_id}").json())["status"] not in (
                    "succeeded", "failed", "canceled"):
                assert time.monotonic() < deadline, view
                time.sleep(0.2)
            assert view["status"] == "succeeded", (view, _tail(logs))
            result = c.get(f"/jobs/{job_id}/result")
        assert result.status_code == 307  # S3 storage: a presigned URL on the compose bucket
        location = result.headers["location"]
        assert location.startswith(servers["s3"] + "/" + gw_env["MMD_S3_BUCKET"] + "/")
        mp4 = httpx.get(location, timeout=30)
        assert mp4.status_code == 200
        _check_mp4(mp4.content, tmp / "out.mp4", view["result"])
        keys = [o["Key"] for o in client(servers["s3"]).list_objects_v2(
            Bucket=gw_env["MMD_S3_BUCKET"]).get("Contents", [])]
        assert any(k.endswith(".mp4") for k in keys), keys

        # SIGTERM (what `docker stop` and Kubernetes send): not ready any more, clean exit.
        procs["worker"].send_signal(signal.SIGTERM)
        assert procs["worker"].wait(60) == 0, _tail(logs)
        assert _healthcheck("worker", wk).returncode == 1
    finally:
        for proc in procs.values():
            stop(proc)


def _check_mp4(data: bytes, path: Path, result: dict[str, Any]) -> None:
    import av

    path.write_bytes(data)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    assert len(frames) == round(result["duration_s"] * result["fps"])
    assert frames[0].shape == (result["height"], result["width"], 3)
    assert samples >= 2048 and result["random_weights"] is True


def _tail(logs: dict[str, Path]) -> str:
    return "\n".join(f"--- {n}\n{p.read_text(errors='replace')[-2500:]}"
                     for n, p in logs.items() if p.exists())


def test_compose_cleanup_one_shot_sweeps_the_bucket(servers: dict[str, str]) -> None:
    """`docker compose run --rm cleanup`: one sweep over the compose bucket, then exit 0."""
    args, env, dockerfile = _service("cleanup")
    assert args == ["cleanup"] and dockerfile == "gateway.Dockerfile"
    bucket = env["MMD_S3_BUCKET"]
    s3 = client(servers["s3"])
    s3.put_object(Bucket=bucket, Key="uploads/fresh/input.wav", Body=b"RIFF fresh upload")
    run_env = _process_env(env, {"MMD_REDIS_URL": servers["redis"],
                                 "MMD_S3_ENDPOINT_URL": servers["s3"],
                                 "MMD_S3_PUBLIC_ENDPOINT_URL": servers["s3"]})
    done = subprocess.run(
        [*_mmd(dockerfile), *args],
        env=run_env,
        cwd=servers["tmp"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = dict(part.split("=") for part in done.stdout.split())
    assert int(report["scanned"]) >= 1 and report["deleted"] == "0"  # younger than the TTL
    assert (
        s3.get_object(Bucket=bucket, Key="uploads/fresh/input.wav")["Body"].read()
        == b"RIFF fresh upload"
    )
