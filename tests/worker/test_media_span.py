"""worker/media_span.py: the whole video stream is stream-copied (packets byte for byte), a span
from a later start is re-encoded at the source's own geometry and frame rate; both come back
with a soundtrack as long as the picture (within one frame), keep the source's display matrix
(a phone's portrait clip shows upright, checked against the ffmpeg CLI's own autorotation), and
a 30000/1001 source reports its exact rate through ``mux_whole_clip``."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from core.contract import InputMedia
from worker.media_span import SpanVideo, reencode_span
from worker.orientation import frame_display_matrix, frame_orientation
from worker.whole_clip import SpanInput, WholeClipOutput, mux_whole_clip


def _source(path: Path, seconds: float = 3.0) -> Path:
    """30 fps 160x120 H.264 (B-frames on: libx264's default), a bar moving 5 px a frame."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = 160, 120, "yuv420p"
        for i in range(round(seconds * 30)):
            img = np.full((120, 160, 3), 30, np.uint8)
            img[:, (i * 5) % 150:(i * 5) % 150 + 10] = 220
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def _packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def _read(path: Path) -> tuple[list[np.ndarray], float, float]:
    """Frames, fps and the soundtrack's duration as the MP4 states it (what a player plays:
    the edit list hides the AAC priming and the last frame's padding; decoded, the samples
    run up to one 1024-sample AAC frame longer, checked here too)."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        fps = float(c.streams.video[0].average_rate)
        a = c.streams.audio[0]
        stated = float(a.duration * a.time_base)
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert stated <= samples / 16000 <= stated + 1024 / 16000
    return frames, fps, stated


def _call(src: Path, out: Path, start_s: float, duration_s: float) -> object:
    audio = (0.2 * np.sin(np.arange(round(duration_s * 16000)) / 7)).astype(np.float32)
    return reencode_span(src, out, start_s=start_s, duration_s=duration_s, audio=audio,
                         sample_rate=16000, max_frames=10_000, timeout_s=60, max_bytes=10**8)


def test_the_whole_stream_is_copied(tmp_path: Path) -> None:
    src = _source(tmp_path / "src.mp4")
    span = _call(src, tmp_path / "out.mp4", 0.0, 3.0)
    assert span.copied and span.frames == 90 and (span.width, span.height) == (160, 120)
    assert _packets(tmp_path / "out.mp4") == _packets(src)  # not re-encoded
    frames, fps, audio_s = _read(tmp_path / "out.mp4")
    assert len(frames) == 90 and fps == 30.0 and abs(audio_s - 3.0) <= 1 / 30


def test_a_later_span_is_reencoded_at_the_sources_geometry(tmp_path: Path) -> None:
    src = _source(tmp_path / "src.mp4")
    span = _call(src, tmp_path / "out.mp4", 1.0, 1.5)
    assert not span.copied and span.frames == 45
    frames, fps, audio_s = _read(tmp_path / "out.mp4")
    assert len(frames) == 45 and fps == 30.0 and frames[0].shape == (120, 160, 3)
    assert abs(audio_s - 1.5) <= 1 / 30
    # the first frame is source frame 30: its bar starts at x = 150 % 150 = 0
    col = int(np.argmax(frames[0][60, :, 0]))
    assert col <= 10, col
    part = _call(src, tmp_path / "part.mp4", 0.0, 2.0)  # from 0 but not the whole stream
    assert not part.copied and len(_read(tmp_path / "part.mp4")[0]) == 60


# --------------------------------------------------------------------------------------------
# orientation (display matrix) and the exact frame rate

NTSC = Fraction(30000, 1001)
FFMPEG = shutil.which("ffmpeg")


def _pattern(w: int = 64, h: int = 48) -> np.ndarray:
    """``uint8 [h, w, 3]`` grey with a red top-left, green top-right and blue bottom-left
    block: every rotation or mirror of it looks different."""
    img = np.full((h, w, 3), 90, np.uint8)
    img[:16, :20] = (230, 30, 30)
    img[:16, -20:] = (30, 230, 30)
    img[-16:, :20] = (30, 30, 230)
    return img


def _phone(path: Path, rotation: int, hflip: bool = False, *, frames: int = 15,
           img: np.ndarray | None = None) -> Path:
    """``frames`` of ``img`` (default :func:`_pattern`, stored landscape) at 30000/1001 fps,
    H.264 MP4 with a display matrix written by PyAV's ``set_display_rotation``."""
    img = _pattern() if img is None else img
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=NTSC, options={"crf": "8"})
        odd = img.shape[0] % 2 or img.shape[1] % 2  # 4:2:0 needs even sides
        s.width, s.height = img.shape[1], img.shape[0]
        s.pix_fmt = "yuv444p" if odd else "yuv420p"
        s.set_display_rotation(rotation, hflip=hflip)
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def _shown(path: Path) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The first frame of ``path`` as displayed (its display matrix applied), the raw matrix,
    and the number of frames."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    first = frames[0]
    rgb = frame_orientation(first).apply(first.to_ndarray(format="rgb24"))
    return np.ascontiguousarray(rgb), frame_display_matrix(first), len(frames)


