"""With PROMETHEUS_MULTIPROC_DIR (several gateway processes), /metrics aggregates the files of
all processes: two separate processes submit, one scrape shows both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.settings import Settings
from tests.helpers.servers import REPO_ROOT

SCRIPT = """
import sys
from fastapi.testclient import TestClient
from service.app import create_app
from core.settings import Settings
s = Settings(redis_url=sys.argv[1], key_prefix=sys.argv[2], queue_name=sys.argv[2],
             data_dir=sys.argv[3], max_sr_steps=30, max_steps=50, open_mode=True)
c = TestClient(create_app(s))
assert c.post("/generate", json={"sampler": {"steps": 2}}).status_code == 202
if sys.argv[4] == "scrape":
    print(c.get("/metrics").text)
"""


def test_metrics_aggregate_across_processes(settings: Settings, tmp_path: Path) -> None:
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "PYTHONPATH": str(REPO_ROOT)}
    outputs = []
    for mode in ("quiet", "scrape"):
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(settings.redis_url),
                            settings.key_prefix, str(tmp_path / "data"), mode], env=env,
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outputs.append(r.stdout)
    text = outputs[1]
    assert 'mmd_jobs_submitted_total{mode="joint"} 2.0' in text  # both processes counted
    assert "mmd_queue_depth 2.0" in text
