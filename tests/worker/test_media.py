"""worker/media.py against real files: written with PyAV here, and the released clips."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from worker.media import (
    AAC_FRAME_SAMPLES,
    MediaError,
    decode_audio,
    decode_video_clip,
    mux_mp4,
    probe,
)

# --------------------------------------------------------------------------------------------
# helpers: write test media with PyAV


def _write_audio(
    path: Path, codec: str, signal: np.ndarray, rate: int, fmt: str | None = None
) -> Path:
    """``signal float [C, T]`` in [-1, 1] -> an audio file encoded with ``codec``."""
    channels = signal.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate, layout=layout)
        cc = s.codec_context
        sample_fmt = cc.format.name if cc.format is not None else s.codec.audio_formats[0].name
        step = cc.frame_size or 1024
        for i in range(0, signal.shape[1], step):
            chunk = signal[:, i : i + step]
            if sample_fmt.startswith("s16"):
                data = (chunk * 32767).round().astype(np.int16)
            elif sample_fmt.startswith("s32"):
                data = (chunk * 2147483647.0).round().astype(np.int32)
            else:
                data = chunk.astype(np.float32)
            if not sample_fmt.endswith("p"):  # packed: [1, T*C] interleaved
                data = data.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data), format=sample_fmt, layout=layout
            )
            frame.sample_rate, frame.pts = rate, i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def _write_video(
    path: Path, frames: np.ndarray, fps: int, codec: str = "libx264", fmt: str | None = None
) -> Path:
    """``frames uint8 [N, H, W, 3]`` -> a video-only file at ``fps``."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps, options={"crf": "10"} if codec == "libx264" else None)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def _indexed_frames(n: int, h: int = 64, w: int = 64) -> np.ndarray:
    """Solid grey frames whose level ``4 * i`` encodes their index ``i``."""
    return np.broadcast_to(
        (4 * np.arange(n, dtype=np.uint8))[:, None, None, None], (n, h, w, 3)
    ).copy()


def _indices(clip: np.ndarray) -> list[int]:
    return [round(float(f.mean()) / 4) for f in clip]


def _sine(
    freq: float, rate: int, seconds: float, amp: float = 0.5, channels: int = 2
) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.repeat((amp * np.sin(2 * np.pi * freq * t))[None], channels, axis=0)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


