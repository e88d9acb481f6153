"""The gateway image never installs torch: importing and building the gateway must not load it."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.servers import REPO_ROOT


def test_gateway_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from core.settings import Settings\n"
        "from service.app import create_app\n"
        "import service.gateway_cli, cli.serve, cli.main\n"
        "from redis import Redis\n"
        "create_app(Settings(redis_url='redis://127.0.0.1:1/0'))\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m == 'torch' or m.startswith(('torch.', 'model')))\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
