"""bench/service.py: the request bodies of its modes, its table, and one real run (redis-server,
`mmd gateway` and `mmd worker` processes per mode; tiny preset, 1 base step, SR off)."""

from __future__ import annotations

import re
import time

import pytest

from bench.service import Row, format_table, request_bodies, run_bench
from worker.sampling import preset_specs

FAST_BASE, FAST_SR = preset_specs("fast")


def test_plain_body_is_the_official_settings_and_optimised_the_fast_ones() -> None:
    bodies = request_bodies()
    assert bodies["plain"] == {
        "sampler": {"name": "dpm_solver", "steps": 20, "order": 3, "method": "singlestep",
                    "eta": 0.0},
        "super_resolution": {"sampler": "ddim", "steps": 25, "enabled": True}}
    fast = bodies["optimised"]
    assert (fast["sampler"]["name"], fast["sampler"]["steps"], fast["sampler"]["order"],
            fast["sampler"]["method"]) == (FAST_BASE.name, FAST_BASE.steps, FAST_BASE.order,
                                           FAST_BASE.method)
    assert (fast["super_resolution"]["sampler"], fast["super_resolution"]["steps"]) == (
        FAST_SR.name, FAST_SR.steps)


def test_step_overrides_apply_to_both_modes_and_clamp_the_order() -> None:
    bodies = request_bodies(base_steps=2, sr_steps=3, sr=False)
    for body in bodies.values():
        assert body["sampler"]["steps"] == 2 and body["sampler"]["order"] == 2
        assert body["super_resolution"]["steps"] == 3
        assert body["super_resolution"]["enabled"] is False


def test_table_ratio_is_against_the_plain_row_of_the_same_n() -> None:
    rows = [Row(4, "plain", 4, 4, 60.0, (10.0, 20.0, 30.0, 40.0), (1, 1, 1, 1)),
            Row(4, "optimised", 4, 4, 20.0, (5.0,) * 4, (1,) * 4),
            Row(8, "optimised", 8, 7, 30.0, (5.0,) * 7, (2,) * 7, ("job x failed: boom",))]
    lines = format_table(rows).splitlines()
    assert re.split(r"\s+", lines[2].strip()) == [
        "4", "plain", "4", "4", "60.00", "4.00", "20.00", "40.00", "1.0", "1.00x"]
    assert lines[3].split()[-1] == "3.00x"  # 12 jobs/min over 4
    assert lines[4].split()[-1] == "-" and lines[4].split()[5] == "14.00"  # no plain row at 8
    assert "boom" in lines[5]


def test_unknown_mode_and_batched_with_url_are_refused() -> None:
    with pytest.raises(ValueError, match="subset of"):
        run_bench([1], modes=("fast",))
    with pytest.raises(ValueError, match="self-started"):
        run_bench([1], modes=("batched",), url="http://127.0.0.1:1")


@pytest.mark.e2e
def test_one_real_run_gives_one_row_per_n_and_mode() -> None:
    t0 = time.monotonic()
    rows = run_bench([2], modes=("plain", "optimised"), base_steps=1, sr=False, threads=1,
                     warmup=False, timeout_s=120)
    assert [(r.concurrency, r.mode) for r in rows] == [(2, "plain"), (2, "optimised")]
    for r in rows:
        assert r.errors == () and r.jobs == r.succeeded == 2, r
        assert r.jobs_per_min > 0 and len(r.latencies_s) == 2 and r.batch_sizes == (1, 1)
        assert 0 < max(r.latencies_s) <= r.wall_s < time.monotonic() - t0
    body = format_table(rows).splitlines()[2:]
    assert [line.split()[:4] for line in body] == [["2", "plain", "2", "2"],
                                                   ["2", "optimised", "2", "2"]]
    assert all(float(line.split()[5]) > 0 for line in body)