def _err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


@pytest.mark.parametrize("start_s", [0.0, 0.2])  # 0.0 the whole stream: copied
def test_the_display_matrix_survives_copy_and_reencode(tmp_path: Path, start_s: float) -> None:
    """All eight right-angle orientations: the result shows as the source does (same matrix,
    same displayed picture), and :class:`SpanVideo` reports the displayed size."""
    for rotation in (0, 90, 180, 270):
        for hflip in (False, True):
            src = _phone(tmp_path / f"s{rotation}{hflip}.mp4", rotation, hflip)
            out = tmp_path / f"o{rotation}{hflip}.mp4"
            span = _call(src, out, start_s, 0.5 if start_s else 15 / float(NTSC))
            assert isinstance(span, SpanVideo) and span.copied == (start_s == 0)
            want, src_matrix, _ = _shown(src)
            got, matrix, count = _shown(out)
            expected = np.rot90(_pattern(), rotation // 90)
            expected = expected[:, ::-1] if hflip else expected
            assert count == span.frames
            assert (span.width, span.height) == got.shape[1::-1] == expected.shape[1::-1]
            assert (span.orientation.rotation, span.orientation.mirrored) == (rotation, hflip)
            if rotation or hflip:  # an upright source may carry none: then the result neither
                assert src_matrix is not None
            assert (matrix is None) == (src_matrix is None)
            if matrix is not None:
                np.testing.assert_array_equal(matrix, src_matrix)
            # 2-3 of 255 is the codec's error at crf 8 (twice for the re-encode); any other
            # orientation of the pattern is more than 40 away
            assert _err(got, expected) < 6.0 and _err(got, want) < 6.0, (rotation, hflip)


def test_a_reencoded_portrait_clip_plays_upright_in_ffmpeg(tmp_path: Path) -> None:
    """Independent of our reader: the ffmpeg CLI's autorotated decode of the re-encoded span of
    a portrait phone clip (stored 63x47 in 4:4:4, odd: padded to 64x48) is the pattern turned
    90 degrees clockwise, 48 wide and 64 high."""
    if FFMPEG is None:
        pytest.skip("the ffmpeg CLI is not installed")
    img = _pattern(63, 47)
    src = _phone(tmp_path / "p.mp4", 270, img=img)  # 270 ccw = 90 clockwise
    span = _call(src, tmp_path / "o.mp4", 0.1, 0.3)
    assert not span.copied and (span.width, span.height) == (48, 64)
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(tmp_path / "o.mp4"), "-frames:v",
                          "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True, timeout=60).stdout
    shown = np.frombuffer(raw, np.uint8).reshape(64, 48, 3)
    expected = np.rot90(np.pad(img, ((0, 1), (0, 1), (0, 0)), mode="edge"), 3)
    assert _err(shown, expected) < 6.0
    assert _err(shown, np.rot90(expected, 2)) > 20.0  # upside down would fail


def _whole_clip(src: Path, model_frames: int, start_s: float) -> WholeClipOutput:
    """A video-to-audio whole clip's generated output (silence) over ``model_frames`` frames at
    10 fps (the tiny model's rate) of ``src``."""
    span = SpanInput(np.zeros((model_frames, 16, 16, 3), np.uint8), InputMedia(stream="video"),
                     src, model_frames, 10)
    audio = np.zeros((1, round(span.duration_s * 16000)), np.float32)
    return WholeClipOutput(mode="video-to-audio", frames=None, audio=audio, span=span,
                           start_s=start_s, windows=2, nfe={}, stage_seconds={},
                           random_weights=True, fps=10, sample_rate=16000)


def test_mux_whole_clip_reports_the_exact_rate_and_how_the_video_was_made(
        tmp_path: Path, offline_settings: object) -> None:
    """A 29.97 fps portrait upload: ``fps`` is 30000/1001 exactly (not 30), ``duration_s``
    frames / fps, width x height as displayed, ``video`` copied or reencoded."""
    from core.settings import Settings

    assert isinstance(offline_settings, Settings)
    src = _phone(tmp_path / "p.mp4", 90, frames=30)  # 30 frames = 1.001 s
    whole = mux_whole_clip(_whole_clip(src, 10, 0.0), tmp_path / "a", offline_settings)
    part = mux_whole_clip(_whole_clip(src, 5, 0.2), tmp_path / "b", offline_settings)
    assert whole.video == "copied" and part.video == "reencoded"
    for muxed, frames in ((whole, 30), (part, 15)):  # round(1.0 * 29.97), round(0.5 * 29.97)
        assert muxed.fps == 30000 / 1001 and muxed.fps != 30.0
        assert muxed.duration_s == pytest.approx(frames * 1001 / 30000, abs=1e-9)
        assert (muxed.width, muxed.height) == (48, 64)
        with av.open(str(muxed.paths[0])) as c:
            assert c.streams.video[0].average_rate == NTSC
