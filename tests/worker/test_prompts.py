"""Prompts in the worker (issue 17): the JobSpec's prompt / prompt_scale reach the
``GenerationRequest`` and the batch key; the result records the prompt as the aligner used it,
the scale it ran with (the aligner's default when the job named none) and the NFE with the
backward passes; a prompt on a model without an aligner fails the job cleanly (the real
``validate``); a multi-window ``duration_s`` job takes no prompt; each model's aligner is
loaded from its settings. Real Redis and storage; the generation is faked where only the
plumbing is tested (the real pipeline runs in tests/e2e/test_prompts.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core.contract import JobStatus
from core.prompts import NO_PROMPT_WITH_DDPM_WINDOWS
from core.sampling import SamplerParams
from core.settings import ModelSpec, Settings
from core.storage import LocalStorage
from core.store import JobStore
from tests.helpers.jobs import FakeGenerate, fake_models, make_runner, make_spec
from worker.errors import JobFailed
from worker.loading import aligner_weights, load_model_aligner
from worker.runner import JobRunner
from worker.sampling import generation_request, resolved_prompt, spec_key
from worker.whole_clip import SpanInput, run_whole_clip


class WordAligner:
    """A test aligner for pure plumbing: knows two words (any case), scores nothing."""

    name = "words"
    default_scale = 12.5

    def check_prompt(self, prompt: str) -> str:
        key = prompt.strip().lower()
        if key not in ("red", "blue"):
            raise ValueError(f"prompt {prompt!r} is unknown; it accepts red or blue")
        return key

    def score(self, video: Any, audio: Any, prompt: str) -> Any:
        raise AssertionError("the plumbing tests never score")


class BackwardGenerate(FakeGenerate):
    """FakeGenerate that counts one backward pass per step for a prompted request (as the
    prompted denoiser does) and records each request's prompt."""

    @staticmethod
    def _result(request: Any, batch_size: int, peak: dict[str, int]) -> Any:
        result = FakeGenerate._result(request, batch_size, peak)
        backward = 3 if request.prompt is not None else 0
        return dataclasses.replace(result, nfe={**result.nfe, "base_backward": backward})


def test_the_spec_reaches_the_request_and_the_batch_key() -> None:
    spec = make_spec(prompt="Red", prompt_scale=4.0)
    request = generation_request(spec, sr_on=True)
    assert (request.prompt, request.prompt_scale) == ("Red", 4.0)
    unguided = generation_request(make_spec(), sr_on=True)
    assert (unguided.prompt, unguided.prompt_scale) == (None, None)
    keys = {spec_key(make_spec(prompt=p, prompt_scale=s))
            for p, s in (("red", None), ("red", None), ("blue", None), ("red", 2.0), (None, None))}
    assert len(keys) == 4 and None not in keys  # same prompt and scale: one batch


def test_resolved_prompt_is_the_aligners() -> None:
    models = SimpleNamespace(aligner=WordAligner())
    assert resolved_prompt(make_spec(prompt=" RED "), models) == ("red", 12.5)
    assert resolved_prompt(make_spec(prompt="blue", prompt_scale=0.0), models) == ("blue", 0.0)
    assert resolved_prompt(make_spec(), models) == (None, None)


def test_the_result_records_prompt_scale_and_backward_passes(settings: Settings,
                                                             store: JobStore) -> None:
    gen = BackwardGenerate()
    runner = make_runner(settings, store, gen)
    runner.models["default"].aligner = WordAligner()
    prompted, plain = make_spec(prompt="Blue"), make_spec()
    for spec in (prompted, plain):
        store.create_and_enqueue(spec)
    assert runner.run_many([prompted.id, plain.id]) == ["succeeded", "succeeded"]
    assert [r.prompt for r in gen.requests] == ["Blue", None]  # two batches (keys differ)
    result = store.view(prompted.id).result  # type: ignore[union-attr]
    assert result is not None
    assert (result.prompt, result.prompt_scale) == ("blue", 12.5)
    assert result.nfe == {"base": 3, "base_backward": 3, "sr": 2}
    result = store.view(plain.id).result  # type: ignore[union-attr]
    assert result is not None and (result.prompt, result.prompt_scale) == (None, None)
    assert result.nfe["base_backward"] == 0


