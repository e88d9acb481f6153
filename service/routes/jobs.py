"""``GET /jobs/{id}``, ``GET /jobs/{id}/result``, ``POST /jobs/{id}/cancel``,
``DELETE /jobs/{id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from core.contract import JobStatus, JobView
from core.store import result_key
from service.auth import Owner
from service.deps import AppState, State, base_url
from service.links import link_signer, with_signed_links
from service.metrics import JOBS_CANCEL_REQUESTS

router = APIRouter(prefix="/jobs", tags=["jobs"])


def _absolute(view: JobView, base: str) -> JobView:
    """Result URLs are stored as paths (the worker does not know the public address)."""
    if view.result is None:
        return view
    return view.model_copy(update={"result": view.result.absolute(base)})


def public_view(view: JobView, request: Request, state: AppState) -> JobView:
    """The job document as clients get it: absolute result URLs and signed playable links."""
    base = base_url(request, state.settings)
    return with_signed_links(_absolute(view, base), base, state, link_signer(request, state))


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(404, f"no job with id {job_id!r} (ids expire after MMD_RESULT_TTL_S)")


def _check_owner(state: AppState, job_id: str, owner: str) -> None:
    """Another key's job answers exactly like an unknown id (404), so ids cannot be probed."""
    if not state.store.owned_by(job_id, owner):
        raise _not_found(job_id)


@router.get("/{job_id}", response_model=JobView)
def get_job(job_id: str, request: Request, state: State, owner: Owner) -> JobView:
    """Status, progress, timestamps, queue position, error or result, and the request."""
    _check_owner(state, job_id, owner)
    view = state.store.view(job_id)
    if view is None:
        raise _not_found(job_id)
    return public_view(view, request, state)


@router.get("/{job_id}/result", response_class=Response,
            responses={200: {"content": {"video/mp4": {}}}, 307: {"description": "S3 URL"},
                       404: {"description": "unknown job"}, 409: {"description": "not done"}})
def get_result(job_id: str, state: State, owner: Owner,
               sample: Annotated[int, Query(ge=0)] = 0) -> Response:
    """The MP4: streamed with range requests (local storage) or a redirect to a presigned URL
    (S3). ``?sample=i`` selects one of ``num_samples`` outputs."""
    _check_owner(state, job_id, owner)
    view = state.store.view(job_id)
    if view is None:
        raise _not_found(job_id)
    if view.status is not JobStatus.succeeded or view.result is None:
        raise HTTPException(409, f"job {job_id} is {view.status.value}, not succeeded; poll "
                                 f"GET /jobs/{job_id} until status is 'succeeded'")
    if sample >= view.result.num_samples:
        raise HTTPException(
            404,
            f"sample={sample} is out of range: the job has "
            f"{view.result.num_samples} sample(s), 0..{view.result.num_samples - 1}",
        )
    key = result_key(job_id, sample)
    filename = f"{job_id}-{sample}.mp4"
    path = state.storage.local_path(key)
    if path is not None:
        return FileResponse(path, media_type="video/mp4", filename=filename)
    url = state.storage.presigned_url(key, filename=filename, content_type="video/mp4")
    if url is None:
        raise HTTPException(404, f"the result file of job {job_id} is missing from storage")
    return RedirectResponse(url, status_code=307)


def _cancel(job_id: str, request: Request, state: State, owner: str) -> JobView:
    _check_owner(state, job_id, owner)
    status = state.store.cancel(job_id)
    if status is None:
        raise _not_found(job_id)
    JOBS_CANCEL_REQUESTS.labels(status=status.value).inc()
    if status in (JobStatus.succeeded, JobStatus.failed):
        raise HTTPException(409, f"job {job_id} already {status.value}; nothing to cancel")
    view = state.store.view(job_id)
    assert view is not None
    return public_view(view, request, state)


@router.post("/{job_id}/cancel", response_model=JobView, status_code=202)
def cancel_job(job_id: str, request: Request, state: State, owner: Owner) -> JobView:
    """A queued job never runs; a running job stops within one sampler step (status turns
    ``canceled`` once the worker has stopped)."""
    return _cancel(job_id, request, state, owner)


@router.delete("/{job_id}", response_model=JobView, status_code=202)
def delete_job(job_id: str, request: Request, state: State, owner: Owner) -> JobView:
    """Same as ``POST /jobs/{id}/cancel``."""
    return _cancel(job_id, request, state, owner)
