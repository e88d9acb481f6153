"""GenerationResult.peak_memory_bytes: the pipeline records the peak CUDA memory of each stage
(the worker exports it as ``mmd_peak_memory_bytes{stage}``; bench/gpu_check.py reports it).

The CPU tests check the wiring through ``model.pipeline._now`` (its CUDA branch needs a GPU):
the peak is reset when a stage starts and read when it ends. The CUDA test runs the real one."""

from __future__ import annotations

import time

import pytest
import torch

from model import pipeline
from model.pipeline import GenerationRequest, LoadedModels, generate
from model.registry import load_models
from model.samplers import SamplerSpec


def one_step(super_resolution: bool = True) -> GenerationRequest:
    """1 base network call, 2 SR calls."""
    return GenerationRequest(seed=0, base_sampler=SamplerSpec(name="dpm_solver", steps=1, order=1),
                             sr_sampler=SamplerSpec(name="ddim", steps=2),
                             super_resolution=super_resolution)


@pytest.fixture(scope="module")
def models() -> LoadedModels:
    return load_models("tiny", preset="tiny")


def test_each_stage_resets_then_records_its_peak(models: LoadedModels,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []

    def fake_now(device: torch.device, peak: dict[str, int] | None = None, stage: str = "",
                 reset_peak: bool = False) -> float:
        if reset_peak:
            events.append("reset")
        if peak is not None:
            events.append(f"read {stage}")
            peak[stage] = 1000 + len(peak)
        return time.perf_counter()

    monkeypatch.setattr(pipeline, "_now", fake_now)
    result = generate(one_step(), models)
    assert events == ["reset", "read base", "reset", "read sr"]
    assert result.peak_memory_bytes == {"base": 1000, "sr": 1001}
    no_sr = generate(one_step(super_resolution=False), models)
    assert no_sr.peak_memory_bytes == {"base": 1000}


def test_cpu_records_no_peak(models: LoadedModels) -> None:
    assert generate(one_step(), models).peak_memory_bytes == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peaks_are_positive() -> None:
    cuda = load_models("tiny", preset="tiny", device="cuda")
    peaks = generate(one_step(), cuda).peak_memory_bytes
    assert set(peaks) == {"base", "sr"} and min(peaks.values()) > 0
