"""Job fixtures for worker tests: job specs, a small fake of ``model.pipeline.generate_batch``,
fake models and a runner over them (real Redis and storage come from the test's fixtures)."""

from __future__ import annotations

import secrets
from types import SimpleNamespace
from typing import Any

import numpy as np

from core.contract import JobSpec
from core.sampling import SamplerParams, SuperResolutionParams
from core.settings import Settings
from core.storage import LocalStorage
from core.store import JobStore, utcnow
from model.pipeline import GenerationResult
from worker.runner import JobRunner

F, H = 4, 32


def fake_models(sr: bool = True) -> SimpleNamespace:
    cfg = SimpleNamespace(video_size=(F, 3, 16, 16), audio_size=(1, 2048), fps=10,
                          sample_rate=16000)
    return SimpleNamespace(unet_cfg=cfg, sr=object() if sr else None, random_weights=True)


class FakeGenerate:
    """A ``generate_batch`` stand-in: records requests, reports base (3 steps) and sr (2 steps)
    progress to every job's callback, returns noise (seeded per request)."""

    def __init__(self, on_step: Any = None, error: Exception | None = None,
                 peak_memory_bytes: dict[str, int] | None = None) -> None:
        self.requests: list[Any] = []
        self.on_step = on_step
        self.error = error
        self.peak = dict(peak_memory_bytes or {})

    def __call__(self, requests: list[Any], models: Any, *,
                 progress_fns: list[Any] | None = None) -> list[GenerationResult]:
        self.requests.extend(requests)
        fns = progress_fns or [None] * len(requests)
        stages = [("base", 3)] + ([("sr", 2)] if requests[0].super_resolution else [])
        for stage, total in stages:
            for step in range(1, total + 1):
                if self.on_step is not None:
                    self.on_step(stage, step)
                for progress in fns:
                    if progress is not None:
                        progress(stage, step, total)
        if self.error is not None:
            raise self.error
        return [self._result(request, len(requests), self.peak) for request in requests]

    @staticmethod
    def _result(request: Any, batch_size: int, peak: dict[str, int]) -> GenerationResult:
        rng = np.random.default_rng(request.seed)
        n = request.num_samples
        return GenerationResult(
            frames=rng.integers(0, 255, (n, F, H, H, 3), dtype=np.uint8),
            audio=(rng.standard_normal((n, 6400)) * 0.1).astype(np.float32),
            fps=10, sample_rate=16000, nfe={"base": 3, "sr": 2}, stage_seconds={"base": 0.01},
            random_weights=True, batch_size=batch_size, peak_memory_bytes=dict(peak))


def make_spec(mode: str = "joint", **kw: Any) -> JobSpec:
    fields = dict(id=secrets.token_urlsafe(16), mode=mode, model="default", seed=3, num_samples=1,
                  sampler=SamplerParams(steps=3), super_resolution=SuperResolutionParams(steps=2),
                  created_at=utcnow())
    fields.update(kw)
    return JobSpec(**fields)


def make_runner(settings: Settings, store: JobStore, gen: FakeGenerate, **kw: Any) -> JobRunner:
    return JobRunner(settings=settings, store=store, storage=LocalStorage(settings.data_dir),
                     models={"default": fake_models(**kw)}, generate_batch=gen)
