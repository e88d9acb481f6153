"""One error shape (service/errors.py) on every 4xx/5xx, and the schema that documents it;
the job-state answers of GET/HEAD /result and cancel; multipart part names."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.contract import JobError, JobResult, SampleFile
from core.storage import LocalStorage
from core.store import JobStore, result_key
from service.app import create_app
from service.errors import ErrorResponse
from service.schemas import ConditionalRequest
from service.uploads import form_params
from tests.helpers.auth import keyed_client
from tests.helpers.media import write_clip

JOB = {"seed": 1, "sampler": {"steps": 3}}


def _error(r: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """Check ``r`` is ``status`` with the one error shape; returns ``error``."""
    assert r.status_code == status, r.text
    body = r.json()
    ErrorResponse.model_validate(body)  # the documented model parses it
    assert body["error"]["code"] == code, body
    assert body["error"].get("field") == field, body
    assert len(body["error"]["message"]) > 10
    return dict(body["error"])


def test_validation_errors_name_the_field_path(client: TestClient) -> None:
    r = client.post("/generate", json={"sampler": {"steps": 0}})
    err = _error(r, 422, "invalid_request", "sampler.steps")
    assert "greater than or equal to 1" in err["message"]
    assert isinstance(r.json()["detail"], list) and r.json()["detail"][0]["loc"][-1] == "steps"
    _error(client.post("/generate", content=b"{", headers={"content-type": "application/json"}),
           422, "invalid_request", None)


@pytest.mark.parametrize(("body", "field"), [
    ({"num_samples": 3}, "num_samples"),
    ({"sampler": {"steps": 51}}, "sampler.steps"),
    ({"model": "nope"}, "model"),
    ({"mode": "audio-to-video", "upload_id": "missing"}, "upload_id"),
    ({"webhook_url": "http://127.0.0.1:9/x"}, None),  # allowed: webhook_allow_private
])
def test_handwritten_422s_carry_the_field(client: TestClient, body: dict[str, Any],
                                          field: str | None) -> None:
    r = client.post("/generate", json=body)
    if field is None:
        assert r.status_code == 202
        return
    _error(r, 422, "invalid_request", field)
    assert r.json()["detail"] == r.json()["error"]["message"]


def test_routing_and_auth_errors_have_the_shape(client: TestClient, settings: Any) -> None:
    _error(client.get("/nowhere"), 404, "not_found")
    _error(client.put("/generate", json=JOB), 405, "method_not_allowed")
    _error(client.get("/jobs/nope"), 404, "not_found", "job_id")
    keyed = keyed_client(settings)
    r = keyed.post("/generate", json=JOB)
    _error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_readyz_503_has_the_shape_and_the_reason(client: TestClient) -> None:
    r = client.get("/readyz")  # no worker heartbeat in this test
    _error(r, 503, "unavailable")
    assert r.json()["status"] == "unready" and "no worker" in r.json()["reason"]


def test_rate_limit_error_has_code_and_retry_after(settings: Any) -> None:
    limited = TestClient(create_app(settings.model_copy(update={"rate_limit_per_minute": 1})))
    assert limited.post("/generate", json=JOB).status_code == 202
    r = limited.post("/generate", json=JOB)
    _error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1


def test_file_under_another_part_name_is_422_naming_file(client: TestClient, tmp_path) -> None:
    clip = write_clip(tmp_path / "c.mp4")
    with clip.open("rb") as fh:
        r = client.post("/video-to-audio", files={"video": ("c.mp4", fh, "video/mp4")})
    err = _error(r, 422, "invalid_request", "file")
    assert "'video'" in err["message"] and "'file'" in err["message"]
    with clip.open("rb") as fh:
        r = client.post("/uploads", files={"clip": ("c.mp4", fh, "video/mp4")})
    _error(r, 422, "invalid_request", "file")
    # a params part sent as a file is still the parameters
    with clip.open("rb") as fh:
        r = client.post("/video-to-audio", files={
            "file": ("c.mp4", fh, "video/mp4"),
            "params": ("p.json", b'{"seed": 4, "sampler": {"steps": 2}}', "application/json")})
    assert r.status_code == 202, r.text
    assert client.get(f"/jobs/{r.json()['id']}").json()["request"]["seed"] == 4


def test_upload_rejections_keep_their_code(client: TestClient) -> None:
    r = client.post("/uploads", files={"file": ("a.txt", b"hello, this is text" * 20)})
    _error(r, 415, "unsupported_media_type", "file")


def _finished(store: JobStore, client: TestClient) -> str:
    job_id = client.post("/generate", json=JOB).json()["id"]
    assert store.claim(job_id)
    return str(job_id)


def test_result_of_failed_or_canceled_job_says_why(client: TestClient, store: JobStore) -> None:
    failed = _finished(store, client)
    store.fail(failed, JobError(code="decode_failed", message="the clip could not be decoded"))
    err = _error(client.get(f"/jobs/{failed}/result"), 409, "job_failed")
    assert "failed" in err["message"] and "could not be decoded" in err["message"]
    canceled = client.post("/generate", json=JOB).json()["id"]
    assert client.post(f"/jobs/{canceled}/cancel").status_code == 202
    err = _error(client.get(f"/jobs/{canceled}/result"), 409, "job_canceled")
    assert "was canceled" in err["message"]
    _error(client.post(f"/jobs/{canceled}/cancel"), 409, "job_canceled")
    queued = client.post("/generate", json=JOB).json()["id"]
    err = _error(client.get(f"/jobs/{queued}/result"), 409, "job_not_finished")
    assert "poll" in err["message"]


def test_head_result(client: TestClient, store: JobStore, settings: Any, tmp_path) -> None:
    job_id = _finished(store, client)
    assert client.head(f"/jobs/{job_id}/result").status_code == 409
    data = b"\x00\x00\x00\x18ftypmp42" + bytes(1000)
    src = tmp_path / "r.mp4"
    src.write_bytes(data)
    LocalStorage(settings.data_dir).put_file(result_key(job_id, 0), src, content_type="video/mp4")
    sample = SampleFile(url=f"/jobs/{job_id}/result", bytes=len(data), sha256="0" * 64)
    store.succeed(job_id, JobResult(
        url=sample.url, bytes=len(data), duration_s=1.6, sha256=sample.sha256,
        random_weights=True, model="default", width=64, height=64, fps=10, sample_rate=16000,
        samples=[sample]))
    r = client.head(f"/jobs/{job_id}/result")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == len(data)
    assert r.headers["content-type"] == "video/mp4"
    assert client.get(f"/jobs/{job_id}/result").content == data


# --- the schema ----------------------------------------------------------------------------
EXPECTED_ERRORS = {
    ("post", "/generate"): {401, 422, 429},
    ("post", "/video-to-audio"): {401, 413, 415, 422, 429},
    ("post", "/audio-to-video"): {401, 413, 415, 422, 429},
    ("post", "/uploads"): {401, 413, 415, 422, 429},
    ("get", "/jobs/{job_id}"): {401, 404, 422},
    ("get", "/jobs/{job_id}/result"): {401, 404, 409, 422},
    ("head", "/jobs/{job_id}/result"): {401, 404, 409, 422},
    ("post", "/jobs/{job_id}/cancel"): {401, 404, 409, 422},
    ("delete", "/jobs/{job_id}"): {401, 404, 409, 422},
}


def test_schema_documents_the_error_model_per_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    ref = "#/components/schemas/ErrorResponse"
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for (method, path), statuses in EXPECTED_ERRORS.items():
        responses = schema["paths"][path][method]["responses"]
        for status in statuses:
            content = responses[str(status)]["content"]["application/json"]["schema"]
            assert content == {"$ref": ref}, (method, path, status)
        for status, resp in responses.items():  # every response is typed
            assert "content" in resp or status == "307", (method, path, status)
    info = schema["components"]["schemas"]["ErrorInfo"]
    assert set(info["properties"]) == {"code", "message", "field"}
    assert info["required"] == ["code", "message"]


def _json_walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _json_walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _json_walk(v)


def test_schema_enums_have_distinct_names_and_integer_bounds(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for node in _json_walk(schema):
        if "enum" in node and "dpm_solver++" in node["enum"]:
            names = node["x-enum-varnames"]
            assert len(set(names)) == len(node["enum"]) == 4
            assert names[node["enum"].index("dpm_solver++")] == "DPM_SOLVER_PP"
        if node.get("type") == "integer":
            for bound in ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum"):
                if bound in node:
                    assert isinstance(node[bound], int), node
    seed = schema["components"]["schemas"]["GenerateRequest"]["properties"]["seed"]
    assert seed["anyOf"][0]["maximum"] == 2**53 - 1


def test_multipart_schemas_list_what_is_read(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = "requestBody"
    upload = schema["paths"]["/uploads"]["post"][body]["content"]["multipart/form-data"]
    assert set(upload["schema"]["properties"]) == {"file"}
    conditional = schema["paths"]["/video-to-audio"]["post"][body]["content"][
        "multipart/form-data"]["schema"]["properties"]
    assert {"file", "params", "seed", "start_s", "sampler.steps", "sampler.name",
            "super_resolution.enabled", "guidance_scale"} <= set(conditional)
    # every advertised field is one the route validates: a sample value of each passes
    samples = {"integer": "1", "number": "0.5", "boolean": "true", "string": "x"}
    for name, prop in conditional.items():
        if name in ("file", "params"):
            continue
        value = prop["enum"][0] if "enum" in prop else samples[prop["type"]]
        if prop.get("format") == "uri":
            value = "http://example.com/hook"
        ConditionalRequest.model_validate(form_params({name: value}))
