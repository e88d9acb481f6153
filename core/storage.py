"""Where uploads and result MP4s live: a local data directory or an S3-compatible bucket.

Keys are relative, slash-separated names such as ``uploads/<id>/input.mp4`` or
``results/<id>/sample_0.mp4``. Both backends stream: writers take chunks (bounded memory) and
readers copy to a local file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from core.settings import Settings

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-./]*$")
CHUNK_BYTES = 1024 * 1024


class StorageError(RuntimeError):
    """A storage operation failed (missing object, unreachable bucket, ...)."""


def check_key(key: str) -> str:
    """Reject keys that could escape the data dir (``..``, absolute paths, odd characters)."""
    if not _KEY_RE.match(key) or ".." in key.split("/") or "//" in key:
        raise ValueError(f"invalid storage key {key!r}: expected relative 'a/b/c.ext' names")
    return key


class Storage(ABC):
    """The operations the gateway and the worker need; see :func:`make_storage`."""

    @abstractmethod
    @contextmanager
    def writer(self, key: str, *, content_type: str) -> Iterator[IO[bytes]]:
        """A binary file to write ``key`` to; the object appears only when the block exits
        without an exception (nothing is left behind otherwise)."""

    def put_file(self, key: str, path: Path, *, content_type: str) -> int:
        """Copy a local file to ``key`` in chunks; returns its size in bytes."""
        with open(path, "rb") as src, self.writer(key, content_type=content_type) as dst:
            shutil.copyfileobj(src, dst, CHUNK_BYTES)
        return path.stat().st_size

    @abstractmethod
    def download(self, key: str, path: Path) -> None:
        """Copy ``key`` to a local file (streamed). Raises :class:`StorageError` if missing."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """Size in bytes, or None when the object does not exist."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    def local_path(self, key: str) -> Path | None:
        """A path the gateway can stream with range requests (local backend only)."""
        return None

    def presigned_url(self, key: str, *, filename: str, content_type: str) -> str | None:
        """A time-limited download URL (S3 backend only)."""
        return None


PARTIAL_DIR = ".partial"  # never a key (keys start with [A-Za-z0-9_-])
PARTIAL_MAX_AGE_S = 6 * 3600


class LocalStorage(Storage):
    """Objects are files under ``root``; writes go to a temp file under ``root/.partial`` and are
    renamed into place (atomic: a reader sees the whole object or none). A writer killed
    mid-write (``kill -9``) leaves only a ``.partial`` file, never a truncated object; those
    older than ``PARTIAL_MAX_AGE_S`` are removed when a storage is opened."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.partial = self.root / PARTIAL_DIR
        self.partial.mkdir(exist_ok=True)
        self.sweep_partials(PARTIAL_MAX_AGE_S)

    def sweep_partials(self, older_than_s: float) -> int:
        """Remove temp files of writers that died; returns how many were removed."""
        cutoff = time.time() - older_than_s
        removed = 0
        for p in self.partial.glob("*.part"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextmanager
    def writer(self, key: str, *, content_type: str) -> Iterator[IO[bytes]]:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.partial, prefix="tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def download(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise StorageError(f"object {key!r} not found under {self.root}")
        shutil.copyfile(src, path)

    def size(self, key: str) -> int | None:
        p = self._path(key)
        return p.stat().st_size if p.is_file() else None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        p = self._path(key)
        return p if p.is_file() else None


class S3Storage(Storage):
    """An S3-compatible bucket through boto3 (path-style addressing, works with SeaweedFS/MinIO).

    Writes spool to a temp file (1 MiB in memory at most) and upload with boto3's multipart
    transfer, so a large upload never sits whole in memory.
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        presign_expiry_s: int = 3600,
    ) -> None:
        """``public_endpoint_url``: the S3 address clients outside the service network use
        (presigned result URLs are signed for that host); ``None`` = ``endpoint_url``."""
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.presign_expiry_s = presign_expiry_s
        def client(url: str | None) -> Any:
            return _s3_client(url, region=region, access_key_id=access_key_id,
                              secret_access_key=secret_access_key)

        self.client: Any = client(endpoint_url)
        # Presigning is offline (no request is sent), and SigV4 signs the Host: a URL for the
        # public host must be signed by a client configured with that host.
        self.presign_client: Any = (client(public_endpoint_url) if public_endpoint_url
                                    else self.client)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def writer(self, key: str, *, content_type: str) -> Iterator[IO[bytes]]:
        with tempfile.SpooledTemporaryFile(max_size=CHUNK_BYTES) as spool:
            yield spool
            spool.seek(0)
            try:
                self.client.upload_fileobj(
                    spool, self.bucket, self._key(key), ExtraArgs={"ContentType": content_type}
                )
            except Exception as exc:  # botocore errors carry the endpoint and bucket
                raise StorageError(f"upload of {key!r} to s3://{self.bucket} failed: "
                                   f"{exc}") from exc

    def download(self, key: str, path: Path) -> None:
        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except Exception as exc:
            raise StorageError(
                f"download of s3://{self.bucket}/{self._key(key)} failed: {exc}"
            ) from exc

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(
                f"head of s3://{self.bucket}/{self._key(key)} failed: {exc}"
            ) from exc
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def presigned_url(self, key: str, *, filename: str, content_type: str) -> str | None:
        return str(
            self.presign_client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(key),
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                },
                ExpiresIn=self.presign_expiry_s,
            )
        )


def _s3_client(
    endpoint_url: str | None,
    *,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


def make_storage(settings: Settings) -> Storage:
    """The backend named by ``MMD_STORAGE_BACKEND``."""
    if settings.storage_backend == "local":
        return LocalStorage(settings.data_dir)
    secret = settings.s3_secret_access_key
    return S3Storage(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        public_endpoint_url=settings.s3_public_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        prefix=settings.s3_prefix,
        presign_expiry_s=settings.s3_presign_expiry_s,
    )
