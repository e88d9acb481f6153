"""Streaming multipart parsing: the file part goes to a temp file chunk by chunk (the size limit
is enforced while it streams), text fields are kept (small, bounded), nothing is held whole in
memory. The caller moves the temp file to storage.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from python_multipart.multipart import MultipartParser, parse_options_header

from core.probe import UploadRejected
from service.errors import ApiError

MAX_FIELDS_BYTES = 64 * 1024  # all non-file fields together
MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries allowed on top of the file limit


@dataclass
class ParsedForm:
    """Text fields and the (single) uploaded file of a multipart request."""

    fields: dict[str, str] = field(default_factory=dict)
    file_path: Path | None = None
    filename: str | None = None
    content_type: str | None = None
    file_bytes: int = 0
    sha256: str = ""

    def cleanup(self) -> None:
        if self.file_path is not None:
            self.file_path.unlink(missing_ok=True)


def too_large(max_bytes: int) -> UploadRejected:
    return UploadRejected(
        "upload_too_large",
        f"upload exceeds MMD_MAX_UPLOAD_BYTES={max_bytes} bytes; send a shorter clip "
        "(only the first seconds are used) or raise the limit",
    )


async def parse_multipart(request: Request, *, max_bytes: int, tmp_dir: Path | None = None,
                          file_field: str = "file") -> ParsedForm:
    """Stream ``request``'s multipart body. Raises 413 past ``max_bytes`` of file data, 422 for
    a non-multipart body, a file under another part name than ``file_field``, a second file,
    or oversized fields. A ``params`` part sent as a file (``-F params=@p.json``) is a field."""
    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    boundary = opts.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(422, f"expected a multipart/form-data body with a '{file_field}' part "
                            f"(curl -F {file_field}=@clip.mp4)", field=file_field)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + MULTIPART_OVERHEAD:
        raise too_large(max_bytes)

    form = ParsedForm()
    state: dict[str, Any] = {"headers": {}, "hname": b"", "hvalue": b"", "name": None,
                             "is_file": False, "buf": bytearray(), "fh": None, "field_bytes": 0}
    digest = hashlib.sha256()
    errors: list[HTTPException | UploadRejected] = []

    def on_part_begin() -> None:
        state.update(headers={}, hname=b"", hvalue=b"", name=None, is_file=False, buf=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["hname"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["hvalue"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["hname"].lower()] = state["hvalue"]
        state["hname"], state["hvalue"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode(errors="replace")
        state["name"] = name
        if name == file_field or (b"filename" in disp and name != "params"):
            if name != file_field:
                errors.append(ApiError(422, f"the file was sent as the multipart part {name!r}; "
                                       f"send it as the '{file_field}' part (curl -F "
                                       f"{file_field}=@clip.mp4)", field=file_field))
                return
            if form.file_path is not None:
                errors.append(ApiError(422, f"send exactly one '{file_field}' part",
                                       field=file_field))
                return
            state["is_file"] = True
            raw_name = disp.get(b"filename", b"").decode(errors="replace")
            form.filename = os.path.basename(raw_name) or "upload"
            form.content_type = state["headers"].get(b"content-type", b"").decode() or None
            fd, tmp = tempfile.mkstemp(prefix="mmd-upload-", dir=tmp_dir)
            form.file_path = Path(tmp)
            state["fh"] = os.fdopen(fd, "wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if errors:
            return
        chunk = data[start:end]
        if state["is_file"]:
            form.file_bytes += len(chunk)
            if form.file_bytes > max_bytes:
                errors.append(too_large(max_bytes))
                return
            digest.update(chunk)
            state["fh"].write(chunk)
        else:
            state["field_bytes"] += len(chunk)
            if state["field_bytes"] > MAX_FIELDS_BYTES:
                errors.append(ApiError(422, f"form fields exceed {MAX_FIELDS_BYTES} bytes"))
                return
            state["buf"] += chunk

    def on_part_end() -> None:
        if state["is_file"]:
            if state["fh"] is not None:
                state["fh"].close()
                state["fh"] = None
        elif state["name"]:
            form.fields[state["name"]] = state["buf"].decode("utf-8", errors="replace")

    parser = MultipartParser(boundary, callbacks={
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if errors:
                raise errors[0]
        parser.finalize()
        if errors:
            raise errors[0]
    except (HTTPException, UploadRejected):
        _close(state)
        form.cleanup()
        raise
    except Exception as exc:  # malformed multipart
        _close(state)
        form.cleanup()
        raise ApiError(422, f"malformed multipart body: {exc}") from exc
    _close(state)
    if form.file_path is None:
        raise ApiError(422, f"missing the file part '{file_field}' "
                            f"(curl -F {file_field}=@clip.mp4)", field=file_field)
    if form.file_bytes == 0:
        form.cleanup()
        raise UploadRejected("empty_upload", "the uploaded file is empty; send the media "
                                             "file's bytes (curl -F file=@clip.mp4)")
    form.sha256 = digest.hexdigest()
    return form


def _close(state: dict[str, Any]) -> None:
    if state.get("fh") is not None:
        state["fh"].close()
        state["fh"] = None


def form_params(fields: dict[str, str]) -> dict[str, Any]:
    """Turn form fields into a params dict: a JSON ``params`` part, then plain fields on top;
    nested fields as JSON (``sampler={"steps": 10}``) or dotted names (``sampler.steps=10``)."""
    params: dict[str, Any] = {}
    if "params" in fields:
        try:
            loaded = json.loads(fields["params"])
        except json.JSONDecodeError as exc:
            raise ApiError(422, f"the 'params' part is not valid JSON: {exc}",
                           field="params") from exc
        if not isinstance(loaded, dict):
            raise ApiError(422, "the 'params' part must be a JSON object", field="params")
        params.update(loaded)
    for name, value in fields.items():
        if name == "params" or value == "":
            continue
        if "." in name:
            head, tail = name.split(".", 1)
            nested = dict(params.get(head) or {})
            nested[tail] = value
            params[head] = nested
        elif name in ("sampler", "super_resolution") and value.lstrip().startswith("{"):
            try:
                params[name] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ApiError(422, f"field {name!r} is not valid JSON: {exc}",
                               field=name) from exc
        else:
            params[name] = value
    return params
