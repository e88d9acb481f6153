"""The OpenAPI description of the multipart routes' bodies, derived from the models the routes
validate with, so that the schema advertises exactly the fields that are read:

- ``POST /video-to-audio`` and ``/audio-to-video``: the ``file`` part, a JSON ``params`` part, and
  each field of :class:`~service.schemas.ConditionalRequest` as a form field (nested fields as
  dotted names, ``sampler.steps``), as :func:`service.uploads.form_params` reads them;
- ``POST /uploads``: the ``file`` part only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from service.schemas import ConditionalRequest

FILE_PART: dict[str, Any] = {"type": "string", "format": "binary",
                             "description": "the media file (multipart part name `file`)"}


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's schema without its ``null`` alternative, title and null default."""
    out = {k: v for k, v in schema.items() if k not in ("anyOf", "title", "default")}
    variants = [v for v in schema.get("anyOf", []) if v.get("type") != "null"]
    if len(variants) == 1:
        out = {**variants[0], **out}
    if schema.get("default") is not None:
        out["default"] = schema["default"]
    return out


def form_fields(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """``model``'s fields as flat form fields: nested models become ``parent.child`` names."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    fields: dict[str, dict[str, Any]] = {}
    for name, prop in schema["properties"].items():
        ref = prop.get("$ref")
        if ref is None:
            fields[name] = _plain(prop)
            continue
        nested = defs[ref.rsplit("/", 1)[-1]]
        for sub, sub_prop in nested["properties"].items():
            fields[f"{name}.{sub}"] = _plain(sub_prop)
    return fields


def _doc(properties: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": properties,
        "additionalProperties": False}}}}}


def conditional_form_doc() -> dict[str, Any]:
    """``openapi_extra`` of the conditional routes."""
    return _doc({
        "file": FILE_PART,
        "params": {"type": "string", "description": "the parameters as one JSON object (the "
                   "fields below, nested: {\"sampler\": {\"steps\": 20}}); form fields given "
                   "as well override it"},
        **form_fields(ConditionalRequest),
    })


def upload_form_doc() -> dict[str, Any]:
    """``openapi_extra`` of ``POST /uploads``: only the file is read."""
    return _doc({"file": FILE_PART})
