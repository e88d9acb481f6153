"""``mmd fetch-weights``: put checkpoints into a local folder before the worker starts.

Each source is an ``s3://bucket/key`` URI (downloaded with boto3, endpoint and credentials from the
same ``MMD_S3_*`` settings as the rest of the service, else boto3's usual chain) or a local path
(copied). A source may end in ``#sha256=<64 hex digits>``; the file is then verified and a
mismatch is an error (the partial download is removed). Idempotent: a file already in the target
folder is skipped when its sha256 matches (or, with no hash given, when its size matches the
source). Files are written to a temporary name and renamed only once complete and verified, so a
killed init container never leaves a truncated checkpoint behind.

Example (a Kubernetes init container)::

    mmd fetch-weights --dest /weights \\
        s3://mmd-weights/landscape/base.pt#sha256=3f...  s3://mmd-weights/landscape/sr.pt

No torch here: this module runs in the gateway image too.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1024 * 1024
Action = Literal["downloaded", "copied", "skipped"]


class FetchError(ValueError):
    """A source could not be fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class Source:
    """One thing to fetch: ``uri`` is ``s3://bucket/key`` or a local path."""

    uri: str
    sha256: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def filename(self) -> str:
        name = self.uri.rstrip("/").rsplit("/", 1)[-1]
        if not name:
            raise FetchError(f"source {self.uri!r} names no file; give s3://bucket/key or a path")
        return name


@dataclass(frozen=True)
class FetchResult:
    path: Path
    action: Action
    sha256: str
    size: int


def parse_source(spec: str) -> Source:
    """``"s3://b/k.pt#sha256=<hex>"`` -> ``Source("s3://b/k.pt", "<hex>")``."""
    uri, sep, fragment = spec.partition("#")
    sha: str | None = None
    if sep:
        key, _, value = fragment.partition("=")
        value = value.strip().lower()
        if key != "sha256" or not _SHA256_RE.match(value):
            raise FetchError(f"bad source {spec!r}: the suffix must be '#sha256=' followed by "
                             "64 hex digits (as printed by `sha256sum FILE`)")
        sha = value
    if not uri:
        raise FetchError(f"bad source {spec!r}: empty URI; give s3://bucket/key or a local path")
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        if not bucket or not key or key.endswith("/"):
            raise FetchError(f"bad S3 URI {uri!r}: expected s3://bucket/path/to/file.pt")
    elif "://" in uri:
        raise FetchError(f"unsupported URI scheme in {uri!r}: use s3://bucket/key or a local path")
    return Source(uri, sha)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def make_s3_client(*, endpoint_url: str | None = None, region: str | None = None,
                   access_key_id: str | None = None,
                   secret_access_key: str | None = None) -> Any:
    """A boto3 S3 client; ``None`` values fall back to boto3's own chain (env, IAM role)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=region,
        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
        config=Config(retries={"max_attempts": 5, "mode": "standard"},
                      s3={"addressing_style": "path"} if endpoint_url else None),
    )


def client_from_settings() -> Any:
    """An S3 client configured from ``MMD_S3_ENDPOINT_URL`` / ``MMD_S3_REGION`` /
    ``MMD_S3_ACCESS_KEY_ID`` / ``MMD_S3_SECRET_ACCESS_KEY``."""
    from core.settings import Settings

    s = Settings()
    secret = s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None
    return make_s3_client(endpoint_url=s.s3_endpoint_url, region=s.s3_region,
                          access_key_id=s.s3_access_key_id, secret_access_key=secret)


def _already_there(target: Path, source: Source, expected_size: int | None) -> str | None:
    """The file's sha256 when ``target`` can be kept as it is, else None."""
    if not target.is_file():
        return None
    if source.sha256 is not None:
        actual = sha256_file(target)
        if actual == source.sha256:
            return actual
        log.warning("%s exists but its sha256 is %s, expected %s: fetching it again",
                    target, actual, source.sha256)
        return None
    if expected_size is not None and target.stat().st_size == expected_size:
        return sha256_file(target)
    return None


