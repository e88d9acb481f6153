"""A small kustomize renderer for the tests, used when `kubectl kustomize` is not installed.

It implements exactly the subset k8s/ uses: ``resources`` (files, or folders with a
kustomization.yaml), ``namespace``, ``labels`` (metadata labels only, ``includeSelectors: false``),
``images`` (name -> newName:newTag) and ``patches`` with strategic-merge patch files whose target is
their own apiVersion/kind/name (maps merge recursively, ``null`` deletes a key, lists are
replaced whole, which is kustomize's behaviour for the lists our patches touch).
test_k8s.py checks that it renders the same objects as `kubectl kustomize` where kubectl exists.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition", "PriorityClass"}
Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    with open(path) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in out:
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def pod_spec(doc: Doc) -> Doc | None:
    """The pod spec of a workload (Deployment, StatefulSet, CronJob), else None."""
    spec = doc.get("spec", {})
    if doc.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec")


def _containers(doc: Doc) -> list[Doc]:
    spec = pod_spec(doc) or {}
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def render_python(folder: Path) -> list[Doc]:
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for res in kust.get("resources", []):
        path = (folder / res).resolve()
        docs.extend(render_python(path) if path.is_dir() else load_docs(path))
    by_key = {_key(d): i for i, d in enumerate(docs)}
    for patch in kust.get("patches", []):
        for p in load_docs(folder / patch["path"]):
            if _key(p) not in by_key:
                raise ValueError(f"patch {patch['path']} targets {_key(p)}, which is not rendered")
            i = by_key[_key(p)]
            docs[i] = _merge(docs[i], p)
    for entry in kust.get("labels", []):
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise NotImplementedError("only metadata labels are supported by this renderer")
        for d in docs:
            d["metadata"].setdefault("labels", {}).update(entry["pairs"])
    for img in kust.get("images", []):
        for d in docs:
            for c in _containers(d):
                if c["image"].split(":")[0] == img["name"]:
                    c["image"] = f"{img.get('newName', img['name'])}:{img['newTag']}"
    if "namespace" in kust:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = kust["namespace"]
    return docs


def render_kubectl(folder: Path) -> list[Doc] | None:
    """`kubectl kustomize folder`, or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render(folder: Path) -> list[Doc]:
    """The rendered manifests of a kustomization folder (kubectl when present, else ours)."""
    rendered = render_kubectl(folder)
    return rendered if rendered is not None else render_python(folder)
