"""Prompts through the real service (issue 17): real redis-server, `mmd gateway` and `mmd worker`
processes with NO model configuration (the shipped demo model and its shipped demo aligner).
``prompt: "red"`` on POST /generate, a prompted video-to-audio upload, and ``mmd submit
--prompt``: each job's record holds the prompt, the result the prompt as the aligner used it,
the scale it ran with and backward passes in its NFE, and the MP4 decodes back (PyAV). A word
the demo aligner does not know is a 422 before anything is queued.

Whether the prompt steers the clip (the share of red events) is measured by ``bench/quality.py``
(issue 17, item 4), not here."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from tests.conftest import REPO_ROOT
from tests.helpers.stack import Stack, start_stack, stop_stack
from worker.demo_clip import demo_clip

pytestmark = pytest.mark.e2e

FEW = {"sampler": {"name": "ddim", "steps": 3}, "super_resolution": {"steps": 2}}


@pytest.fixture(scope="module")
def demo_stack(e2e_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(e2e_redis, tmp_path_factory.mktemp("prompts"), models=None)
    yield s
    stop_stack(s)


def _decode(path: Path) -> tuple[int, tuple[int, ...], int]:
    """Frames, the first frame's shape and audio samples of an MP4."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    return len(frames), frames[0].shape, samples


def _check_prompted(view: dict[str, Any], sent: str, used: str) -> dict[str, Any]:
    assert view["status"] == "succeeded", view
    assert view["request"]["prompt"] == sent and view["request"]["prompt_scale"] is None
    result = view["result"]
    assert result["model"] == "demo" and not result["random_weights"]
    assert result["prompt"] == used
    assert isinstance(result["prompt_scale"], float) and result["prompt_scale"] > 0  # default
    assert result["nfe"]["base"] > 0 and result["nfe"]["base_backward"] > 0, result["nfe"]
    return dict(result)


def test_a_prompted_joint_job_records_the_prompt_and_its_backward_passes(
        demo_stack: Stack, tmp_path: Path) -> None:
    with demo_stack.client() as c:
        r = c.post("/generate", json={"seed": 4, "prompt": " Red", **FEW})
        assert r.status_code == 202, r.text
        plain = c.post("/generate", json={"seed": 4, **FEW})
        assert plain.status_code == 202, plain.text
        view = demo_stack.wait(r.json()["id"], timeout=600)
        result = _check_prompted(view, "Red", "red")
        mp4 = tmp_path / "red.mp4"
        mp4.write_bytes(c.get(result["url"]).content)
        unguided = demo_stack.wait(plain.json()["id"], timeout=600)
    frames, shape, samples = _decode(mp4)
    assert frames == 8 and shape == (result["height"], result["width"], 3) and samples > 0
    assert unguided["status"] == "succeeded", unguided
    assert unguided["result"]["prompt"] is None and unguided["result"]["prompt_scale"] is None
    assert unguided["result"]["nfe"]["base_backward"] == 0  # joint, unguided: forward only
    assert unguided["result"]["nfe"]["base"] == result["nfe"]["base"]  # same sampler


def test_a_prompted_video_to_audio_job(demo_stack: Stack, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    demo_clip(str(clip), 7)
    with demo_stack.client() as c, open(clip, "rb") as fh:
        r = c.post("/video-to-audio", files={"file": ("clip.mp4", fh)},
                   data={"prompt": "blue", "seed": "1", "sampler.steps": "3",
                         "super_resolution.enabled": "false"})
    assert r.status_code == 202, r.text
    _check_prompted(demo_stack.wait(r.json()["id"], timeout=600), "blue", "blue")


def test_a_prompted_whole_clip(demo_stack: Stack, tmp_path: Path) -> None:
    """``duration_s`` with a prompt: every window is guided (fused fast sampler), the result
    records the prompt, and the soundtrack covers the span."""
    clip = tmp_path / "clip.mp4"
    demo_clip(str(clip), 8, seconds=2.5)
    with demo_stack.client() as c, open(clip, "rb") as fh:
        r = c.post("/video-to-audio", files={"file": ("clip.mp4", fh)},
                   data={"prompt": "green", "seed": "1", "sampler.steps": "3",
                         "duration_s": "2", "super_resolution.enabled": "false"})
    assert r.status_code == 202, r.text
    result = _check_prompted(demo_stack.wait(r.json()["id"], timeout=600), "green", "green")
    assert result["windows"] >= 2 and abs(result["duration_s"] - 2.0) < 0.2, result


def test_an_unknown_word_is_refused_at_submit(demo_stack: Stack) -> None:
    with demo_stack.client() as c:
        r = c.post("/generate", json={"prompt": "purple"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("unknown_prompt", "prompt")
    assert "red, green, blue" in error["message"]


def test_mmd_submit_prompt(demo_stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "green.mp4"
    r = subprocess.run(
        [sys.executable, "-m", "cli", "submit", "joint", "--server", demo_stack.base,
         "--prompt", "green", "--prompt-scale", "5", "--seed", "2", "--sampler", "ddim",
         "--steps", "3", "--sr-steps", "2", "--out", str(out)],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    job = re.search(r"^job (\S+)$", r.stderr, re.MULTILINE)
    assert job is not None, r.stderr
    view = demo_stack.wait(job.group(1))
    assert view["result"]["prompt"] == "green" and view["result"]["prompt_scale"] == 5.0
    assert view["result"]["nfe"]["base_backward"] > 0
    frames, _, samples = _decode(out)
    assert frames == 8 and samples > 0
