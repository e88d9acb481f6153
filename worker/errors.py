"""How a job's failure is recorded: :class:`JobFailed` carries a code of
``core.contract.ERROR_CODES``; :func:`job_error` maps any exception to the ``JobError`` stored."""

from __future__ import annotations

import logging

from rq.timeouts import JobTimeoutException

from core.contract import JobError
from core.storage import StorageError

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """A failure with a code for ``GET /jobs/{id}`` (bad input, storage, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def job_error(exc: BaseException, *, job_id: str, timeout_s: int) -> JobError:
    """The recorded error of a job that raised ``exc`` (not a cancellation): its own code
    (:class:`JobFailed`, the media checks' ``MediaError`` / ``UploadRejected``), else one by kind;
    unexpected exceptions are logged with their traceback."""
    code = getattr(exc, "code", None)
    if isinstance(exc, JobFailed | ValueError) and isinstance(code, str):
        return JobError(code=code, message=str(exc))
    if isinstance(exc, ValueError):  # the pipeline's input validation
        return JobError(code="invalid_request", message=str(exc))
    if isinstance(exc, StorageError):
        return JobError(code="storage_error", message=str(exc))
    if isinstance(exc, JobTimeoutException):  # RQ's job timeout (SIGALRM in the worker)
        return JobError(code="timeout", message=f"the job ran past MMD_JOB_TIMEOUT_S={timeout_s} "
                        "s; use fewer steps or samples")
    log.error("job %s failed", job_id, exc_info=exc)
    return JobError(code="internal", message=f"{type(exc).__name__}: {exc}")
