"""A job's outputs: each sample muxed to an MP4 (H.264 + AAC), then stored under
``core.store.result_key`` and read back before the job may succeed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from core.contract import SampleFile, result_url
from core.storage import Storage, StorageError
from core.store import result_key


def mux_samples(gen: Any, tmp: Path) -> list[Path]:
    """One MP4 under ``tmp`` per sample of ``gen`` (a ``model.pipeline.GenerationResult``) at
    its (the model's) frame rate, the audio resampled to the MP4's rate and fitted to the
    video's duration (:func:`worker.muxing.fit_audio`)."""
    from worker import media

    paths = []
    for i in range(gen.frames.shape[0]):
        path = tmp / f"sample_{i}.mp4"
        media.mux_mp4(path, gen.frames[i], gen.audio[i], fps=gen.fps,
                      sample_rate=gen.sample_rate)
        paths.append(path)
    return paths


def upload_samples(job_id: str, paths: list[Path], storage: Storage) -> list[SampleFile]:
    """Store each MP4; a sample counts only once it reads back at its full size."""
    samples = []
    for i, path in enumerate(paths):
        digest = sha256_of(path)
        key = result_key(job_id, i)
        size = storage.put_file(key, path, content_type="video/mp4")
        stored = storage.size(key)  # succeeded only once the object is readable
        if stored != size:
            raise StorageError(f"result {key!r} reads back as {stored} bytes after writing "
                               f"{size}; check the storage backend")
        samples.append(SampleFile(url=result_url(job_id, i), bytes=size, sha256=digest))
    return samples


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
