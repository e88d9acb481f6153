"""End to end: a real worker with MMD_MAX_BATCH=4 takes 4 compatible jobs submitted at once as
ONE batch (``result.batch_size``), and each job's MP4 matches the one it gets alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from tests.helpers.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

FAST = {"sampler": {"name": "dpm_solver", "steps": 2, "order": 2},
        "super_resolution": {"enabled": True, "sampler": "ddim", "steps": 2}}


@pytest.fixture(scope="module")
def batching_stack(e2e_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(e2e_redis, tmp_path_factory.mktemp("batching"), MMD_MAX_BATCH="4",
                    MMD_BATCH_WAIT_MS="4000")
    yield s
    stop_stack(s)


def _decode(data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    path.write_bytes(data)
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames.astype(np.float64), audio.astype(np.float64)


def test_four_jobs_run_as_one_batch_and_match_their_solo_runs(batching_stack: Stack,
                                                              tmp_path: Path) -> None:
    stack = batching_stack
    with stack.client() as c:
        ids = []
        for seed in (21, 22, 23, 24):  # submitted at once: the worker waits up to 4 s for more
            r = c.post("/generate", json={"seed": seed, **FAST})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        views = [stack.wait(i) for i in ids]
        for view in views:
            assert view["status"] == "succeeded", (view, stack.log_tail())
            assert view["result"]["batch_size"] == 4, stack.log_tail()
        # the same seed again, alone (nothing else queued)
        r = c.post("/generate", json={"seed": 21, **FAST})
        solo = stack.wait(r.json()["id"])
        assert solo["status"] == "succeeded" and solo["result"]["batch_size"] == 1
        batched = [_decode(c.get(v["result"]["url"]).content, tmp_path / f"b{i}.mp4")
                   for i, v in enumerate(views)]
        alone = _decode(c.get(solo["result"]["url"]).content, tmp_path / "solo.mp4")
    # batched == alone up to float rounding (<= 1 level in a few pixels before encoding), so
    # the decoded MP4s agree far more closely than two different seeds do
    frames_diff = np.abs(batched[0][0] - alone[0]).mean()
    audio_diff = np.abs(batched[0][1] - alone[1]).max()
    other_seed = np.abs(batched[1][0] - alone[0]).mean()
    assert frames_diff < 0.5 and audio_diff < 1e-2, (frames_diff, audio_diff)
    assert other_seed > 20 * max(frames_diff, 0.05)
