"""Container sniffing by magic bytes (pure Python, no FFmpeg): what an upload claims to be, from
its first bytes only, before PyAV ever opens it. The file name and the client's content type are
never trusted.

Known kinds (:data:`KINDS`): ``mp4`` (ISO BMFF / QuickTime: MP4, MOV, M4A), ``matroska`` (MKV,
WebM), ``ogg``, ``flac``, ``wav`` (RIFF/WAVE), ``mp3`` (ID3 tag or an MPEG audio frame header),
``aac`` (ADTS), ``ac3`` (raw AC-3 / E-AC-3: recognised so that the codec check can name it; its
codec is accepted only when ``MMD_AUDIO_CODECS`` lists it). Anything else (text, HTML, PNG,
JPEG, PDF, ZIP, ...) is ``None``.
"""

from __future__ import annotations

from pathlib import Path

SNIFF_BYTES = 64

KINDS: dict[str, str] = {
    "mp4": "MP4/MOV/M4A",
    "matroska": "MKV/WebM",
    "ogg": "OGG",
    "flac": "FLAC",
    "wav": "WAV",
    "mp3": "MP3",
    "aac": "AAC (ADTS)",
    "ac3": "AC-3/E-AC-3 (Dolby Digital)",
}

# Containers that can carry the stream each endpoint needs.
VIDEO_KINDS = frozenset({"mp4", "matroska", "ogg"})
AUDIO_KINDS = frozenset(KINDS)

# ISO BMFF top-level boxes that may come first (QuickTime files often start with moov/mdat/wide).
_BMFF_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


def sniff_bytes(head: bytes) -> str | None:
    """The container kind of a file starting with ``head`` (at least 12 bytes to be sure), or
    None when the bytes match no supported media container."""
    if len(head) >= 12 and head[4:8] in _BMFF_FIRST_BOXES:
        size = int.from_bytes(head[:4], "big")
        if size in (0, 1) or size >= 8:  # 0: to end of file, 1: 64-bit size follows
            return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith((b"RIFF", b"RF64")) and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"ID3"):
        return "mp3"
    if head.startswith(b"\x0b\x77"):  # AC-3 / E-AC-3 sync word
        return "ac3"
    if len(head) >= 2 and head[0] == 0xFF:
        second = head[1]
        if second & 0xF6 == 0xF0:  # 1111 x00x: ADTS sync, layer 00
            return "aac"
        if second & 0xE0 == 0xE0 and _mpeg_audio_header(head[:4]):
            return "mp3"
    return None


def _mpeg_audio_header(h: bytes) -> bool:
    """A plausible MPEG-1/2/2.5 layer I-III frame header (version, layer, bitrate, rate valid)."""
    if len(h) < 4:
        return False
    version = (h[1] >> 3) & 0x3
    layer = (h[1] >> 1) & 0x3
    bitrate = h[2] >> 4
    rate = (h[2] >> 2) & 0x3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def sniff_file(path: Path) -> str | None:
    """:func:`sniff_bytes` of the first :data:`SNIFF_BYTES` bytes of ``path``."""
    with open(path, "rb") as fh:
        return sniff_bytes(fh.read(SNIFF_BYTES))


def describe(head: bytes) -> str:
    """What a file that is no known container seems to be, as the end of a sentence for error
    messages: "it looks like a PNG image", "its first bytes (de ad be ef) match no supported
    audio/video container"."""
    for magic, name in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                        (b"PK\x03\x04", "a ZIP archive"), (b"%PDF", "a PDF document"),
                        (b"GIF8", "a GIF image"), (b"\x1f\x8b", "a gzip file"),
                        (b"RIFF", "a RIFF file that is not WAVE (AVI?)")):
        if head.startswith(magic):
            return f"it looks like {name}"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "it looks like an HTML page"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "it looks like a text file"
    return f"its first bytes ({head[:8].hex(' ')}) match no supported audio/video container"