def _smooth_frames(n: int, h: int, w: int) -> np.ndarray:
    """Moving colour gradients (compress well, every frame different)."""
    y, x = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = (x * 255 // max(w - 1, 1) + 8 * i) % 256
        out[i, ..., 1] = y * 255 // max(h - 1, 1)
        out[i, ..., 2] = 128 + 6 * i
    return out


# --------------------------------------------------------------------------------------------
# muxing


def test_mux_roundtrip_frames_fps_audio_length(tmp_path: Path) -> None:
    frames = _smooth_frames(16, 64, 64)
    audio = _sine(440, 16000, 1.6, channels=1)[0].astype(np.float32)
    out = tmp_path / "clip.mp4"
    mux_mp4(out, frames, audio, fps=10, sample_rate=16000)

    info = probe(out)
    assert "mp4" in info.container
    assert info.video is not None and info.audio is not None
    assert (info.video.codec, info.video.width, info.video.height) == ("h264", 64, 64)
    assert info.video.fps == pytest.approx(10.0)
    assert (info.audio.codec, info.audio.sample_rate, info.audio.channels) == ("aac", 16000, 1)
    assert info.duration_s == pytest.approx(1.6, abs=0.07)

    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        raw = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        n_audio = sum(f.samples for f in c.decode(audio=0))
    assert len(raw) == 16
    # AAC: the encoder primes 1024 samples (hidden again by the MP4 edit list) and pads the last
    # frame with silence, so the decoded length is T up to one AAC frame.
    assert abs(n_audio - audio.shape[0]) < AAC_FRAME_SAMPLES

    back = decode_video_clip(out, num_frames=16, fps=10, size=64)
    assert back.shape == (16, 64, 64, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 3.0
    sound = decode_audio(out, num_samples=25600, sample_rate=16000)
    assert sound.shape == (25600,) and sound.dtype == np.float32
    assert _peak_hz(sound, 16000) == pytest.approx(440, abs=5)
    assert np.corrcoef(sound[2000:20000], audio[2000:20000])[0, 1] > 0.99

    head = out.read_bytes()
    assert 0 <= head.find(b"moov") < head.find(b"mdat"), "faststart: moov must precede mdat"


def test_mux_pads_odd_sizes_and_rejects_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    mux_mp4(out, _smooth_frames(3, 15, 17), np.zeros(1600, np.float32))
    info = probe(out)
    assert (info.video.width, info.video.height) == (18, 16)
    with pytest.raises(ValueError, match=r"uint8 \[F, H, W, 3\]"):
        mux_mp4(out, np.zeros((3, 8, 8, 3), np.float32), np.zeros(10, np.float32))
    with pytest.raises(ValueError, match=r"1-D"):
        mux_mp4(out, _smooth_frames(3, 8, 8), np.zeros((1, 10), np.float32))
    assert not list(tmp_path.glob(".odd.mp4.*")), "no temporary file left behind"


# --------------------------------------------------------------------------------------------
# audio decoding


@pytest.mark.parametrize(
    ("name", "codec", "rate", "fmt"),
    [
        ("a.wav", "pcm_s16le", 44100, None),
        ("a.flac", "flac", 22050, None),
        ("a.ogg", "libopus", 48000, None),
        ("a.mp3", "libmp3lame", 44100, None),
        ("a.m4a", "aac", 32000, "ipod"),
    ],
)
def test_decode_audio_any_format(
    tmp_path: Path, name: str, codec: str, rate: int, fmt: str | None
) -> None:
    path = _write_audio(tmp_path / name, codec, _sine(440, rate, 2.5, amp=0.5), rate, fmt)
    out = decode_audio(path, start_s=0.5, num_samples=16000, sample_rate=16000)
    assert out.shape == (16000,) and out.dtype == np.float32
    assert _peak_hz(out, 16000) == pytest.approx(440, abs=5)
    rms = float(np.sqrt(np.mean(out**2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1), "stereo averaged to mono, unit gain"
    # Past the end: zero-padded to the requested length.
    tail = decode_audio(path, start_s=2.0, num_samples=16000, sample_rate=16000)
    assert tail.shape == (16000,)
    assert np.abs(tail[:6000]).max() > 0.3 and np.abs(tail[10000:]).max() == 0.0


def test_decode_audio_position_and_clipping(tmp_path: Path) -> None:
    rate = 44100
    sig = np.zeros((2, 2 * rate))
    sig[:, int(0.75 * rate)] = 1.0  # click at 0.75 s
    sig[:, int(1.5 * rate) :] = 1.0  # full-scale correlated stereo: must not exceed 1 after mono
    path = _write_audio(tmp_path / "click.wav", "pcm_s16le", sig, rate)
    for start in (0.0, 0.25, 0.5):
        out = decode_audio(path, start_s=start, num_samples=16000, sample_rate=16000)
        assert int(np.argmax(np.abs(out))) == round((0.75 - start) * 16000)
    late = decode_audio(path, start_s=1.6, num_samples=1000, sample_rate=16000)
    assert late.max() <= 1.0 and late[200:800].min() > 0.99
    with pytest.raises(MediaError) as err:
        decode_audio(path, start_s=3.0)
    assert err.value.code == "clip_too_short"


def test_decode_audio_of_video_file_and_missing_stream(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    mux_mp4(out, _smooth_frames(16, 32, 32), _sine(1000, 16000, 1.6, channels=1)[0])
    assert _peak_hz(decode_audio(out, num_samples=16000), 16000) == pytest.approx(1000, abs=5)
    silent = _write_video(tmp_path / "silent.mp4", _indexed_frames(20), fps=10)
    with pytest.raises(MediaError) as err:
        decode_audio(silent)
    assert err.value.code == "no_audio_stream"


# --------------------------------------------------------------------------------------------
# video decoding


def test_decode_video_resamples_by_timestamp(tmp_path: Path) -> None:
    fast = _write_video(tmp_path / "30fps.mp4", _indexed_frames(60), fps=30)
    clip = decode_video_clip(fast, start_s=0.5, num_frames=10, fps=10, size=32)
    assert clip.shape == (10, 32, 32, 3)
    assert _indices(clip) == [15 + 3 * k for k in range(10)]

    slow = _write_video(tmp_path / "4fps.mp4", _indexed_frames(8), fps=4)
    clip = decode_video_clip(slow, num_frames=16, fps=10, size=16)
    assert _indices(clip) == [round(0.4 * k + 1e-9) for k in range(16)]

    # A raw H.264 stream has no timestamps: frames are counted at the stream's rate instead.
    raw = _write_video(tmp_path / "raw.h264", _indexed_frames(20, 32, 32), fps=10, fmt="h264")
    assert _indices(decode_video_clip(raw, num_frames=16, size=16)) == list(range(16))


def test_decode_video_centre_crop_and_resize(tmp_path: Path) -> None:
    frames = np.full((12, 64, 128, 3), 200, np.uint8)
    frames[:, :, :32] = (255, 0, 0)  # side bands a centre crop must remove
    frames[:, :, -32:] = (0, 0, 255)
    frames[:, :32, 32:96] = 40  # top half of the centre square darker
    clip = decode_video_clip(
        _write_video(tmp_path / "wide.mp4", frames, fps=10), num_frames=12, size=16
    )
    assert clip.shape == (12, 16, 16, 3)
    spread = clip.astype(int).max(axis=-1) - clip.astype(int).min(axis=-1)
    assert spread.max() < 12, "no red/blue from the side bands"
    assert np.abs(clip[:, :6].astype(int) - 40).max() < 8
    assert np.abs(clip[:, 10:].astype(int) - 200).max() < 8


def test_decode_video_errors(tmp_path: Path) -> None:
    short = _write_video(tmp_path / "short.mp4", _indexed_frames(10), fps=10)
    assert decode_video_clip(short, num_frames=10, size=8).shape == (10, 8, 8, 3)
    with pytest.raises(MediaError, match="longer clip") as err:
        decode_video_clip(short, num_frames=16)
    assert err.value.code == "clip_too_short"
    with pytest.raises(MediaError) as err:
        decode_video_clip(short, start_s=0.5, num_frames=6)
    assert err.value.code == "clip_too_short"

    wav = _write_audio(tmp_path / "a.wav", "pcm_s16le", _sine(440, 8000, 0.5), 8000)
    with pytest.raises(MediaError) as err:
        decode_video_clip(wav)
    assert err.value.code == "no_video_stream"

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for fn in (probe, decode_video_clip, decode_audio):
        with pytest.raises(MediaError) as err:
            fn(junk)
        assert err.value.code == "unsupported_container"
    with pytest.raises(MediaError) as err:
        probe(tmp_path / "missing.mp4")
    assert err.value.code == "not_found"
    with pytest.raises(MediaError, match="limit of 100 bytes") as err:
        decode_video_clip(short, max_bytes=100)
    assert err.value.code == "file_too_large"
    with pytest.raises(ValueError, match="num_frames >= 1"):
        decode_video_clip(short, num_frames=0)


# --------------------------------------------------------------------------------------------
# the released clips (H.264 + MP3, 256x256, 10 fps)


def test_real_clips_probe_and_decode(shared_media: Path) -> None:
    landscape = shared_media / "landscape.mp4"
    info = probe(landscape)
    assert info.video.codec == "h264" and info.audio.codec.startswith("mp3")
    assert (info.video.width, info.video.height, info.video.fps) == (256, 256, 10.0)
    assert info.audio.sample_rate == 16000
    assert info.duration_s == pytest.approx(88.5, abs=0.2)

    # Already 10 fps and 256x256: the clip is exactly the stream's own frames 0..15.
    with av.open(str(landscape)) as c:
        raw = []
        for f in c.decode(video=0):
            raw.append(f.to_ndarray(format="rgb24"))
            if len(raw) == 16:
                break
    np.testing.assert_array_equal(decode_video_clip(landscape, size=256), np.stack(raw))

    later = decode_video_clip(landscape, start_s=40.0, size=64)
    assert later.shape == (16, 64, 64, 3) and later.std() > 5
    with pytest.raises(MediaError) as err:
        decode_video_clip(landscape, start_s=88.0)
    assert err.value.code == "clip_too_short"

    audioset = shared_media / "audioset.mp4"
    whole = decode_audio(audioset, start_s=0.0, num_samples=5 * 16000 + 25600)
    seeked = decode_audio(audioset, start_s=5.0)
    assert seeked.shape == (25600,) and seeked.std() > 1e-3
    np.testing.assert_allclose(seeked, whole[5 * 16000 :], atol=1e-4)


def test_media_is_split_by_job_and_keeps_its_public_names() -> None:
    """worker.media is the public face of media_probe / media_video / media_audio / muxing: the
    same objects under the old import path, and every file under the ~400-line guide."""
    import worker.media as media
    from core import media_probe
    from worker import media_audio, media_video, muxing

    for name in media.__all__:
        assert hasattr(media, name), name
    assert media.probe is media_probe.probe and media.MediaError is media_probe.MediaError
    assert media.decode_video_clip is media_video.decode_video_clip
    assert media.decode_audio is media_audio.decode_audio and media.mux_mp4 is muxing.mux_mp4
    assert media_video.MediaError is media_audio.MediaError is media.MediaError  # one error type
    root = Path(media.__file__).parent
    for path in sorted(root.glob("media*.py")):
        assert len(path.read_text().splitlines()) <= 400, path.name
