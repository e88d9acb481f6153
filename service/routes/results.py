"""``GET /results/{id}/{sample}.mp4?expires=&sig=``: a result MP4 by signed link, with no bearer
header (``<video src>`` cannot send one). The link is the ``signed_url`` of a job's result
(:mod:`core.signing`); a changed, unsigned or expired link gets 403."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from core.signing import LinkRejected
from core.store import result_key
from service.deps import State
from service.errors import ApiError, responses
from service.links import link_signer

router = APIRouter(tags=["jobs"])


@router.get("/results/{job_id}/{sample}.mp4", response_class=Response,
            responses={200: {"content": {"video/mp4": {}}}, 307: {"description": "S3 URL"},
                       **responses(403, 404, 422)})
def signed_result(job_id: str, sample: int, request: Request, state: State,
                  expires: Annotated[int | None, Query()] = None,
                  sig: Annotated[str | None, Query()] = None) -> Response:
    """The MP4 of a signed link (range requests on local storage)."""
    if expires is None or not sig:
        raise ApiError(403, "this result link is not signed: use the result's signed_url "
                            "from GET /jobs/{id}, or GET /jobs/{id}/result with your key",
                       code="link_rejected")
    try:
        link_signer(request, state).verify(job_id, sample, expires, sig)
    except LinkRejected as exc:
        raise ApiError(403, str(exc), code="link_rejected") from exc
    key = result_key(job_id, sample)
    filename = f"{job_id}-{sample}.mp4"
    path = state.storage.local_path(key)
    if path is not None:
        return FileResponse(path, media_type="video/mp4", filename=filename,
                            content_disposition_type="inline")
    url = state.storage.presigned_url(key, filename=filename, content_type="video/mp4")
    if url is None:
        raise ApiError(404, f"the result file of job {job_id} is gone from storage "
                            "(expired after MMD_RESULT_TTL_S or deleted)")
    return RedirectResponse(url, status_code=307)
