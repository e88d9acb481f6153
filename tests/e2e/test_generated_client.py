"""The live OpenAPI schema generates a usable Python client: openapi-python-client builds one
from the gateway's /openapi.json with no warning, and a job runs through it (submit, poll
``GET /jobs/{id}`` parsed as the typed ``JobView``, download, cancel, errors parsed as
``ErrorResponse``) against the real gateway + worker of tests/e2e (tiny model, few steps)."""

from __future__ import annotations

import hashlib
import importlib
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.helpers.media import write_clip
from tests.helpers.stack import Stack

pytestmark = pytest.mark.e2e

# The MP4 is binary to the generator (it has no notion of video/mp4).
CONFIG = "content_type_overrides:\n  video/mp4: application/octet-stream\n"


@pytest.fixture(scope="module")
def client_pkg(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    tmp = tmp_path_factory.mktemp("client")
    schema = tmp / "openapi.json"
    schema.write_bytes(httpx.get(stack.base + "/openapi.json").content)
    (tmp / "config.yaml").write_text(CONFIG)
    out = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(schema),
         "--output-path", str(tmp / "mmd_client"), "--meta", "none",
         "--config", str(tmp / "config.yaml")],
        capture_output=True, text=True, timeout=300, check=False)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    for problem in ("Warning", "WARNING", "Unable to", "Cannot parse", "removal of"):
        assert problem not in log, log  # every schema and response made it into the client
    sys.path.insert(0, str(tmp))
    try:
        return importlib.import_module("mmd_client")
    finally:
        sys.path.remove(str(tmp))


def _mod(pkg: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{pkg.__name__}.{name}")


def test_a_job_runs_through_the_generated_client(client_pkg: ModuleType, stack: Stack) -> None:
    m = _mod(client_pkg, "models")
    generate = _mod(client_pkg, "api.submit.generate")
    get_job = _mod(client_pkg, "api.jobs.get_job")
    get_result = _mod(client_pkg, "api.jobs.get_result")
    client = client_pkg.Client(base_url=stack.base, timeout=httpx.Timeout(30.0))
    body = m.GenerateRequest(
        seed=7,
        sampler=m.SamplerRequest(name=m.SamplerRequestNameType0.DPM_SOLVER_PP, steps=3),
        super_resolution=m.SuperResolutionRequest(
            enabled=True, sampler=m.SuperResolutionRequestSamplerType0.DDIM, steps=2))
    submitted = generate.sync(client=client, body=body)
    assert isinstance(submitted, m.SubmitResponse), submitted
    assert submitted.status == m.JobStatus.QUEUED
    deadline = time.monotonic() + 180
    view = get_job.sync(submitted.id, client=client)
    while view.status not in (m.JobStatus.SUCCEEDED, m.JobStatus.FAILED) \
            and time.monotonic() < deadline:
        assert isinstance(view, m.JobView), view
        if view.status == m.JobStatus.RUNNING:
            assert view.progress.stage != "queued"
        time.sleep(0.2)
        view = get_job.sync(submitted.id, client=client)
    assert isinstance(view, m.JobView) and view.status == m.JobStatus.SUCCEEDED, view
    # the typed request: the enum member names are distinct and parse back
    assert view.request.sampler.name == m.SamplerParamsName.DPM_SOLVER_PP
    assert view.request.sampler.steps == 3 and view.request.seed == 7
    assert view.progress.fraction == 1.0
    result = view.result
    assert isinstance(result, m.JobResult) and (result.width, result.fps) == (64, 10)
    mp4 = get_result.sync(submitted.id, client=client)
    data = mp4.payload.read()
    assert hashlib.sha256(data).hexdigest() == result.sha256 and len(data) == result.bytes_
    missing = get_job.sync("no-such-job", client=client)
    assert isinstance(missing, m.ErrorResponse) and missing.error.code == "not_found"


def test_multipart_submit_and_cancel_through_the_client(client_pkg: ModuleType, stack: Stack,
                                                        tmp_path: Path) -> None:
    m = _mod(client_pkg, "models")
    types = _mod(client_pkg, "types")
    video_to_audio = _mod(client_pkg, "api.submit.video_to_audio")
    cancel = _mod(client_pkg, "api.jobs.cancel_job")
    client = client_pkg.Client(base_url=stack.base, timeout=httpx.Timeout(30.0))
    clip = write_clip(tmp_path / "clip.mp4")
    body = m.VideoToAudioBody(
        file=types.File(payload=clip.open("rb"), file_name="clip.mp4", mime_type="video/mp4"),
        seed=3, sampler_name=m.VideoToAudioBodySamplerName.DDIM, sampler_steps=500,
        super_resolution_enabled=False)
    submitted = video_to_audio.sync(client=client, body=body)
    assert isinstance(submitted, m.SubmitResponse), submitted
    canceled = cancel.sync(submitted.id, client=client)
    assert isinstance(canceled, m.JobView)
    assert canceled.request.sampler.steps == 500 and canceled.request.seed == 3
    assert canceled.request.super_resolution.enabled is False
    for _ in range(600):  # a running job turns canceled at its next step
        again = cancel.sync(submitted.id, client=client)
        if isinstance(again, m.ErrorResponse):
            break
        time.sleep(0.1)
    assert isinstance(again, m.ErrorResponse) and again.error.code == "job_canceled"
    bad = m.VideoToAudioBody(file=types.File(payload=clip.open("rb"), file_name="clip.mp4"),
                             sampler_steps=0)
    error = video_to_audio.sync(client=client, body=bad)
    assert isinstance(error, m.ErrorResponse) and error.error.field == "sampler.steps"