def _s3_size(client: Any, bucket: str, key: str, uri: str) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise FetchError(f"{uri} does not exist (no such key); check the bucket and key, "
                             "e.g. `aws s3 ls s3://<bucket>/<prefix>/`") from exc
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise FetchError(f"access to {uri} denied ({code}); check MMD_S3_ACCESS_KEY_ID / "
                             "MMD_S3_SECRET_ACCESS_KEY") from exc
        raise FetchError(f"cannot read {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise FetchError(f"cannot reach S3 for {uri}: {exc}; check MMD_S3_ENDPOINT_URL") from exc
    return int(head["ContentLength"])


def fetch(source: Source, dest_dir: Path, *, s3_client: Any = None,
          force: bool = False) -> FetchResult:
    """Fetch one source into ``dest_dir`` (created if needed) and verify it."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / source.filename
    if source.is_s3:
        if s3_client is None:
            raise FetchError(f"{source.uri} needs an S3 client (configure MMD_S3_ENDPOINT_URL)")
        bucket, _, key = source.uri[5:].partition("/")
        expected_size: int | None = _s3_size(s3_client, bucket, key, source.uri)
    else:
        local = Path(source.uri)
        if not local.is_file():
            raise FetchError(f"local source {local} does not exist or is not a file; "
                             "mount the checkpoint folder or give an s3:// URI")
        expected_size = local.stat().st_size
        if local.resolve() == target.resolve():
            force = False  # already in place: only verify
    if not force:
        kept = _already_there(target, source, expected_size)
        if kept is not None:
            log.info("%s already present and verified: skipped", target)
            return FetchResult(target, "skipped", kept, target.stat().st_size)
    partial = dest_dir / f".{target.name}.partial-{os.getpid()}"
    try:
        if source.is_s3:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                s3_client.download_file(bucket, key, str(partial))
            except (BotoCoreError, ClientError) as exc:
                raise FetchError(f"download of {source.uri} failed: {exc}") from exc
            action: Action = "downloaded"
        else:
            shutil.copyfile(local, partial)
            action = "copied"
        actual = sha256_file(partial)
        if source.sha256 is not None and actual != source.sha256:
            raise FetchError(f"sha256 mismatch for {source.uri}: expected {source.sha256}, got "
                             f"{actual}; the object is corrupt or the hash is for another file")
        size = partial.stat().st_size
        if expected_size is not None and size != expected_size:
            raise FetchError(f"{source.uri}: got {size} bytes, expected {expected_size}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("%s %s -> %s (%d bytes, sha256 %s)", action, source.uri, target, size, actual)
    return FetchResult(target, action, actual, size)


def fetch_all(specs: list[str], dest_dir: Path, *, s3_client: Any = None,
              force: bool = False) -> list[FetchResult]:
    """Parse every spec first (so a typo fails before any download), then fetch in order."""
    sources = [parse_source(s) for s in specs]
    names = [s.filename for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FetchError(f"two sources would write the same file name(s) {dupes} into "
                         f"{dest_dir}; rename the objects")
    if s3_client is None and any(s.is_s3 for s in sources):
        s3_client = client_from_settings()
    return [fetch(s, dest_dir, s3_client=s3_client, force=force) for s in sources]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="s3://bucket/key or a local path, optionally ending in "
                             "#sha256=<hex>")
    parser.add_argument("--dest", type=Path, required=True,
                        help="target folder (e.g. the weights volume, /weights)")
    parser.add_argument("--force", action="store_true",
                        help="fetch again even when a verified copy is present")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=os.environ.get("MMD_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        results = fetch_all(list(args.sources), args.dest, force=args.force)
    except FetchError as exc:
        print(f"mmd fetch-weights: error: {exc}", file=sys.stderr)
        return 1
    for r in results:
        print(f"{r.action:10s} {r.path}  sha256={r.sha256}  {r.size} bytes")
    return 0
