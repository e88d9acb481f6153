"""Deployment files cannot drift from the code.

Every command line, ``MMD_*`` variable, container port and probe in docker-compose*.yml, k8s/
(each overlay, rendered), the Dockerfiles and docker/healthcheck.py is compared with what the code
implements: the ``Settings`` fields (and the env values must validate), the ``mmd`` subcommands and
their argparse flags, the gateway's FastAPI route table, the worker's metrics port and readiness
file, RQ's queue key and the gateway's Prometheus metric names.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import SUBCOMMANDS
from core.settings import Settings
from service.commands import COMMANDS as GATEWAY_COMMANDS
from tests.conftest import REPO_ROOT
from tests.helpers.docker import dockerfile_env
from tests.helpers.kustomize import pod_spec, render

SETTING_ENV = {f"MMD_{name.upper()}": name for name in Settings.model_fields}
HEALTHCHECK = REPO_ROOT / "docker" / "healthcheck.py"


@dataclass
class Container:
    """One container as deployed: where it is declared and what it runs with."""

    where: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # name (or str(port)) -> port
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    mounts: list[str] = field(default_factory=list)


def _k8s_containers(overlay: str) -> list[Container]:
    docs = render(REPO_ROOT / "k8s" / overlay)
    data: dict[tuple[str, str], dict[str, str]] = {}
    for d in docs:
        if d["kind"] == "ConfigMap":
            data["configMapRef", d["metadata"]["name"]] = d["data"]
        elif d["kind"] == "Secret":
            data["secretRef", d["metadata"]["name"]] = d["stringData"]
    out = []
    for d in docs:
        if d["kind"] not in ("Deployment", "CronJob") or (spec := pod_spec(d)) is None:
            continue
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            env: dict[str, str] = {}
            for src in c.get("envFrom", []):
                ((ref, body),) = src.items()
                env.update(data[ref, body["name"]])
            env.update({e["name"]: e["value"] for e in c.get("env", [])})
            ports = {p.get("name", str(p["containerPort"])): p["containerPort"]
                     for p in c.get("ports", [])}
            probes = {k: c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")
                      if k in c}
            out.append(Container(f"k8s/{overlay}:{d['metadata']['name']}/{c['name']}",
                                 [*c["command"], *c.get("args", [])], env, ports, probes,
                                 [m["mountPath"] for m in c.get("volumeMounts", [])]))
    return out




def _compose_containers() -> list[Container]:
    base = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    cpu = yaml.safe_load((REPO_ROOT / "docker-compose.cpu.yml").read_text())["services"]
    out = []
    for file, services, merged in (("docker-compose.yml", base, {}),
                                   ("docker-compose.cpu.yml", cpu, base)):
        for name, svc in services.items():
            full = {**merged.get(name, {}), **svc}
            if "command" not in full or ("build" not in full and "image" not in full):
                continue
            image = full.get("image", "")
            if not image.startswith("mmd-"):
                continue
            dockerfile = "gateway.Dockerfile" if "gateway" in image else "worker.Dockerfile"
            env = {**dockerfile_env(dockerfile), **merged.get(name, {}).get("environment", {}),
                   **svc.get("environment", {})}
            command = "mmd-gateway" if "gateway" in image else "mmd"  # the image's ENTRYPOINT
            out.append(Container(f"{file}:{name}", [command, *full["command"]],
                                 {k: str(v) for k, v in env.items()}))
    return out


ALL = [*_compose_containers(), *(c for o in ("base", "overlays/dev", "overlays/prod")
                                  for c in _k8s_containers(o))]
IDS = [c.where for c in ALL]


def _route_paths(routes: list[Any]) -> set[str]:
    """Paths of a FastAPI route table (newer FastAPI wraps included routers; unwrap them)."""
    paths: set[str] = set()
    for route in routes:
        if getattr(route, "path", None):
            paths.add(route.path)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            paths |= _route_paths(inner.routes)
    return paths


@pytest.fixture(scope="module")
def gateway_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from redis import Redis

    from core.storage import LocalStorage
    from service.app import create_app

    # Nothing listens on port 1: Redis-backed routes answer without a server.
    return create_app(Settings(redis_url="redis://127.0.0.1:1/0"),
                      redis=Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1),
                      storage=LocalStorage(tmp_path_factory.mktemp("drift-data")))


@pytest.fixture(scope="module")
def app_routes(gateway_app: Any) -> set[str]:
    paths = _route_paths(gateway_app.routes)
    assert {"/healthz", "/readyz", "/metrics"} <= paths, sorted(paths)
    return paths


def test_probe_paths_answer_on_the_real_app(gateway_app: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(gateway_app) as client:
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "mmd_queue_depth" in metrics.text
        assert client.get("/readyz").status_code == 503  # Redis unreachable => unready


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    import os

    for key in [k for k in os.environ if k.startswith("MMD_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_there_is_something_to_check() -> None:
    wheres = " ".join(IDS)
    for part in ("docker-compose.yml:gateway", "docker-compose.yml:worker",
                 "docker-compose.cpu.yml:worker-cpu", "k8s/overlays/prod:mmd-worker/fetch-weights",
                 "k8s/overlays/dev:mmd-gateway/gateway", "k8s/base:mmd-cleanup/cleanup"):
        assert part in wheres


@pytest.mark.parametrize("c", ALL, ids=IDS)
def test_env_vars_are_settings_fields_and_validate(c: Container,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    mmd = {k: v for k, v in c.env.items() if k.startswith("MMD_")}
    unknown = sorted(set(mmd) - set(SETTING_ENV))
    assert not unknown, f"{c.where}: {unknown} are not fields of core.settings.Settings"
    settings = _settings_from(mmd, monkeypatch)  # raises if a value does not validate
    for key, value in mmd.items():
        if key.endswith(("_KEY_ID", "ACCESS_KEY", "SECRET", "KEYS", "_MODELS")):
            continue
        got = getattr(settings, SETTING_ENV[key])
        assert str(got).lower() == value.lower() or str(got) == str(Path(value)), (key, got)


@pytest.mark.parametrize("c", ALL, ids=IDS)
def test_commands_are_real_subcommands_with_real_flags(c: Container) -> None:
    commands = {"mmd": SUBCOMMANDS, "mmd-gateway": GATEWAY_COMMANDS}.get(c.argv[0])
    assert commands is not None, f"{c.where}: runs {c.argv[0]!r}, not the mmd CLI"
    sub = c.argv[1]
    assert sub in commands, f"{c.where}: `{c.argv[0]} {sub}` is not one of {sorted(commands)}"
    module = importlib.import_module(commands[sub][0])
    parser = argparse.ArgumentParser(prog=f"mmd {sub}", exit_on_error=False)
    module.add_arguments(parser)
    try:
        args, unknown = parser.parse_known_args(c.argv[2:])
    except (argparse.ArgumentError, SystemExit) as exc:
        pytest.fail(f"{c.where}: `{' '.join(c.argv)}` is rejected by the CLI: {exc}")
    assert not unknown, f"{c.where}: `mmd {sub}` has no argument(s) {unknown}"
    if sub == "fetch-weights":
        from worker.fetch_weights import parse_source

        for source in args.sources:
            parse_source(source)
        assert str(args.dest) in c.mounts, f"{c.where}: --dest {args.dest} is not a volume"


@pytest.mark.parametrize("c", [c for c in ALL if c.where.startswith("k8s")],
                         ids=[i for i in IDS if i.startswith("k8s")])
def test_ports_and_probes_match_the_code(c: Container, app_routes: set[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_from({k: v for k, v in c.env.items() if k.startswith("MMD_")},
                              monkeypatch)
    sub = c.argv[1]
    if sub == "gateway":
        assert c.ports == {"http": settings.port}
    elif sub == "worker":
        assert c.ports == {"metrics": settings.worker_metrics_port}
        assert settings.worker_ready_file is not None
        assert str(settings.worker_ready_file.parent) in c.mounts, "ready file not writable"
    for kind, probe in c.probes.items():
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = c.ports.get(get["port"], get["port"])
            assert port in c.ports.values(), f"{c.where} {kind}: port {get['port']} undeclared"
            if sub == "gateway":
                assert get["path"] in app_routes, f"{c.where} {kind}: no route {get['path']}"
            else:  # prometheus_client's server: /metrics on MMD_WORKER_METRICS_PORT
                assert (port, get["path"]) == (settings.worker_metrics_port, "/metrics")
        else:
            cmd = probe["exec"]["command"]
            assert cmd[0] == "mmd-healthcheck" and cmd[1] == sub, f"{c.where} {kind}: {cmd}"


def test_healthcheck_script_reads_real_settings_with_their_defaults() -> None:
    used = re.findall(r'os\.environ\.get\("(MMD_\w+)", "([^"]*)"\)', HEALTHCHECK.read_text())
    assert {k for k, _ in used} == {"MMD_PORT", "MMD_WORKER_READY_FILE",
                                    "MMD_WORKER_HEARTBEAT_TTL_S"}
    for key, default in used:
        field_default = Settings.model_fields[SETTING_ENV[key]].default
        assert str(field_default) == default or float(field_default) == float(default), key
    checks = re.search(r"checks = \{(.*?)\}", HEALTHCHECK.read_text()).group(1)
    assert set(re.findall(r'"(\w+)"', checks)) == {"gateway", "worker"}
    for name in ("gateway.Dockerfile", "worker.Dockerfile"):
        text = (REPO_ROOT / "docker" / name).read_text()
        assert "COPY docker/healthcheck.py /usr/local/bin/mmd-healthcheck" in text
        expose = re.search(r"^EXPOSE (\d+)", text, re.M).group(1)
        env = dockerfile_env(name)
        port_key = "MMD_PORT" if name.startswith("gateway") else "MMD_WORKER_METRICS_PORT"
        assert env[port_key] == expose
        assert set(k for k in env if k.startswith("MMD_")) <= set(SETTING_ENV), name


def test_config_and_secret_keys_are_settings() -> None:
    for overlay in ("base", "overlays/dev", "overlays/prod"):
        for d in render(REPO_ROOT / "k8s" / overlay):
            if d["kind"] in ("ConfigMap", "Secret"):
                keys = set(d.get("data", {})) | set(d.get("stringData", {}))
                assert keys <= set(SETTING_ENV), (overlay, sorted(keys - set(SETTING_ENV)))


def test_autoscaler_watches_the_queue_and_metrics_the_code_writes() -> None:
    from redis import Redis
    from rq import Queue

    import service.metrics as gateway_metrics

    names = {m._name for m in vars(gateway_metrics).values() if hasattr(m, "_name")}
    for overlay in ("base", "overlays/dev", "overlays/prod"):
        docs = render(REPO_ROOT / "k8s" / overlay)
        config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
        so = next(d for d in docs if d["kind"] == "ScaledObject")
        for trig in so["spec"]["triggers"]:
            meta = trig["metadata"]
            if trig["type"] == "redis":
                queue = Queue(config["MMD_QUEUE_NAME"], connection=Redis())
                assert meta["listName"] == queue.key
            elif trig["type"] == "prometheus":
                used = set(re.findall(r"\b(mmd_\w+)", meta["query"]))
                assert used and used <= names, (overlay, used - names)


def test_compose_models_point_into_the_weights_volume() -> None:
    cfg = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    worker = cfg["services"]["worker"]
    models = json.loads(worker["environment"]["MMD_MODELS"])
    mounts = {v.split(":")[1] for v in worker["volumes"]}
    for spec in models.values():
        for key in ("checkpoint", "sr_checkpoint"):
            assert str(Path(spec[key]).parent) in mounts, spec[key]


@pytest.mark.parametrize("dockerfile, sub", [("gateway.Dockerfile", "gateway"),
                                             ("worker.Dockerfile", "worker")])
def test_image_entrypoint_cmd_and_healthcheck_are_real(dockerfile: str, sub: str) -> None:
    text = re.sub(r"\\\n", " ", (REPO_ROOT / "docker" / dockerfile).read_text())
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    commands = GATEWAY_COMMANDS if sub == "gateway" else SUBCOMMANDS
    assert entry == ["mmd-gateway" if sub == "gateway" else "mmd"] and cmd == [sub]
    assert sub in commands
    health = json.loads(re.search(r"^HEALTHCHECK .*CMD (\[.*\])$", text, re.M).group(1))
    assert health == ["mmd-healthcheck", sub]
