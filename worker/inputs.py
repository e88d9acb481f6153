"""A conditional job's input: fetched from storage (an upload) or its ``audio_url``, then
decoded to the model's condition (``video uint8 [F, H, W, 3]`` or ``audio float32 [T]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from core.contract import InputMedia, JobSpec
from core.netguard import UnsafeURLError, pin
from core.probe import Need, UploadRejected, check_upload
from core.settings import Settings
from core.storage import Storage, StorageError
from worker.errors import JobFailed


def fetch_input(spec: JobSpec, tmp: Path, storage: Storage, settings: Settings) -> Path:
    """The job's input file under ``tmp``: its upload (``input_key``) or ``input_url``."""
    limit = settings.max_upload_bytes
    if spec.input_key:
        dst = tmp / ("input" + Path(spec.input_key).suffix)
        try:
            storage.download(spec.input_key, dst)
        except StorageError as exc:
            raise JobFailed("input_missing", f"the upload is gone from storage: {exc}") from exc
        return dst
    if not spec.input_url:
        raise JobFailed("no_input", f"mode {spec.mode!r} needs an upload or an input URL")
    dst = tmp / "input"
    size = 0
    try:
        # Re-check the address at fetch time and pin the connection to it (DNS rebinding);
        # redirects are not followed, so a public URL cannot bounce to an internal host.
        target = pin(spec.input_url, allow_private=settings.webhook_allow_private,
                     what="audio_url")
    except UnsafeURLError as exc:
        raise JobFailed("unsafe_url", str(exc)) from exc
    extra = {"Host": target.host_header} if target.host_header else {}
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    try:
        with httpx.Client(timeout=settings.webhook_timeout_s * 3,
                          follow_redirects=False) as client:
            request = client.build_request("GET", target.url, headers=extra,
                                           extensions=extensions)
            r = client.send(request, stream=True)
            try:
                if r.status_code != 200:
                    raise JobFailed("fetch_failed", f"GET {spec.input_url} answered "
                                    f"{r.status_code}; the URL must serve the file directly "
                                    "(redirects are not followed)")
                with open(dst, "wb") as fh:
                    for chunk in r.iter_bytes(1 << 20):
                        size += len(chunk)
                        if size > limit:
                            raise JobFailed("input_too_large", f"{spec.input_url} is "
                                            f"larger than MMD_MAX_UPLOAD_BYTES={limit}")
                        fh.write(chunk)
            finally:
                r.close()
    except httpx.HTTPError as exc:
        raise JobFailed("fetch_failed", f"could not download {spec.input_url}: {exc}") from exc
    return dst


def decode_input(spec: JobSpec, src: Path, unet_cfg: Any,
                 settings: Settings) -> tuple[Any, Any, InputMedia]:
    """The condition of a conditional job: ``(video uint8 [F, H, W, 3], None, how)`` or
    ``(None, audio float32 [T], how)``. A clip shorter than the window (but over the
    gateway's ``MMD_MIN_CLIP_DURATION_S``) is padded; ``how.padded_s`` says by how much. Frame
    count, size, frame rate and sample rate are the model's (``unet_cfg``: a ``UNetConfig``)."""
    from worker import media

    frames, _channels, height, _width = unet_cfg.video_size
    if spec.input_url:  # fetched here, so the gateway never checked it: same checks now
        need: Need = "video" if spec.mode == "video-to-audio" else "audio"
        try:
            check_upload(src, need=need, settings=settings, start_s=spec.start_s,
                         span_s=spec.duration_s)
        except UploadRejected as exc:
            raise JobFailed(exc.code, f"{spec.input_url}: {exc.detail}") from exc
    max_bytes, timeout_s = settings.max_upload_bytes, settings.decode_timeout_s
    try:
        if spec.mode == "video-to-audio":
            video = media.decode_video_input(src, start_s=spec.start_s, num_frames=frames,
                                             fps=unet_cfg.fps, size=height, pad_end=True,
                                             max_bytes=max_bytes, timeout_s=timeout_s,
                                             max_frames=settings.max_decoded_frames,
                                             max_pixels=settings.max_video_width
                                             * settings.max_video_height)
            return video.frames, None, InputMedia(
                stream="video", padded_s=video.padded_s, width=video.width,
                height=video.height, rotation=video.orientation.rotation,
                mirrored=video.orientation.mirrored)
        audio = media.decode_audio_input(src, start_s=spec.start_s,
                                         num_samples=unet_cfg.audio_size[1],
                                         sample_rate=unet_cfg.sample_rate,
                                         max_bytes=max_bytes, timeout_s=timeout_s,
                                         max_samples=settings.max_decoded_samples)
    except media.MediaError:
        raise
    except Exception as exc:
        raise JobFailed("decode_failed", f"the {spec.mode.split('-')[0]} input could not be "
                        f"decoded ({type(exc).__name__}: {exc}); re-encode it (H.264 MP4 "
                        "or WAV)") from exc
    return None, audio.samples, InputMedia(stream="audio", padded_s=audio.padded_s,
                                           layout=audio.layout)
