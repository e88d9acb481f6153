#!/usr/bin/env python3
"""Container health check shared by the Docker HEALTHCHECKs and the Kubernetes exec probes.

``healthcheck.py gateway``: GET ``http://127.0.0.1:$MMD_PORT/healthz`` answers 200.
``healthcheck.py worker``: the worker's readiness file (``MMD_WORKER_READY_FILE``) exists and was
touched within one heartbeat TTL (``MMD_WORKER_HEARTBEAT_TTL_S``): the worker touches it every
TTL/3 once all models are loaded and warmed up, and removes it on SIGTERM.
Exit 0 = healthy/ready, 1 = not. Standard library only (runs in both images, no imports of the
project, so a broken install still reports clearly).
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path


def gateway() -> int:
    port = int(os.environ.get("MMD_PORT", "8000"))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"gateway /healthz on port {port} failed: {exc}", file=sys.stderr)
        return 1


def worker() -> int:
    path = Path(os.environ.get("MMD_WORKER_READY_FILE", "/tmp/mmd-worker-ready"))
    ttl = float(os.environ.get("MMD_WORKER_HEARTBEAT_TTL_S", "30"))
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"worker not ready: {path} is absent (models still loading, or stopping)",
              file=sys.stderr)
        return 1
    if age > ttl:
        print(f"worker not ready: {path} is {age:.0f} s old (> MMD_WORKER_HEARTBEAT_TTL_S={ttl:g})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    checks = {"gateway": gateway, "worker": worker}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        print(f"usage: healthcheck.py {{{'|'.join(checks)}}}", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(checks[sys.argv[1]]())