def test_a_prompt_without_an_aligner_fails_the_job_cleanly(settings: Settings, store: JobStore,
                                                          tiny: Any) -> None:
    """The real pipeline's ``validate`` refuses it before any network runs (a worker whose
    models differ from the gateway's settings); nothing is written but the error."""
    from model.pipeline import generate_batch

    runner = JobRunner(settings=settings, store=store, storage=LocalStorage(settings.data_dir),
                       models={"default": tiny}, generate_batch=generate_batch)
    spec = make_spec(prompt="red")
    store.create_and_enqueue(spec)
    assert runner.run(spec.id) == "failed"
    view = store.view(spec.id)
    assert view is not None and view.status is JobStatus.failed and view.error is not None
    assert view.error.code == "invalid_request" and "no prompt aligner" in view.error.message


def test_a_prompt_is_refused_by_a_ddpm_whole_clip_job(settings: Settings) -> None:
    spec = make_spec("audio-to-video", duration_s=2.0, prompt="red", input_key="k",
                     sampler=SamplerParams(name="ddpm", steps=10))
    span = SpanInput(np.zeros(100, np.float32), None, Path("x"), 20, 10)  # type: ignore[arg-type]
    with pytest.raises(JobFailed) as info:
        run_whole_clip(spec, fake_models(), span, settings, None, sr_on=False)
    assert (info.value.code, str(info.value)) == ("invalid_request", NO_PROMPT_WITH_DDPM_WINDOWS)


def test_aligner_weights_follow_the_settings(tmp_path: Path) -> None:
    from model.demo.weights_io import WEIGHTS_DIR

    assert aligner_weights(ModelSpec(preset="tiny"), Settings()) is None
    assert aligner_weights(ModelSpec(preset="demo"), Settings()) is None  # the shipped file
    spec = ModelSpec(preset="demo", aligner_weights="/w/mine.pt")
    assert aligner_weights(spec, Settings(demo_weights_dir=tmp_path)) == "/w/mine.pt"
    # a weights folder whose manifest has no aligner entry: say how to get one
    for f in WEIGHTS_DIR.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    manifest["files"].pop("aligner", None)
    (tmp_path / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(FileNotFoundError, match="train-demo --what aligner"):
        aligner_weights(ModelSpec(preset="demo"), Settings(demo_weights_dir=tmp_path))


def test_load_model_aligner(monkeypatch: pytest.MonkeyPatch) -> None:
    import model.aligners

    calls: list[tuple[Any, ...]] = []

    def fake_load(kind: str, cfg: Any, *, weights: Any = None, device: Any = "cpu") -> Any:
        calls.append((kind, cfg, weights, device))
        return WordAligner()

    monkeypatch.setattr(model.aligners, "load_aligner", fake_load)
    settings = Settings(device="cpu")
    assert load_model_aligner("t", ModelSpec(preset="tiny"), "cfg", settings) is None
    spec = ModelSpec(preset="landscape", aligner="imagebind", aligner_weights="/w/ib.pth")
    assert isinstance(load_model_aligner("ib", spec, "cfg", settings), WordAligner)
    assert calls == [("imagebind", "cfg", "/w/ib.pth", "cpu")]
    with pytest.raises(ValueError, match="MMD_PROMPT_SCALE_MAX=10"):
        load_model_aligner("ib", spec, "cfg", settings.model_copy(
            update={"prompt_scale_max": 10.0}))


def test_the_demo_model_loads_its_shipped_aligner() -> None:
    from worker.loading import load_all

    models = load_all(Settings())["demo"]
    assert models.aligner is not None and models.aligner.name == "demo"
    assert models.aligner.check_prompt(" Red") == "red"
    off = load_all(Settings(models={"demo": ModelSpec(preset="demo", aligner="none")}))
    assert off["demo"].aligner is None
