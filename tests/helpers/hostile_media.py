"""A corpus of malformed and hostile uploads, generated on the fly (nothing is stored in the repo),
with what the service must answer for each: a 4xx status and ``error.code`` at upload, or a job
that fails with a given ``error.code`` in the worker.

Shared by the unit tests of the gateway checks (``tests/service/test_upload_checks.py``) and the
end-to-end run against a real worker (``tests/e2e/test_hostile_media.py``).
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from tests.helpers.media import write_clip


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    endpoint: str  # "video-to-audio", "audio-to-video" or "uploads"
    make: Callable[[Path], bytes]  # tmp dir -> file bytes
    status: int  # expected HTTP status at upload (202 when the job must fail instead)
    code: str  # expected error.code (of the 4xx, or of the failed job)
    fields: tuple[tuple[str, str], ...] = ()  # extra form fields

    @property
    def fails_in_worker(self) -> bool:
        return self.status == 202


# --------------------------------------------------------------------------------------------
# building blocks (real media made with PyAV, then broken)


def good_mp4(tmp: Path, *, seconds: float = 2.0, audio: bool = True, video: bool = True,
             faststart: bool = False) -> bytes:
    """H.264 (+AAC) MP4, 32x32 at 10 fps; ``faststart`` puts the moov box before the media."""
    path = tmp / f"good-{seconds}-{audio}-{video}.mp4"
    if video:
        write_clip(path, seconds=seconds, audio=audio)
    else:
        _write(path, "mp4", [("aac", 16000)], seconds=seconds)
    data = path.read_bytes()
    if faststart:
        data = _faststart(data)
    return data


def good_wav(tmp: Path, seconds: float = 2.0) -> bytes:
    return write_clip(tmp / f"good-{seconds}.wav", seconds=seconds, video=False).read_bytes()


def _write(path: Path, fmt: str, audio: list[tuple[str, int]], *, seconds: float = 0.5,
           video: tuple[str, int, int] | None = None) -> Path:
    """A file with ``audio`` streams [(codec, rate)] and an optional ``video`` (codec, w, h)."""
    with av.open(str(path), "w", format=fmt) as out:
        astreams = [out.add_stream(codec, rate=rate, layout="mono") for codec, rate in audio]
        vstream = None
        if video is not None:
            codec, w, h = video
            vstream = out.add_stream(codec, rate=10)
            vstream.width, vstream.height = w, h
            vstream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
            img = np.full((h, w, 3), 90, np.uint8)
            for i in range(max(1, int(seconds * 10))):
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(
                    format=vstream.pix_fmt)
                frame.pts = i
                for packet in vstream.encode(frame):
                    out.mux(packet)
            for packet in vstream.encode():
                out.mux(packet)
        for s, (_codec, rate) in zip(astreams, audio, strict=True):
            fmt_name = s.codec_context.format.name if s.codec_context.format else "fltp"
            n = int(seconds * rate)
            done = 0
            chunk = s.codec_context.frame_size or 1024
            while done < n:
                frame = av.AudioFrame(format=fmt_name, layout="mono", samples=chunk)
                for plane in frame.planes:
                    plane.update(bytes(plane.buffer_size))
                frame.sample_rate, frame.pts = rate, done
                for packet in s.encode(frame):
                    out.mux(packet)
                done += chunk
            for packet in s.encode():
                out.mux(packet)
    return path


def _boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """Top-level ISO BMFF boxes: (type, start, end)."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if size < 8:
            break
        out.append((kind, pos, pos + size))
        pos += size
    return out


def _faststart(data: bytes) -> bytes:
    """Move moov before mdat, fixing the chunk offsets (stco) by the moov size."""
    boxes = {k: (s, e) for k, s, e in _boxes(data)}
    ms, me = boxes[b"moov"]
    moov = bytearray(data[ms:me])
    shift = me - ms
    pos = moov.find(b"stco")
    while pos != -1:
        count = int.from_bytes(moov[pos + 8:pos + 12], "big")
        for i in range(count):
            at = pos + 12 + 4 * i
            moov[at:at + 4] = (int.from_bytes(moov[at:at + 4], "big") + shift).to_bytes(4, "big")
        pos = moov.find(b"stco", pos + 4)
    fs, fe = boxes[b"ftyp"]
    rest = b"".join(data[s:e] for k, (s, e) in boxes.items() if k not in (b"ftyp", b"moov"))
    return data[fs:fe] + bytes(moov) + rest


