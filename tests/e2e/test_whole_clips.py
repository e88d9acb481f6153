"""Whole clips end to end (issue 12): ``duration_s`` through a real redis-server, a real
`mmd worker` process with the random ``tiny`` preset (window 8 frames = 0.8 s, no SR) and a real
`mmd gateway`; the MP4s are decoded back with PyAV.

- a 10 s clip in both directions: 17 windows, the result lasts 10 s in both streams;
- a 12 s 320x240 30 fps H.264 upload to /video-to-audio comes back at 320x240, 30 fps, 12 s
  (within one frame) with a 12 s soundtrack (within one frame), the user's own picture;
- a portrait phone clip at 30000/1001 fps, a span from 0.5 s: re-encoded, shown upright (its
  display matrix kept), ``result.fps`` the exact rate.

17-20 windows x 2 DDIM steps of the tiny U-Net (replacement guidance) per job: ~22 s for the
three on 2 shared CPU cores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.helpers.media import write_clip
from tests.helpers.stack import Stack, start_stack, stop_stack
from worker import media
from worker.orientation import frame_orientation

pytestmark = pytest.mark.e2e

PARAMS = {"model": "tiny", "seed": 4, "guidance": "replacement",
          "sampler": {"name": "ddim", "steps": 2}, "super_resolution": {"enabled": False}}


@pytest.fixture(scope="module")
def clips_stack(e2e_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(e2e_redis, tmp_path_factory.mktemp("clips"),
                    MMD_MODELS=json.dumps({"tiny": {"preset": "tiny", "sr": False}}),
                    MMD_DEFAULT_MODEL="tiny", MMD_WARMUP="false",
                    MMD_MAX_UPLOAD_BYTES="20000000")
    yield s
    stop_stack(s)


def _submit(stack: Stack, endpoint: str, path: Path, params: dict[str, Any],
            tmp: Path) -> tuple[dict[str, Any], Path]:
    with stack.client() as c, open(path, "rb") as fh:
        r = c.post(f"/{endpoint}", files={"file": (path.name, fh, "application/octet-stream")},
                   data={"params": json.dumps(params)})
        assert r.status_code == 202, r.text
        view = stack.wait(r.json()["id"], timeout=600)
        assert view["status"] == "succeeded", (view, stack.log_tail())
        mp4 = c.get(view["result"]["url"])
    assert mp4.status_code == 200
    out = tmp / "result.mp4"
    out.write_bytes(mp4.content)
    return view, out


def _streams(path: Path) -> dict[str, Any]:
    """Frames, fps, size and the soundtrack's duration as the MP4 states it (what a player
    plays: the edit list hides the AAC priming and the last frame's padding); decoded, the
    samples run at most one 1024-sample AAC frame longer."""
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        rate = v.average_rate
        stated = float(a.duration * a.time_base)
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
        sample_rate = c.streams.audio[0].rate
    assert stated <= samples / sample_rate <= stated + 1024 / sample_rate
    return {"frames": frames, "fps": float(rate), "width": frames[0].shape[1],
            "height": frames[0].shape[0], "audio_s": stated, "sample_rate": sample_rate}


def test_video_to_audio_over_10_s(clips_stack: Stack, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "ten.mp4", seconds=10.0, size=48)
    view, out = _submit(clips_stack, "video-to-audio", clip, {**PARAMS, "duration_s": 10},
                        tmp_path)
    res = view["result"]
    # 1 + ceil(92 / 6) windows; DDIM 2 steps with the fast conditional preset's resample 2:
    # 2 * (2 - 1) + 1 = 3 evaluations per window
    assert res["windows"] == 17 and res["nfe"]["base"] == 17 * 3, res
    assert (res["width"], res["height"], res["fps"], res["duration_s"]) == (48, 48, 10, 10.0)
    assert res["video"] == "copied"  # the whole stream: its packets as they were
    got = _streams(out)
    assert len(got["frames"]) == 100 and (got["width"], got["height"]) == (48, 48)
    assert abs(got["audio_s"] - 10.0) <= 0.1, got["audio_s"]  # one model frame
    # the user's own picture (48x48, not the model's 16x16), frame for frame
    original = media.decode_video_clip(clip, num_frames=100, fps=10, size=48)
    assert np.abs(np.stack(got["frames"]).astype(int) - original.astype(int)).mean() < 12


def test_audio_to_video_over_10_s(clips_stack: Stack, tmp_path: Path) -> None:
    wav = write_clip(tmp_path / "ten.wav", video=False, seconds=10.5)
    view, out = _submit(clips_stack, "audio-to-video", wav,
                        {**PARAMS, "duration_s": 10, "start_s": 0.5}, tmp_path)
    res = view["result"]
    assert res["windows"] == 17 and res["duration_s"] == 10.0 and res["video"] == "generated"
    got = _streams(out)
    assert len(got["frames"]) == 100 and (got["width"], got["height"]) == (16, 16)  # no SR
    assert abs(got["audio_s"] - 10.0) <= 0.1, got["audio_s"]
    original = media.decode_audio(wav, start_s=0.5, num_samples=160_000)
    back = media.decode_audio(out, num_samples=160_000)
    corr = float(np.corrcoef(original[512:-2048], back[512:-2048])[0, 1])
    assert corr > 0.9, corr  # the upload's own audio over the span


def _h264_320x240(path: Path, seconds: float) -> Path:
    """``seconds`` of 320x240 H.264 at 30 fps (a moving bar, each frame distinct) + AAC."""
    n = round(seconds * 30)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv420p"
        ast = out.add_stream("aac", rate=44100, layout="stereo")
        for i in range(n):
            img = np.full((240, 320, 3), 40, np.uint8)
            img[:, (i * 7) % 312:(i * 7) % 312 + 8] = 230
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        t = np.arange(round(seconds * 44100)) / 44100
        tone = (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
        for s in range(0, len(tone), 1024):
            chunk = np.stack([tone[s:s + 1024]] * 2)
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate, af.pts = 44100, s
            out.mux(ast.encode(af))
        out.mux(ast.encode(None))
    return path


def test_12_s_320x240_30fps_comes_back_as_it_was(clips_stack: Stack, tmp_path: Path) -> None:
    clip = _h264_320x240(tmp_path / "hd.mp4", 12.0)
    view, out = _submit(clips_stack, "video-to-audio", clip, {**PARAMS, "duration_s": 12},
                        tmp_path)
    res = view["result"]
    assert (res["width"], res["height"], res["fps"], res["video"]) == (320, 240, 30, "copied")
    # 120 model frames: 1 + ceil(112 / 6) windows
    assert res["duration_s"] == pytest.approx(12.0, abs=1 / 30) and res["windows"] == 20
    got = _streams(out)
    assert (got["width"], got["height"]) == (320, 240) and got["fps"] == pytest.approx(30.0)
    assert abs(len(got["frames"]) - 360) <= 1, len(got["frames"])
    frame_s = 1 / 30
    video_s = len(got["frames"]) / got["fps"]
    assert abs(video_s - 12.0) <= frame_s
    # the soundtrack: 12 s within one video frame, as the MP4 states it
    assert abs(got["audio_s"] - 12.0) <= frame_s, got["audio_s"]
    # the picture is the upload's: the bar of frame 100 sits where the source drew it
    col = int(np.argmax(got["frames"][100][120, :, 0]))
    assert abs(col - ((100 * 7) % 312 + 4)) <= 4, col


def test_portrait_2997_span_is_reencoded_upright(clips_stack: Stack, tmp_path: Path) -> None:
    """Stored 64x48 with a display matrix turning it 90 degrees clockwise (a phone held
    upright), 30000/1001 fps; 2 s from 0.5 s: 60 frames re-encoded, reported as 48x64 at
    29.97002997 fps, and the red top-left block of the stored picture shows top-right."""
    rate = Fraction(30000, 1001)
    img = np.full((48, 64, 3), 90, np.uint8)
    img[:16, :20] = (230, 30, 30)
    clip = tmp_path / "phone.mp4"
    with av.open(str(clip), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.set_display_rotation(270)  # counterclockwise = 90 clockwise
        for i in range(90):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    view, out_path = _submit(clips_stack, "video-to-audio", clip,
                             {**PARAMS, "duration_s": 2, "start_s": 0.5}, tmp_path)
    res = view["result"]
    assert (res["video"], res["width"], res["height"]) == ("reencoded", 48, 64), res
    assert res["fps"] == float(rate) and res["duration_s"] == round(float(60 / rate), 6), res
    with av.open(str(out_path)) as c:
        frames = list(c.decode(video=0))
    shown = frame_orientation(frames[0]).apply(frames[0].to_ndarray(format="rgb24"))
    assert len(frames) == 60 and shown.shape == (64, 48, 3)
    assert shown[5, -5, 0] > 180 and shown[5, 5, 0] < 130  # red top-right, grey top-left
