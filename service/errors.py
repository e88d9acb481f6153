"""One error shape for every 4xx/5xx of the gateway, and the handlers that produce it.

Every error body is :class:`ErrorResponse`: ``{"error": {"code", "message", "field"?},
"detail"}``. ``detail`` repeats the message (FastAPI's usual key, kept for older clients; for a
request that fails validation it is FastAPI's list of errors). ``code`` is stable and
machine-readable (:data:`STATUS_CODES` by HTTP status unless the raise site names a finer one,
e.g. the upload checks' ``unsupported_codec``); ``field`` names the offending request field as
a dotted path (``sampler.steps``) when one is to blame.

Routes raise :class:`ApiError` (or FastAPI's ``HTTPException``, or ``UploadRejected``); the
handlers installed by :func:`install` turn each into the same body, and :func:`responses`
documents it in the OpenAPI schema for the statuses a route can answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.probe import UploadRejected

log = logging.getLogger(__name__)

STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}

# What each status means on this API (the OpenAPI response descriptions).
DESCRIPTIONS: dict[int, str] = {
    401: "missing or invalid API key (`WWW-Authenticate: Bearer`)",
    403: "a result link that is unsigned, changed or expired (`error.code` `link_rejected`)",
    404: "unknown id (or another API key's), or no such sample",
    409: "the job is not in a state that allows this (see `error.message`)",
    413: "upload, clip or video dimensions too large (`error.code`)",
    415: "not an accepted container or codec (`error.code`)",
    422: "invalid request: `error.field` names the field, `error.message` says why",
    429: "rate limit or active-job quota of the API key; retry after `Retry-After` seconds",
    503: "not ready (Redis unreachable or no worker ready)",
}


class ErrorInfo(BaseModel):
    """What went wrong, for programs (``code``) and people (``message``)."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="stable machine-readable code, e.g. invalid_request, "
                      "not_found, conflict, rate_limited, unsupported_codec")
    message: str = Field(description="what was wrong and what to do")
    field: str | None = Field(None, description="the request field to blame, as a dotted "
                              "path (sampler.steps, file); absent when no single field is")


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    model_config = ConfigDict(frozen=True)

    error: ErrorInfo
    detail: str | list[dict[str, Any]] = Field(
        description="the message again (FastAPI's usual key, kept for compatibility); for a "
        "request that fails validation, the list of validation errors")


class ApiError(HTTPException):
    """An HTTP error with an explicit ``code`` and ``field`` (both optional: the code defaults
    to :data:`STATUS_CODES`'s for the status)."""

    def __init__(self, status_code: int, message: str, *, code: str | None = None,
                 field: str | None = None, headers: Mapping[str, str] | None = None,
                 detail: Any = None) -> None:
        super().__init__(status_code, message, headers=dict(headers) if headers else None)
        self.message = message
        self.code = code or STATUS_CODES.get(status_code, "error")
        self.field = field
        self.body_detail = detail if detail is not None else message


def body(status_code: int, message: str, *, code: str | None = None, field: str | None = None,
         detail: Any = None) -> dict[str, Any]:
    """The JSON of :class:`ErrorResponse`."""
    info: dict[str, Any] = {"code": code or STATUS_CODES.get(status_code, "error"),
                            "message": message}
    if field:
        info["field"] = field
    return {"error": info, "detail": message if detail is None else detail}


def loc_path(loc: Sequence[Any]) -> str:
    """A pydantic ``loc`` as a dotted field path: ``("body", "sampler", "steps")`` ->
    ``sampler.steps`` (the location prefix ``body`` / ``query`` / ``path`` / ``header`` is
    dropped; list indices stay)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts)


def validation_error(errors: Iterable[Mapping[str, Any]]) -> ApiError:
    """A 422 ``invalid_request`` from pydantic/FastAPI validation errors: ``field`` is the first
    error's location, the message lists every error, ``detail`` keeps the list."""
    items = list(errors)
    detail = jsonable_encoder([{k: v for k, v in e.items() if k not in ("url", "ctx")}
                               for e in items])
    parts = []
    for e in items:
        if e.get("type") == "json_invalid":  # loc is ("body", <character position>)
            where = ""
            parts.append(f"the body is not valid JSON ({e.get('msg')} at character "
                         f"{e.get('loc', ('', '?'))[-1]}); send a JSON object")
            continue
        where = loc_path(e.get("loc", ()))
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg")))
    first = ""
    if items and items[0].get("type") != "json_invalid":
        first = loc_path(items[0].get("loc", ()))
    message = "; ".join(parts) or "invalid request"
    return ApiError(422, message, code="invalid_request", field=first or None, detail=detail)


def from_pydantic(exc: ValidationError, prefix: str = "") -> ApiError:
    """:func:`validation_error` of a pydantic ``ValidationError`` (multipart parameters);
    ``prefix`` is prepended to each location."""
    errors = exc.errors(include_url=False, include_context=False)
    if prefix:
        errors = [{**e, "loc": (prefix, *e["loc"])} for e in errors]
    return validation_error(errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    if isinstance(exc, ApiError):
        content = body(exc.status_code, exc.message, code=exc.code, field=exc.field,
                       detail=exc.body_detail)
    elif isinstance(exc.detail, list):  # a validation list raised by hand
        api = validation_error(exc.detail)
        content = body(exc.status_code, api.message, code=api.code, field=api.field,
                       detail=api.body_detail)
    elif exc.status_code == 404 and exc.detail == "Not Found":  # Starlette's routing
        content = body(404, f"no route {request.method} {request.url.path}; the API is "
                       "listed at /docs and /openapi.json")
    elif exc.status_code == 405 and exc.detail == "Method Not Allowed":
        content = body(405, f"{request.method} is not allowed on {request.url.path}; the "
                       "methods it takes are listed at /docs")
    else:
        content = body(exc.status_code, str(exc.detail))
    return JSONResponse(content, status_code=exc.status_code, headers=headers)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    api = validation_error(exc.errors())
    return JSONResponse(body(422, api.message, code=api.code, field=api.field,
                             detail=api.body_detail), status_code=422)


async def _upload_rejected(request: Request, exc: Exception) -> JSONResponse:
    """An upload's 4xx with the upload check's ``code`` (the upload was neither stored nor
    enqueued: it only ever lived in a temp file, already deleted)."""
    assert isinstance(exc, UploadRejected)
    return JSONResponse(body(exc.status_code, exc.detail, code=exc.code, field="file"),
                        status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(body(500, f"internal error ({type(exc).__name__}); the request was "
                             "not completed, retry it or report it with the time"),
                        status_code=500)


def install(app: FastAPI) -> None:
    """Route every error of ``app`` through the one shape."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(UploadRejected, _upload_rejected)
    app.add_exception_handler(Exception, _unexpected)


def responses(*statuses: int, **overrides: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries of :class:`ErrorResponse` for ``statuses`` (description
    from :data:`DESCRIPTIONS`, or ``overrides["s409"]`` for status 409)."""
    return {s: {"model": ErrorResponse,
                "description": overrides.get(f"s{s}", DESCRIPTIONS.get(s, "error"))}
            for s in statuses}
