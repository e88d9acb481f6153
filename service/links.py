"""The playable links a job's result gets when the gateway answers (``signed_url``): a signed,
expiring gateway link on local storage (:mod:`core.signing`), the presigned URL on S3."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import Request

from core.contract import JobView
from core.signing import LinkSigner
from core.store import result_key
from service.deps import AppState


def link_signer(request: Request, state: AppState) -> LinkSigner:
    """The app's signer (created on first use; it caches the key)."""
    signer: LinkSigner | None = getattr(request.app.state, "mmd_link_signer", None)
    if signer is None:
        signer = LinkSigner(state.settings, state.redis)
        request.app.state.mmd_link_signer = signer
    return signer


def with_signed_links(view: JobView, base: str, state: AppState, signer: LinkSigner) -> JobView:
    """``view`` with ``signed_url`` on its result and on each sample (unchanged without a
    result). ``base`` is the gateway's public base URL."""
    if view.result is None:
        return view
    r = view.result
    now = time.time()
    expires = 0
    urls: list[str] = []
    for i in range(r.num_samples):
        name = f"{view.id}-{i}.mp4"
        presigned = state.storage.presigned_url(result_key(view.id, i), filename=name,
                                                content_type=r.content_type)
        if presigned is not None:
            urls.append(presigned)
            expires = int(now) + state.settings.s3_presign_expiry_s
        else:
            path, expires = signer.sign(view.id, i, now=now)
            urls.append(base + path)
    samples = [s.model_copy(update={"signed_url": u}) for s, u in zip(r.samples, urls, strict=True)]
    result = r.model_copy(update={
        "signed_url": urls[0] if urls else None, "samples": samples,
        "signed_url_expires_at": datetime.fromtimestamp(expires, UTC) if urls else None})
    return view.model_copy(update={"result": result})
