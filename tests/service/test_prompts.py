"""``prompt`` / ``prompt_scale`` at submit (issue 17), through the gateway on a real redis-server:
stored in the JobSpec and shown by GET /jobs/{id}; 422s (ErrorResponse, ``field`` set) for a
model without an aligner (``prompt_unsupported`` naming ``MMD_MODELS.<name>.aligner``), an empty
or over-long prompt, a word the demo aligner does not know, a scale out of range or without a
prompt, and a prompt with ``duration_s``; on POST /generate (JSON) and the multipart routes
(form fields and a JSON ``params`` part)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.contract import JobSpec
from core.settings import ModelSpec, Settings
from core.store import JobStore
from service.app import create_app
from service.forms import conditional_form_doc
from tests.helpers.hostile_media import good_mp4, good_wav


@pytest.fixture
def prompted(settings: Settings) -> TestClient:
    """A gateway with the tiny model (no aligner, the default) and the demo model (its aligner
    by default); the gateway loads no model, so nothing is built."""
    models = {"default": ModelSpec(preset="tiny"), "demo": ModelSpec(preset="demo")}
    return TestClient(create_app(settings.model_copy(update={
        "models": models, "prompt_max_chars": 12, "prompt_scale_max": 50.0})))


def _generate(client: TestClient, **body: Any) -> tuple[int, dict[str, Any]]:
    r = client.post("/generate", json={"sampler": {"steps": 2}, **body})
    return r.status_code, r.json()


def _error(status: int, body: dict[str, Any], code: str, field: str) -> str:
    assert status == 422, body
    assert (body["error"]["code"], body["error"].get("field")) == (code, field), body
    return str(body["error"]["message"])


def _stored(client: TestClient, store: JobStore, job_id: str) -> JobSpec:
    view = client.get(f"/jobs/{job_id}").json()
    spec = store.spec(job_id)
    assert spec is not None and view["request"] == spec.model_dump(mode="json")
    return spec


def test_prompt_and_scale_are_stored_and_shown(prompted: TestClient, store: JobStore) -> None:
    status, body = _generate(prompted, model="demo", prompt=" red ", prompt_scale=7.5)
    assert status == 202, body
    spec = _stored(prompted, store, body["id"])
    assert (spec.prompt, spec.prompt_scale) == ("red", 7.5)  # stripped
    status, body = _generate(prompted, model="demo", prompt="Blue")
    assert status == 202, body
    spec = _stored(prompted, store, body["id"])
    assert (spec.prompt, spec.prompt_scale) == ("Blue", None)  # None: the aligner's default
    status, body = _generate(prompted, model="demo")
    assert status == 202, body
    assert _stored(prompted, store, body["id"]).prompt is None


def test_a_model_without_aligner_names_the_setting(prompted: TestClient,
                                                  settings: Settings) -> None:
    message = _error(*_generate(prompted, prompt="red"), "prompt_unsupported", "prompt")
    assert "MMD_MODELS.default.aligner" in message and "'default'" in message
    # the demo preset with its aligner turned off
    off = TestClient(create_app(settings.model_copy(update={
        "models": {"demo": ModelSpec(preset="demo", aligner="none")},
        "default_model": "demo"})))
    message = _error(*_generate(off, prompt="red"), "prompt_unsupported", "prompt")
    assert "MMD_MODELS.demo.aligner" in message


def test_bad_prompts_and_scales(prompted: TestClient) -> None:
    demo = {"model": "demo"}
    assert "empty" in _error(*_generate(prompted, prompt="   ", **demo), "invalid_request",
                             "prompt")
    message = _error(*_generate(prompted, prompt="r" * 13, **demo), "invalid_request", "prompt")
    assert "13 characters" in message and "MMD_PROMPT_MAX_CHARS" in message
    message = _error(*_generate(prompted, prompt="purple", **demo), "unknown_prompt", "prompt")
    assert "red, green, blue" in message
    message = _error(*_generate(prompted, prompt="red", prompt_scale=50.5, **demo),
                     "invalid_request", "prompt_scale")
    assert "MMD_PROMPT_SCALE_MAX" in message and "50" in message
    _error(*_generate(prompted, prompt="red", prompt_scale=-1, **demo), "invalid_request",
           "prompt_scale")
    message = _error(*_generate(prompted, prompt_scale=3, **demo), "invalid_request",
                     "prompt_scale")
    assert "only used with a prompt" in message
    status, body = _generate(prompted, prompt="red", prompt_scale=50, **demo)  # the bound itself
    assert status == 202, body


def test_conditional_routes_take_prompt_fields(prompted: TestClient, store: JobStore,
                                               tmp_path: Path) -> None:
    wav, mp4 = good_wav(tmp_path, 2.0), good_mp4(tmp_path)

    def post(endpoint: str, name: str, data: bytes, **fields: str) -> tuple[int, dict[str, Any]]:
        r = prompted.post(f"/{endpoint}", files={"file": (name, data, "application/octet-stream")},
                          data={"sampler.steps": "2", "model": "demo"} | fields)
        return r.status_code, r.json()

    status, body = post("video-to-audio", "clip.mp4", mp4, prompt="green", prompt_scale="4")
    assert status == 202, body
    assert (_stored(prompted, store, body["id"]).prompt,
            _stored(prompted, store, body["id"]).prompt_scale) == ("green", 4.0)
    status, body = post("audio-to-video", "a.wav", wav,
                        params=json.dumps({"prompt": "blue", "prompt_scale": 2}))
    assert status == 202, body
    assert _stored(prompted, store, body["id"]).prompt == "blue"
    _error(*post("audio-to-video", "a.wav", wav, prompt="purple"), "unknown_prompt", "prompt")
    _error(*post("audio-to-video", "a.wav", wav, prompt="red", model="default"),
           "prompt_unsupported", "prompt")
    _error(*post("audio-to-video", "a.wav", wav, prompt="red", prompt_scale="x"),
           "invalid_request", "prompt_scale")
    status, body = post("audio-to-video", "a.wav", wav, prompt="red", duration_s="1.5")
    assert status == 202, body  # a whole clip on the fast sampler takes a prompt
    assert _stored(prompted, store, body["id"]).prompt == "red"
    message = _error(*post("audio-to-video", "a.wav", wav, prompt="red", duration_s="1.5",
                           preset="official"),
                     "invalid_request", "duration_s")
    assert "needs a fast sampler" in message
    _error(*_generate(prompted, model="demo", mode="audio-to-video", upload_id="x",
                      prompt="red", duration_s=1.5, sampler={"name": "ddpm", "steps": 10}),
           "invalid_request", "duration_s")


def test_the_form_schema_advertises_the_prompt_fields() -> None:
    props = conditional_form_doc()["requestBody"]["content"]["multipart/form-data"]["schema"][
        "properties"]
    assert props["prompt"]["type"] == "string" and props["prompt_scale"]["type"] == "number"
    assert props["prompt_scale"]["minimum"] == 0
