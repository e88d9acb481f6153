"""bench/imagebind_cost.py runs end to end at toy width and prints positive FLOP counts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_tiny_run_prints_the_cost() -> None:
    from model.aligners.imagebind_pkg import PACKAGE, imagebind_modules

    try:
        imagebind_modules()
    except ImportError as exc:
        pytest.skip(f"{PACKAGE} is not installed ({exc}); see docs/imagebind.md")
    proc = subprocess.run([sys.executable, "bench/imagebind_cost.py", "--tiny", "--repeats", "1"],
                          check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.search(r"video ([\d.]+), audio ([\d.]+), total ([\d.]+)", proc.stdout)
    assert found, proc.stdout
    video, audio, total = (float(g) for g in found.groups())
    assert video > 0 and audio > 0 and total == pytest.approx(video + audio, abs=0.011)
    assert "time per evaluation: median" in proc.stdout
