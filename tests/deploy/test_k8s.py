"""k8s/: every overlay renders, passes kubernetes-validate (strict) and has the properties the
deployment needs (GPU, probes, grace period, security contexts, resources, autoscaling)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from core.settings import Settings
from tests.conftest import REPO_ROOT
from tests.helpers.kustomize import pod_spec, render, render_kubectl, render_python

K8S_VERSION = "1.32.0"  # a current release; the package's newest schema is checked too
OVERLAYS = ["base", "overlays/dev", "overlays/prod"]
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" /
                          "keda-scaledobject.schema.json").read_text())
Doc = dict[str, Any]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Doc]:
    return render(REPO_ROOT / "k8s" / request.param)


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_specs(docs: list[Doc]) -> list[tuple[str, Doc]]:
    return [(d["metadata"]["name"], spec) for d in docs if (spec := pod_spec(d)) is not None]


@pytest.mark.parametrize("version", [K8S_VERSION, None])
def test_builtin_kinds_pass_strict_validation(rendered: list[Doc], version: str | None) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    checked = 0
    for doc in rendered:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        kubernetes_validate.validate(doc, version or latest_version(), strict=True)
        checked += 1
    assert checked >= 10


def test_keda_scaled_object_matches_schema(rendered: list[Doc]) -> None:
    so = _one(rendered, "ScaledObject", "mmd-worker")
    jsonschema.validate(so, KEDA_SCHEMA)
    target = so["spec"]["scaleTargetRef"]["name"]
    _one(rendered, "Deployment", target)
    redis_trigger = next(t for t in so["spec"]["triggers"] if t["type"] == "redis")
    config = _one(rendered, "ConfigMap", "mmd-config")["data"]
    assert redis_trigger["metadata"]["listName"] == f"rq:queue:{config['MMD_QUEUE_NAME']}"
    namespace = so["metadata"]["namespace"]
    assert redis_trigger["metadata"]["address"] == f"mmd-redis.{namespace}.svc.cluster.local:6379"
    assert config["MMD_REDIS_URL"].startswith(f"redis://mmd-redis.{namespace}.svc.cluster.local")


def test_keda_schema_rejects_what_it_should() -> None:
    so = _one(render_python(REPO_ROOT / "k8s" / "base"), "ScaledObject", "mmd-worker")
    broken = json.loads(json.dumps(so))
    broken["spec"]["triggers"][0]["metadata"].pop("listName")
    with pytest.raises(jsonschema.ValidationError, match="listName"):
        jsonschema.validate(broken, KEDA_SCHEMA)
    typo = json.loads(json.dumps(so))
    typo["spec"]["minReplicas"] = 1  # the HPA's spelling, not KEDA's
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        jsonschema.validate(typo, KEDA_SCHEMA)


def test_python_renderer_matches_kubectl() -> None:
    for overlay in OVERLAYS:
        folder = REPO_ROOT / "k8s" / overlay
        ours = render_python(folder)
        theirs = render_kubectl(folder)
        if theirs is None:
            pytest.skip("kubectl is not installed; the Python renderer is used alone")
        key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
        assert {key(d): d for d in ours} == {key(d): d for d in theirs}, overlay


def test_everything_listed_in_the_issue_is_there(rendered: list[Doc]) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    for expected in [("Namespace", "mmd"), ("ConfigMap", "mmd-config"), ("Secret", "mmd-secrets"),
                     ("Deployment", "mmd-gateway"), ("Service", "mmd-gateway"),
                     ("Ingress", "mmd-gateway"), ("HorizontalPodAutoscaler", "mmd-gateway"),
                     ("PodDisruptionBudget", "mmd-gateway"), ("Deployment", "mmd-worker"),
                     ("ScaledObject", "mmd-worker"), ("StatefulSet", "mmd-redis"),
                     ("Service", "mmd-redis"), ("CronJob", "mmd-cleanup")]:
        assert expected in kinds
    secret = _one(rendered, "Secret", "mmd-secrets")["stringData"]
    for key in ("MMD_API_KEYS", "MMD_S3_ACCESS_KEY_ID", "MMD_S3_SECRET_ACCESS_KEY",
                "MMD_WEBHOOK_SECRET"):
        assert key in secret
    hpa = _one(rendered, "HorizontalPodAutoscaler", "mmd-gateway")["spec"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] <= hpa["maxReplicas"]


def test_every_container_has_requests_limits_and_a_locked_down_context(
        rendered: list[Doc]) -> None:
    for name, spec in _pod_specs(rendered):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            where = f"{name}/{c['name']}"
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(
                res["limits"]), where
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            # A read-only root needs a writable /tmp (ready file, caches, temp uploads).
            if c["image"].split("/")[-1].startswith("mmd-"):
                assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, where


def test_worker_is_a_gpu_pod_that_waits_for_models_and_finishes_its_job(
        rendered: list[Doc]) -> None:
    worker = _one(rendered, "Deployment", "mmd-worker")["spec"]["template"]
    spec = worker["spec"]
    c = next(c for c in spec["containers"] if c["name"] == "worker")
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert spec["nodeSelector"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert 1 <= int(env["MMD_TORCH_THREADS"]) <= int(c["resources"]["limits"]["cpu"])
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 5 * 60  # minutes to load
    assert c["readinessProbe"]["exec"]["command"] == ["mmd-healthcheck", "worker"]
    config = _one(rendered, "ConfigMap", "mmd-config")["data"]
    assert spec["terminationGracePeriodSeconds"] >= int(config["MMD_JOB_TIMEOUT_S"])
    init = [i for i in spec["initContainers"] if i["args"][0] == "fetch-weights"]
    assert init, "the worker needs its weights: an init container running `mmd fetch-weights`"
    weights_mounts = {m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/weights"}
    assert weights_mounts == {m["name"] for m in init[0]["volumeMounts"]
                              if m["mountPath"] == "/weights"}
    for ckpt in ("checkpoint", "sr_checkpoint"):
        path = json.loads(config["MMD_MODELS"])["default"][ckpt]
        assert path.startswith("/weights/"), path
        assert any(a.endswith("/" + Path(path).name) for a in init[0]["args"]), path


def test_prometheus_annotations_point_at_a_declared_port(rendered: list[Doc]) -> None:
    for name in ("mmd-gateway", "mmd-worker"):
        tpl = _one(rendered, "Deployment", name)["spec"]["template"]
        ann = tpl["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true"
        ports = {p["containerPort"] for c in tpl["spec"]["containers"] for p in c["ports"]}
        assert int(ann["prometheus.io/port"]) in ports, name


def test_cleanup_cron_job_sweeps_once_per_run_with_the_gateway_setup(rendered: list[Doc]) -> None:
    cron = _one(rendered, "CronJob", "mmd-cleanup")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"  # a slow sweep never overlaps the next one
    job = cron["jobTemplate"]["spec"]
    spec = job["template"]["spec"]
    assert spec["restartPolicy"] in ("Never", "OnFailure")
    (c,) = spec["containers"]
    # the gateway image's command; one sweep: no --every loop
    assert [*c["command"], *c["args"]] == ["mmd-gateway", "cleanup"]
    gateway = next(g for g in _one(rendered, "Deployment", "mmd-gateway")["spec"]["template"]
                   ["spec"]["containers"] if g["name"] == "gateway")
    assert c["image"] == gateway["image"]  # the torch-free image has `mmd-gateway cleanup`
    assert c["envFrom"] == gateway["envFrom"]  # same storage, bucket, prefix and TTL
    assert job["activeDeadlineSeconds"] < 3600  # done before the hourly schedule fires again
    assert cron["schedule"].split()[1:] == ["*", "*", "*", "*"]  # hourly


def test_redis_persists_with_aof_on_a_pvc(rendered: list[Doc]) -> None:
    sts = _one(rendered, "StatefulSet", "mmd-redis")["spec"]
    args = sts["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    mount = sts["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert mount["name"] == sts["volumeClaimTemplates"][0]["metadata"]["name"]
    assert args[args.index("--dir") + 1] == mount["mountPath"]


def test_overlays_differ_where_intended() -> None:
    dev = render_python(REPO_ROOT / "k8s" / "overlays" / "dev")
    prod = render_python(REPO_ROOT / "k8s" / "overlays" / "prod")
    assert _one(dev, "ScaledObject", "mmd-worker")["spec"]["minReplicaCount"] == 0
    prod_so = _one(prod, "ScaledObject", "mmd-worker")["spec"]
    assert {t["type"] for t in prod_so["triggers"]} == {"redis", "prometheus"}
    assert "tls" in _one(prod, "Ingress", "mmd-gateway")["spec"]
    for docs, tag in ((dev, ":dev"), (prod, ":0.1.0")):
        images = {c["image"] for _, s in _pod_specs(docs)
                  for c in [*s.get("initContainers", []), *s["containers"]]}
        assert all(i.endswith(tag) for i in images if "mmd-" in i), images
    pdb = _one(dev, "PodDisruptionBudget", "mmd-gateway")["spec"]
    assert "minAvailable" not in pdb and pdb["maxUnavailable"] == 1


def test_manifest_files_are_plain_yaml() -> None:
    for path in sorted((REPO_ROOT / "k8s").rglob("*.yaml")):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(d, dict) for d in docs if d is not None), path


def test_ingress_passes_event_streams_unbuffered(rendered: list[Doc]) -> None:
    """SSE (GET /jobs/{id}/events) through ingress-nginx: no response buffering, keep-alive
    comments well inside the read timeout, and a pod's grace period longer than the gateway's
    own wait for open streams on SIGTERM."""
    defaults = Settings()
    ann = _one(rendered, "Ingress", "mmd-gateway")["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert float(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) \
        >= 4 * defaults.events_keepalive_s
    pod = _one(rendered, "Deployment", "mmd-gateway")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > defaults.gateway_shutdown_grace_s