def _without_box(data: bytes, kind: bytes) -> bytes:
    return b"".join(data[s:e] for k, s, e in _boxes(data) if k != kind)


def _corrupt_mdat(data: bytes, seed: int) -> bytes:
    """Random bytes over the media data (headers kept, so the probe still reads it)."""
    _k, s, e = next(b for b in _boxes(data) if b[0] == b"mdat")
    rng = np.random.default_rng(seed)
    junk = rng.integers(0, 256, e - s - 8, dtype=np.uint8).tobytes()
    return data[:s + 8] + junk + data[e:]


def _wav_header(*, channels: int, rate: int, bits: int = 16, data_bytes: int) -> bytes:
    block = max(channels, 1) * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes))


def _mjpeg_with_dims(tmp: Path, size: int, *, container: bool) -> bytes:
    """A 256x256 MJPEG MKV whose JPEG frame headers (SOF0) claim ``size`` x ``size``, and
    (``container``) whose Matroska PixelWidth/PixelHeight say so too."""
    data = _write(tmp / "mj.mkv", "matroska", [], seconds=0.6,
                  video=("mjpeg", 256, 256)).read_bytes()
    sof = b"\xff\xc0\x00\x11\x08\x01\x00\x01\x00"  # SOF0, 8 bit, height 256, width 256
    assert sof in data, "no baseline SOF0 marker in the MJPEG frames"
    data = data.replace(sof, b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", size, size))
    if container:
        for element in (b"\xb0", b"\xba"):  # PixelWidth, PixelHeight: 2-byte values
            assert data.count(element + b"\x82\x01\x00") == 1
            data = data.replace(element + b"\x82\x01\x00",
                                element + b"\x82" + struct.pack(">H", size))
    return data


def _mkv_declaring(tmp: Path, seconds: float) -> bytes:
    """Half a second of PCM in Matroska whose Segment Duration claims ``seconds``."""
    data = _write(tmp / "long.mkv", "matroska", [("pcm_s16le", 8000)]).read_bytes()
    at = data.find(b"\x44\x89\x88")  # Duration, 8-byte float, in milliseconds
    assert at != -1, "no 8-byte Duration element"
    return data[:at + 3] + struct.pack(">d", seconds * 1000.0) + data[at + 11:]


def _zip(entries: dict[str, bytes], *, stored: bool = False) -> bytes:
    buf = io.BytesIO()
    mode = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buf, "w", mode) as z:
        for name, content in entries.items():
            z.writestr(name, content)
    return buf.getvalue()


