"""bench/pipeline.py end to end on the tiny preset (1 base step, 2 SR steps): one table with the
five stages
(decode, base, sr, mux, upload) for the optimised and the plain path, peak memory per stage and
the optimised/plain ratio measured in the same run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.media import write_clip

REPO = Path(__file__).resolve().parents[2]


def test_pipeline_bench_prints_every_stage_memory_and_the_ratio(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "in.mp4", seconds=3.0, size=64)
    out = subprocess.run(
        [sys.executable, "bench/pipeline.py", "--steps", "1", "--sr-steps", "2", "--no-warmup",
         "--plain-ratio", "--threads", "1", "--device", "cpu", "--input", str(clip)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("device"))
    assert lines[header].split()[3:9] == ["decode", "base", "sr", "mux", "upload", "total"]
    rows = {line.split()[0]: line.split() for line in lines[header + 2:header + 4]}
    assert set(rows) == {"cpu", "cpu/plain"}
    for cells in rows.values():
        seconds = [float(x) for x in cells[3:9]]
        assert all(s >= 0 for s in seconds) and seconds[1] > 0 and seconds[2] > 0
        # total = the five stages, up to the rounding of six figures printed to 1 ms each
        assert abs(sum(seconds[:5]) - seconds[5]) <= 6 * 0.0005 + 1e-9
    memory = [line for line in lines if line.startswith(("cpu ", "cpu/plain "))
              and "upload" in line and "decode" in line]
    assert len(memory) == 2  # RSS growth per stage, a number (Linux) or n/a
    assert any("optimised/plain total = " in line for line in lines)
