"""Retention of storage objects: results (``results/<job>/...``) and uploads
(``uploads/<id>/...``) older than ``MMD_RESULT_TTL_S`` are deleted by :func:`sweep`.

Job records and upload metadata in Redis expire on their own (TTL ``MMD_RESULT_TTL_S``, set when
written and renewed when a job finishes); the objects they point to are removed by this sweep,
run by ``mmd cleanup`` (a cron job / k8s CronJob, or ``--every`` for a loop). An object's age is
its modification time (local files) or ``LastModified`` (S3).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from core.storage import LocalStorage, S3Storage, Storage

log = logging.getLogger(__name__)

SWEPT_PREFIXES = ("results/", "uploads/")


@dataclass(frozen=True)
class SweepReport:
    """What one sweep saw and removed."""

    scanned: int
    deleted: int
    deleted_bytes: int


def _local_objects(storage: LocalStorage, prefix: str) -> Iterator[tuple[str, float, int]]:
    base = storage.root / prefix
    if not base.is_dir():
        return
    for path in base.rglob("*"):
        if path.is_file():
            st = path.stat()
            yield path.relative_to(storage.root).as_posix(), st.st_mtime, st.st_size


def _s3_objects(storage: S3Storage, prefix: str) -> Iterator[tuple[str, float, int]]:
    full = f"{storage.prefix}/{prefix}" if storage.prefix else prefix
    strip = len(storage.prefix) + 1 if storage.prefix else 0
    pages = storage.client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket,
                                                                     Prefix=full)
    for page in pages:
        for obj in page.get("Contents", []):
            modified: datetime = obj["LastModified"]
            yield obj["Key"][strip:], modified.timestamp(), int(obj.get("Size", 0))


def list_objects(storage: Storage, prefix: str) -> Iterator[tuple[str, float, int]]:
    """``(key, modified unix time, bytes)`` of every object under ``prefix``."""
    if isinstance(storage, LocalStorage):
        return _local_objects(storage, prefix)
    if isinstance(storage, S3Storage):
        return _s3_objects(storage, prefix)
    raise TypeError(f"no listing for storage {type(storage).__name__}; use local or s3")


def sweep(storage: Storage, max_age_s: float, *, now: float | None = None,
          dry_run: bool = False) -> SweepReport:
    """Delete results and uploads last modified more than ``max_age_s`` seconds before ``now``."""
    cutoff = (time.time() if now is None else now) - max_age_s
    scanned = deleted = deleted_bytes = 0
    for prefix in SWEPT_PREFIXES:
        for key, modified, size in list(list_objects(storage, prefix)):
            scanned += 1
            if modified >= cutoff:
                continue
            if not dry_run:
                storage.delete(key)
            deleted += 1
            deleted_bytes += size
    if isinstance(storage, LocalStorage) and not dry_run:
        _remove_empty_dirs(storage)
    log.info("retention sweep: %d objects scanned, %d deleted (%d bytes)%s", scanned, deleted,
             deleted_bytes, " [dry run]" if dry_run else "")
    return SweepReport(scanned=scanned, deleted=deleted, deleted_bytes=deleted_bytes)


def _remove_empty_dirs(storage: LocalStorage) -> None:
    for prefix in SWEPT_PREFIXES:
        base = storage.root / prefix
        if not base.is_dir():
            continue
        for d in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                d.rmdir()
            except OSError:
                continue
