"""worker/media_span.py: the whole video stream is stream-copied (packets byte for byte), a span
from a later start is re-encoded at the source's own geometry and frame rate; both come back
with a soundtrack as long as the picture (within one frame)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from worker.media_span import reencode_span


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