def _ogg_garbage(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pages = []
    for seq in range(6):  # "OggS" capture patterns around random page bodies
        body = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
        pages.append(b"OggS\x00\x02" + bytes(8) + b"\x01\x02\x03\x04" + struct.pack("<I", seq)
                     + bytes(4) + b"\x01\xc8" + body)
    return b"".join(pages)


def _adts_garbage(seed: int) -> bytes:
    """ADTS headers (AAC-LC, 16 kHz, mono) in front of random payloads."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(40):
        payload = rng.integers(0, 256, 120, dtype=np.uint8).tobytes()
        length = 7 + len(payload)
        header = bytes([0xFF, 0xF1, (1 << 6) | (8 << 2), (1 << 6) | (length >> 11),
                        (length >> 3) & 0xFF, ((length & 7) << 5) | 0x1F, 0xFC])
        frames.append(header + payload)
    return b"".join(frames)


PNG = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 1, 1, 8, 2,
                                                                               0, 0, 0)
       + b"\x90wS\xde" + b"\x00\x00\x00\x00IEND\xaeB`\x82")
JPEG = (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(64)
        + b"\xff\xd9")
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML = b"<!DOCTYPE html><html><body><video src='x.mp4'></video></body></html>\n"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00;"


def corpus() -> list[Case]:
    """At least 30 hostile uploads and the expected answer for each."""
    V, A, U = "video-to-audio", "audio-to-video", "uploads"
    r415, r413, r422 = 415, 413, 422

    def mp4_cut(frac: float) -> Callable[[Path], bytes]:
        return lambda t: (d := good_mp4(t))[: int(len(d) * frac)]

    def moov_cut(frac: float) -> Callable[[Path], bytes]:  # cut inside moov (the file's end)
        def make(t: Path) -> bytes:
            d = good_mp4(t)
            _, s, e = next(b for b in _boxes(d) if b[0] == b"moov")
            return d[: s + int((e - s) * frac)]
        return make

    cases = [
        Case("zero_bytes_video", "clip.mp4", V, lambda t: b"", r422, "empty_upload"),
        Case("zero_bytes_audio", "a.wav", A, lambda t: b"", r422, "empty_upload"),
        Case("truncated_in_ftyp", "clip.mp4", V, lambda t: good_mp4(t)[:20], r422,
             "unreadable_media"),
        Case("truncated_30pct", "clip.mp4", V, mp4_cut(0.3), r422, "unreadable_media"),
        Case("truncated_90pct", "clip.mp4", V, mp4_cut(0.9), r422, "unreadable_media"),
        # the video trak comes first in moov: a cut at 10% loses it, at 50% only the audio one
        Case("truncated_moov_10pct", "clip.mp4", V, moov_cut(0.1), r422, "no_video_stream"),
        Case("truncated_moov_50pct", "clip.mp4", A, moov_cut(0.5), r422, "no_audio_stream"),
        Case("moov_missing", "clip.mp4", V, lambda t: _without_box(good_mp4(t), b"moov"), r422,
             "unreadable_media"),
        Case("text_file", "clip.mp4", V, lambda t: b"just some text, not a video\n" * 20, r415,
             "unsupported_media_type"),
        Case("png_as_mp4", "clip.mp4", V, lambda t: PNG, r415, "unsupported_media_type"),
        Case("jpeg_as_wav", "a.wav", A, lambda t: JPEG, r415, "unsupported_media_type"),
        Case("gif", "a.gif", U, lambda t: GIF, r415, "unsupported_media_type"),
        Case("pdf", "clip.mp4", V, lambda t: PDF, r415, "unsupported_media_type"),
        Case("pdf_upload", "a.mp3", U, lambda t: PDF, r415, "unsupported_media_type"),
        Case("html", "a.mp3", A, lambda t: HTML, r415, "unsupported_media_type"),
        Case("zip", "clip.mp4", V, lambda t: _zip({"a.txt": b"hello" * 100}), r415,
             "unsupported_media_type"),
        Case("zip_holding_mp4_polyglot", "clip.mp4", V,
             lambda t: _zip({"clip.mp4": good_mp4(t)}, stored=True), r415,
             "unsupported_media_type"),
        Case("ftyp_then_zip_polyglot", "clip.mp4", V,
             lambda t: good_mp4(t)[:32] + _zip({"x.mp4": good_mp4(t)}, stored=True), r422,
             "unreadable_media"),
        Case("random_bytes", "a.wav", A,
             lambda t: b"\0" + np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes(),
             r415, "unsupported_media_type"),
        Case("wav_named_mp4_for_video", "clip.mp4", V, good_wav, r415, "container_not_allowed"),
        Case("m4a_audio_only_for_video", "clip.mp4", V, lambda t: good_mp4(t, video=False),
             r422, "no_video_stream"),
        Case("video_only_for_audio", "clip.mp4", A, lambda t: good_mp4(t, audio=False), r422,
             "no_audio_stream"),
        Case("wide_mjpeg_8192", "clip.mkv", V,
             lambda t: _write(t / "wide.mkv", "matroska", [], seconds=0.2,
                              video=("mjpeg", 8192, 16)).read_bytes(), r413,
             "dimensions_too_large"),
        Case("wide_h264_4112", "clip.mp4", V,
             lambda t: _write(t / "wide.mp4", "mp4", [], seconds=0.1,
                              video=("libx264", 4112, 16)).read_bytes(), r413,
             "dimensions_too_large"),
        # container and JPEG headers claim 16384x16384: FFmpeg refuses the frame, no size left
        Case("mkv_and_sof_claim_16384", "clip.mkv", V,
             lambda t: _mjpeg_with_dims(t, 16384, container=True), r422, "invalid_video"),
        Case("mkv_declares_2_hours", "a.mkv", A, lambda t: _mkv_declaring(t, 7200.0), r413,
             "clip_too_long"),
        Case("wav_zero_channels", "a.wav", A,
             lambda t: _wav_header(channels=0, rate=16000, data_bytes=3200) + bytes(3200), r422,
             "invalid_audio"),
        Case("wav_absurd_rate", "a.wav", A,
             lambda t: _wav_header(channels=1, rate=2_000_000_000, data_bytes=3200) + bytes(3200),
             r422, "invalid_audio"),
        Case("wav_header_only", "a.wav", A, lambda t: good_wav(t)[:12], r422, "unreadable_media"),
        Case("ogg_garbage_pages", "a.ogg", A, lambda t: _ogg_garbage(2), r422, "unreadable_media"),
        Case("ebml_header_only", "clip.webm", V, lambda t: b"\x1a\x45\xdf\xa3" + bytes(60), r422,
             "unreadable_media"),
        Case("many_audio_streams", "a.mkv", A,
             lambda t: _write(t / "many.mkv", "matroska", [("pcm_s16le", 8000)] * 20).read_bytes(),
             r422, "too_many_streams"),
        Case("unsupported_video_codec", "clip.mkv", V,
             lambda t: _write(t / "m2v.mkv", "matroska", [], video=("mpeg2video", 32, 32))
             .read_bytes(), r415, "unsupported_codec"),
        Case("unsupported_audio_codec", "a.mkv", A,
             lambda t: _write(t / "mp2.mkv", "matroska", [("mp2", 16000)]).read_bytes(), r415,
             "unsupported_codec"),
        Case("over_size_limit", "a.wav", A,
             lambda t: _wav_header(channels=1, rate=16000, data_bytes=6_000_000)
             + bytes(6_000_000), r413, "upload_too_large"),
        # pass the gateway's header checks, fail when the worker decodes
        Case("corrupt_h264_payload", "clip.mp4", V,
             lambda t: _corrupt_mdat(good_mp4(t, audio=False, faststart=True), 3), 202,
             "decode_failed"),
        Case("corrupt_aac_adts", "a.aac", A, lambda t: _adts_garbage(4), r422, "invalid_audio"),
        Case("corrupt_aac_in_m4a", "a.m4a", A,
             lambda t: _corrupt_mdat(good_mp4(t, video=False), 5), 202, "decode_failed"),
        # the container says 256x256, every JPEG frame claims 16384x16384
        Case("jpeg_frames_claim_16384", "clip.mkv", V,
             lambda t: _mjpeg_with_dims(t, 16384, container=False), 202, "decode_failed"),
        # the probe knows the duration: under MMD_MIN_CLIP_DURATION_S (0.5 s) from start_s, or
        # start_s past the end, is a 422 at submit naming the clip's length
        Case("video_too_short", "clip.mp4", V, lambda t: good_mp4(t, seconds=0.3), r422,
             "clip_too_short"),
        Case("wav_50ms", "a.wav", A, lambda t: good_wav(t, 0.05), r422, "clip_too_short"),
        Case("video_little_left_after_start", "clip.mp4", V, good_mp4, r422, "clip_too_short",
             (("start_s", "1.8"),)),
        Case("audio_start_past_end", "a.wav", A, lambda t: good_wav(t, 1.0), r422,
             "start_past_end", (("start_s", "30"),)),
        Case("video_start_past_end", "clip.mp4", V, good_mp4, r422, "start_past_end",
             (("start_s", "2.5"),)),
        # under MMD_MIN_VIDEO_SIDE (16 px) on a side
        Case("video_1x1_mjpeg", "clip.mkv", V,
             lambda t: _write(t / "1x1.mkv", "matroska", [], seconds=1.0,
                              video=("mjpeg", 1, 1)).read_bytes(), r422, "video_too_small"),
        Case("video_2x64_h264", "clip.mp4", V,
             lambda t: _write(t / "2x64.mp4", "mp4", [], seconds=1.0,
                              video=("libx264", 64, 2)).read_bytes(), r422, "video_too_small"),
        # AC-3 is recognised and named (not in the default MMD_AUDIO_CODECS)
        Case("ac3_raw", "a.ac3", A,
             lambda t: _write(t / "a.ac3", "ac3", [("ac3", 48000)], seconds=1.0).read_bytes(),
             r415, "unsupported_codec"),
        Case("ac3_in_mkv", "a.mkv", A,
             lambda t: _write(t / "ac3.mkv", "matroska", [("ac3", 48000)], seconds=1.0)
             .read_bytes(), r415, "unsupported_codec"),
        # need more decoding than the worker's limits allow (the e2e stack sets
        # MMD_MAX_DECODED_FRAMES=60 and MMD_MAX_DECODED_SAMPLES=200000)
        Case("video_seek_past_decode_limit", "clip.mp4", V,
             lambda t: _write(t / "still.mp4", "mp4", [], seconds=12.0,
                              video=("libx264", 32, 32)).read_bytes(), 202, "decode_limit",
             (("start_s", "10"),)),
        Case("audio_past_decode_limit", "a.wav", A, lambda t: good_wav(t, 20.0), 202,
             "decode_limit", (("start_s", "15"),)),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases
