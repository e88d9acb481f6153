"""bench/windows.py on the smooth stand-in (3 windows, 3 steps) and its per-window cost line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "bench/windows.py", "--threads", "1", *args],
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def test_windows_bench_prints_every_method_with_agreement_seam_and_cost() -> None:
    lines = _run("--preset", "smooth", "--steps", "3", "--order", "1", "--windows", "3",
                 "--contexts", "0.5", "1.0")
    rows = [line.split() for line in lines if line.startswith(("video-to-audio", "audio-to-"))]
    labels = [" ".join(r[1:3]) if r[1] == "autoregressive" else r[1] for r in rows]
    assert labels == ["independent", "autoregressive 0.5", "autoregressive 1", "fused"] * 2
    for r in rows:
        fwd, bwd = float(r[-2]), float(r[-1])
        assert (fwd, bwd) == (3.0, 3.0)  # NFE per window = the sampler's steps (+ guidance)
        assert float(r[-7]) > 0 and float(r[-5]) > 0  # seam ratio, inside jump
    for direction in ("video-to-audio", "audio-to-video"):
        agree = {(" ".join(r[1:3]) if r[1] == "autoregressive" else r[1]): r[-8]
                 for r in rows if r[0] == direction}
        assert agree["autoregressive 1"] == "given"  # nothing left ungiven to compare
        # the fused windows share one state: they agree better than independent windows
        assert float(agree["fused"]) < float(agree["independent"])


def test_windows_bench_cost_counts_tflop_per_window_and_windows_per_clip() -> None:
    (line,) = [x for x in _run("--cost", "tiny", "--steps", "4", "--cost-seconds", "3.8")
               if x.startswith("tiny:")]
    m = re.search(r"one evaluation ([\d.e-]+) TFLOP forward, ([\d.e-]+) with the guidance "
                  r"backward; dpm_solver 4 steps with gradient guidance = ([\d.e-]+) TFLOP per "
                  r"window; 3.8 s at 10 fps = (\d+) windows", line)
    assert m, line
    fwd, both, per_window, windows = (float(m[1]), float(m[2]), float(m[3]), int(m[4]))
    assert 0 < fwd < both < 3 * fwd  # the input backward costs about one more forward
    assert abs(per_window - 4 * both) <= 1e-3 * per_window
    assert windows == 6  # 38 frames, 8-frame windows overlapping by 2
