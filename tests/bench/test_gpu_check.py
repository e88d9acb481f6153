"""bench/gpu_check.py: the ``--dry-run`` (CPU, tiny presets, every section) as CI runs it, and
the run's guards (a failing section is recorded and the next one runs; a section that would
overrun the budget is skipped) and the peak table."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.gpu_check import SECTIONS, profile, run, table
from bench.gpu_sections import Context, Row, peak_tflops

REPO = Path(__file__).resolve().parents[2]


def _numbers(row: Row) -> list[float]:
    return [v for v in row.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def test_dry_run_measures_every_section(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--json", str(out)],
                          check=False, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.perf_counter() - started < 180  # the limit for the dry run
    report: dict[str, Any] = json.loads(out.read_text())
    sections = report["sections"]
    assert list(sections) == [name for name, _, _ in SECTIONS]
    for name, entry in sections.items():
        assert entry["status"] == "ok", (name, entry.get("error"))
        assert entry["rows"], name
        for row in entry["rows"]:
            if row.get("skipped") == "CUDA graphs need CUDA":
                continue
            assert "error" not in row and "skipped" not in row, (name, row)
            assert _numbers(row), (name, row)
        assert name in proc.stdout  # the printed table has every section

    parity = {r["item"]: r for r in sections["parity"]["rows"]}
    assert set(parity) == {f"{n} {p}" for n in ("base", "sr") for p in ("fp32", "fp16", "bf16")}
    for item, row in parity.items():
        assert row["nonfinite"] == 0, item
        # fp32: the same arithmetic, other kernels / layouts (measured <= 2e-6); fp16: the issue's
        # target 1e-2 (measured <= 3.2e-3); bf16 keeps 3 fewer mantissa bits than fp16, so 8x
        # that target (measured <= 2.6e-2)
        bound = {"fp32": 1e-5, "fp16": 1e-2, "bf16": 8e-2}[item.split()[1]]
        assert 0 <= row["max_rel_err"] <= bound, (item, row["max_rel_err"])

    jobs = {r["item"]: r for r in sections["jobs"]["rows"]}
    assert set(jobs) == {"joint fast", "joint official", "video-to-audio gradient"}
    for item, row in jobs.items():
        assert row["base_s"] > 0 and row["sr_s"] > 0 and row["mux_s"] > 0, item
        assert row["mp4_bytes"] > 0 and row["size"] == "64x64", item
        assert row["base_nonfinite"] == row["sr_nonfinite"] == row["audio_nonfinite"] == 0
        for stage in ("base", "sr", "mux"):  # RSS growth on the CPU: a number, >= 0
            assert row[f"peak_{stage}_mib"] >= 0, (item, stage)
    assert jobs["video-to-audio gradient"]["nfe_base_backward"] > 0  # gradient guidance ran
    assert jobs["joint fast"]["nfe_base_backward"] == 0

    throughput = sections["throughput"]["rows"]
    assert [r["jobs"] for r in throughput] == [1, 4, 8]
    assert all(r["jobs_per_min"] > 0 for r in throughput)

    forward = {r["item"]: r for r in sections["forward"]["rows"]}
    labels = ("eager", "channels-last", "sdpa math", "sdpa flash", "sdpa efficient", "sdpa cudnn")
    assert set(forward) == {f"{n} {label}" for n in ("base", "sr") for label in labels}
    assert all(r["median_s"] > 0 and r["nonfinite"] == 0 for r in forward.values())
    compiled = {r["item"]: r for r in sections["forward_compiled"]["rows"]}
    assert compiled["base compile"]["median_s"] > 0 and compiled["sr compile"]["per_frame_s"] > 0
    assert compiled["sr cuda-graphs"] == {"item": "sr cuda-graphs",
                                          "skipped": "CUDA graphs need CUDA"}

    mfu = sections["mfu"]["rows"]
    assert len(mfu) == 4  # the SR stage of the 3 jobs, the fastest SR forward
    assert all(r["tflops"] > 0 and r["mfu"] is None for r in mfu)  # no peak known for a CPU


def test_a_failing_section_is_recorded_and_the_next_one_runs() -> None:
    def boom(ctx: Context) -> list[Row]:
        raise RuntimeError("CUDA out of memory (planted)")

    def fine(ctx: Context) -> list[Row]:
        return [{"item": "x", "seconds_left": ctx.time_left()}]

    written: list[str] = []
    report = run(profile(True, None), 60.0, lambda r: written.append(json.dumps(r)),
                 sections=(("first", boom, 0.5), ("second", fine, 0.5)))
    first, second = report["sections"]["first"], report["sections"]["second"]
    assert first["status"] == "error" and "planted" in first["error"] and first["rows"] == []
    assert second["status"] == "ok" and 0 < second["rows"][0]["seconds_left"] <= 60
    assert len(written) == 2  # the JSON is rewritten after every section
    assert "ERROR: RuntimeError: CUDA out of memory (planted)" in table(report)


def test_a_section_that_would_overrun_is_skipped() -> None:
    def slow(ctx: Context) -> list[Row]:
        time.sleep(0.39)  # leaves at most 0.01 s of the 0.4 s budget
        return [{"item": "slow", "n": 1}]

    def never(ctx: Context) -> list[Row]:
        pytest.fail("a section with under a quarter of its share left must not start")

    report = run(profile(True, None), 0.4, lambda r: None,
                 sections=(("slow", slow, 0.5), ("late", never, 0.5)))
    assert report["sections"]["slow"]["status"] == "ok"
    late = report["sections"]["late"]
    assert late["status"] == "skipped" and "would overrun" in late["error"]


@pytest.mark.parametrize(("name", "precision", "peak"), [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.0),  # SXM
    ("NVIDIA H100 PCIe", "fp16", 756.0),
    ("NVIDIA H200", "fp16", 989.0),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
    ("NVIDIA H100 80GB HBM3", "fp32", 494.0),  # TF32
    ("Some Future GPU", "fp16", None),
])
def test_peak_table(name: str, precision: str, peak: float | None) -> None:
    assert peak_tflops(name, precision) == peak
