"""``GET /jobs/{id}``, ``GET|HEAD /jobs/{id}/result``, ``POST /jobs/{id}/cancel``,
``DELETE /jobs/{id}``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from core.contract import JobStatus, JobView
from core.store import result_key
from service.auth import Owner
from service.deps import AppState, State, base_url
from service.errors import ApiError, ErrorResponse, responses
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


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, f"no job with id {job_id!r} (ids expire after MMD_RESULT_TTL_S)",
                    field="job_id")


def _check_owner(state: AppState, job_id: str, owner: str) -> None:
    """Another key's job answers exactly like an unknown id (404), so ids cannot be probed."""
    if not state.store.owned_by(job_id, owner):
        raise _not_found(job_id)


_RESULT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the MP4 (local storage; `Range` requests answer 206)",
          "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}},
    307: {"description": "S3 storage: a presigned URL of the MP4 in `Location`"},
    **responses(401, 404, 422),
    409: {"model": ErrorResponse, "description": "the job has no result: still queued or "
          "running (poll GET /jobs/{id}), or it failed or was canceled (`error.code` "
          "`job_failed` / `job_canceled`, the message carries the job's error)"},
}


@router.get("/{job_id}", response_model=JobView, responses=responses(401, 404, 422))
def get_job(job_id: str, request: Request, state: State, owner: Owner) -> JobView:
    """Status, progress, timestamps, queue position, error or result, and the request."""
    _check_owner(state, job_id, owner)
    view = state.store.view(job_id)
    if view is None:
        raise _not_found(job_id)
    return public_view(view, request, state)


def _no_result(view: JobView) -> ApiError:
    """409 for a job without a result, saying why: not finished yet, failed or canceled."""
    job_id = view.id
    if view.status is JobStatus.failed:
        why = f" ({view.error.code}: {view.error.message})" if view.error else ""
        return ApiError(409, f"job {job_id} failed{why}; it has no result. Fix the request and "
                        "submit it again", code="job_failed")
    if view.status is JobStatus.canceled:
        return ApiError(409, f"job {job_id} was canceled; it has no result. Submit it again "
                        "for one", code="job_canceled")
    return ApiError(409, f"job {job_id} is {view.status.value}, not succeeded yet; poll "
                    f"GET /jobs/{job_id} until status is 'succeeded'", code="job_not_finished")


@router.get("/{job_id}/result", response_class=Response, responses=_RESULT_RESPONSES)
def get_result(job_id: str, state: State, owner: Owner,
               sample: Annotated[int, Query(ge=0)] = 0) -> Response:
    """The MP4: streamed with range requests (local storage) or a redirect to a presigned URL
    (S3). ``?sample=i`` selects one of ``num_samples`` outputs."""
    return _result(job_id, state, owner, sample)


@router.head("/{job_id}/result", response_class=Response, responses=_RESULT_RESPONSES)
def head_result(job_id: str, state: State, owner: Owner,
                sample: Annotated[int, Query(ge=0)] = 0) -> Response:
    """``GET /jobs/{id}/result``'s status and headers (``Content-Length``, ``Content-Type``,
    ``ETag``; or the ``307`` redirect on S3) without the body."""
    return _result(job_id, state, owner, sample)


def _result(job_id: str, state: AppState, owner: str, sample: int) -> Response:
    _check_owner(state, job_id, owner)
    view = state.store.view(job_id)
    if view is None:
        raise _not_found(job_id)
    if view.status is not JobStatus.succeeded or view.result is None:
        raise _no_result(view)
    if sample >= view.result.num_samples:
        count = view.result.num_samples
        raise ApiError(404, f"sample={sample} is out of range: the job has {count} sample(s), "
                            f"0..{count - 1}", field="sample")
    key = result_key(job_id, sample)
    filename = f"{job_id}-{sample}.mp4"
    path = state.storage.local_path(key)
    if path is not None:
        return FileResponse(path, media_type="video/mp4", filename=filename)
    url = state.storage.presigned_url(key, filename=filename, content_type="video/mp4")
    if url is None:
        raise ApiError(404, f"the result file of job {job_id} is missing from storage",
                       code="result_missing")
    return RedirectResponse(url, status_code=307)


def _cancel(job_id: str, request: Request, state: AppState, owner: str) -> JobView:
    _check_owner(state, job_id, owner)
    if state.store.status(job_id) is JobStatus.canceled:  # canceled before this request
        JOBS_CANCEL_REQUESTS.labels(status=JobStatus.canceled.value).inc()
        raise _already(job_id, JobStatus.canceled)
    status = state.store.cancel(job_id)
    if status is None:
        raise _not_found(job_id)
    JOBS_CANCEL_REQUESTS.labels(status=status.value).inc()
    if status in (JobStatus.succeeded, JobStatus.failed):
        raise _already(job_id, status)
    view = state.store.view(job_id)
    assert view is not None
    return public_view(view, request, state)


def _already(job_id: str, status: JobStatus) -> ApiError:
    return ApiError(409, f"job {job_id} already {status.value}; nothing to cancel",
                    code=f"job_{status.value}")


_CANCEL_RESPONSES = responses(401, 404, 409, 422, s409="the job already finished (succeeded, "
                              "failed or canceled): nothing to cancel")


@router.post("/{job_id}/cancel", response_model=JobView, status_code=202,
             responses=_CANCEL_RESPONSES)
def cancel_job(job_id: str, request: Request, state: State, owner: Owner) -> JobView:
    """A queued job never runs; a running job stops within one sampler step (status turns
    ``canceled`` once the worker has stopped)."""
    return _cancel(job_id, request, state, owner)


@router.delete("/{job_id}", response_model=JobView, status_code=202,
               responses=_CANCEL_RESPONSES)
def delete_job(job_id: str, request: Request, state: State, owner: Owner) -> JobView:
    """Same as ``POST /jobs/{id}/cancel``."""
    return _cancel(job_id, request, state, owner)
