"""model/pipeline.py and model/registry.py with the tiny golden weights (CPU, few steps).

The tiny base model makes 8 frames of 16x16 and 2048 audio samples; the tiny SR model has
large/small = 32/8, so SR turns the 16x16 frames into 64x64. Nothing here hard-codes those sizes
in the pipeline: they come from the configs.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from model.pipeline import GenerationRequest, LoadedModels, derive_seed, generate
from model.registry import load_models
from model.samplers import SamplerSpec, SamplingCancelled

# Few network evaluations keep this file fast on 2 CPU cores: one U-Net pass ~1 s, one SR pass
# over 8 frames of 64x64 ~3 s.
FAST = SamplerSpec(name="dpm_solver", steps=1, order=1)  # 1 NFE
TWO_STEPS = SamplerSpec(name="dpm_solver", steps=2, order=1)  # 2 NFE, 2 progress steps
SR_FAST = SamplerSpec(name="dpm_solver", steps=1, order=1)  # 1 SR pass
SR_DDIM = SamplerSpec(name="ddim", steps=2)  # the official SR sampler kind, 2 passes
F, H, L, SR_H = 8, 16, 2048, 64


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def models(golden_dir: Path) -> LoadedModels:
    torch.set_num_threads(2)
    return load_models(
        "tiny", preset="tiny", checkpoint=_state_dict(golden_dir / "unet_tiny.pt"),
        sr_checkpoint=_state_dict(golden_dir / "sr_tiny.pt"),
    )


class CallCounter:
    """Counts forward calls of a module (forward pre-hook) while used as a context manager."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.calls = module, 0

    def __enter__(self) -> CallCounter:
        self.handle = self.module.register_forward_pre_hook(lambda *a: self._hit())
        return self

    def _hit(self) -> None:
        self.calls += 1

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def _check_progress(events: list[tuple[str, int, int]], stages: list[str]) -> None:
    assert [s for s in dict.fromkeys(e[0] for e in events)] == stages
    for stage in stages:
        steps = [(step, total) for s, step, total in events if s == stage]
        assert all(b[0] >= a[0] for a,
                   b in itertools.pairwise(steps)), f"{stage} not monotone: {steps}"
        assert all(0 < step <= total for step, total in steps)
        assert steps[-1][0] == steps[-1][1], f"{stage} did not reach its total: {steps[-1]}"


def _condition_video(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, H, H, 3))
    return np.clip(base + 8 * np.arange(F)[:, None, None, None], 0, 255).astype(np.uint8)


def _condition_audio(freq: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(L) / 16000)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# joint


def test_joint_with_sr_shapes_progress_nfe_and_chunking(models: LoadedModels) -> None:
    events: list[tuple[str, int, int]] = []
    request = GenerationRequest(seed=1, base_sampler=TWO_STEPS, sr_sampler=SR_FAST)
    with CallCounter(models.unet) as base_calls, CallCounter(models.sr) as sr_calls:
        result = generate(request, models, progress=lambda *e: events.append(e))
    assert result.frames.shape == (1, F, SR_H, SR_H, 3) and result.frames.dtype == np.uint8
    assert result.audio.shape == (1, L) and result.audio.dtype == np.float32
    assert np.abs(result.audio).max() <= 1.0 and result.frames.std() > 0
    assert (result.fps, result.sample_rate, result.random_weights) == (10, 16000, False)
    assert result.nfe["base"] == base_calls.calls == 2 and result.nfe["base_backward"] == 0
    assert result.nfe["sr"] == 1 and result.nfe["sr_calls"] == sr_calls.calls == 1
    assert set(result.stage_seconds) == {"base", "sr"}
    _check_progress(events, ["base", "sr"])

    # The SR sampler is deterministic and frames are independent: chunks of 3 frames (3 chunks
    # per clip) give the same frames, the noise still shared per clip.
    chunked_events: list[tuple[str, int, int]] = []
    chunked = generate(
        GenerationRequest(seed=1, base_sampler=TWO_STEPS, sr_sampler=SR_FAST, sr_chunk_frames=3),
        models, progress=lambda *e: chunked_events.append(e),
    )
    np.testing.assert_array_equal(chunked.audio, result.audio)
    diff = np.abs(chunked.frames.astype(int) - result.frames.astype(int))
    assert diff.max() <= 1 and diff.mean() < 1e-3  # float rounding at a truncation edge only
    assert chunked.nfe["sr"] == 1 and chunked.nfe["sr_calls"] == 3
    _check_progress(chunked_events, ["base", "sr"])
    assert [e for e in chunked_events if e[0] == "sr"] == [("sr", i, 3) for i in (1, 2, 3)]


def test_joint_without_sr_is_seeded(models: LoadedModels) -> None:
    def run(seed: int, n: int = 1):
        return generate(GenerationRequest(seed=seed, num_samples=n, base_sampler=FAST,
                                          super_resolution=False), models)

    a, b, c = run(5), run(5), run(6, n=2)
    assert a.frames.shape == (1, F, H, H, 3) and "sr" not in a.stage_seconds
    assert a.frames.tobytes() == b.frames.tobytes() and a.audio.tobytes() == b.audio.tobytes()
    assert c.frames.shape == (2, F, H, H, 3) and c.audio.shape == (2, L)
    assert a.frames.tobytes() != c.frames[0].tobytes() and not np.array_equal(a.audio[0],
                                                                              c.audio[0])
    assert not np.array_equal(c.frames[0], c.frames[1])
    assert derive_seed(5, "window-shifts") != derive_seed(5, "base-sampler")


# --------------------------------------------------------------------------------------------
# conditional


def test_video_to_audio_keeps_the_condition(models: LoadedModels) -> None:
    cond = _condition_video(0)
    request = GenerationRequest(mode="video-to-audio", seed=2, base_sampler=FAST,
                                super_resolution=False, condition_video=cond)
    events: list[tuple[str, int, int]] = []
    result = generate(request, models, progress=lambda *e: events.append(e))
    np.testing.assert_array_equal(result.frames[0], cond)
    assert result.audio.shape == (1, L) and np.abs(result.audio).max() <= 1.0
    assert result.nfe["base"] > 0 and result.nfe["base_backward"] > 0  # gradient guidance
    _check_progress(events, ["base"])
    other = generate(GenerationRequest(mode="video-to-audio", seed=2, base_sampler=FAST,
                                       super_resolution=False,
                                       condition_video=_condition_video(1)), models)
    assert not np.array_equal(other.audio, result.audio), "the audio must depend on the video"

    with_sr = generate(GenerationRequest(mode="video-to-audio", seed=2, base_sampler=FAST,
                                         sr_sampler=SR_FAST, guidance="replacement",
                                         condition_video=cond), models)
    assert with_sr.frames.shape == (1, F, SR_H, SR_H, 3)
    assert with_sr.nfe["base_backward"] == 0
    # SR ran on the condition frames: downsampled, they resemble the input far more than noise.
    small = with_sr.frames[0].reshape(F, H, 4, H, 4, 3).mean(axis=(2, 4))
    assert np.abs(small - cond).mean() < np.abs(small - _condition_video(7)).mean()


def test_audio_to_video_keeps_the_condition(models: LoadedModels) -> None:
    cond = _condition_audio(440)

    def run(condition: np.ndarray) -> object:
        return generate(GenerationRequest(mode="audio-to-video", seed=3, num_samples=2,
                                          base_sampler=FAST, super_resolution=False,
                                          guidance="replacement", condition_audio=condition),
                        models)

    result, other = run(cond), run(_condition_audio(1000))
    assert result.frames.shape == (2, F, H, H, 3)
    np.testing.assert_array_equal(result.audio, np.stack([cond, cond]))
    assert result.nfe["base_backward"] == 0
    assert not np.array_equal(other.frames, result.frames), "the video must depend on the audio"

    with_sr = generate(GenerationRequest(mode="audio-to-video", seed=3, base_sampler=FAST,
                                         sr_sampler=SR_FAST, condition_audio=cond), models)
    assert with_sr.frames.shape == (1, F, SR_H, SR_H, 3)
    assert with_sr.nfe["base_backward"] == with_sr.nfe["base"] == 1  # gradient guidance
    np.testing.assert_array_equal(with_sr.audio[0], cond)


# --------------------------------------------------------------------------------------------
# cancellation and validation


@pytest.mark.parametrize("stage", ["base", "sr"])
def test_cancellation_stops_within_one_step(models: LoadedModels, stage: str) -> None:
    seen: list[tuple[str, int, int]] = []
    calls_at_cancel: list[int] = []

    with CallCounter(models.unet) as base_calls, CallCounter(models.sr) as sr_calls:
        counter = base_calls if stage == "base" else sr_calls

        def progress(s: str, step: int, total: int) -> None:
            seen.append((s, step, total))
            if s == stage:
                calls_at_cancel.append(counter.calls)
                raise SamplingCancelled("user cancelled")

        with pytest.raises(SamplingCancelled):
            generate(GenerationRequest(seed=4, base_sampler=TWO_STEPS, sr_sampler=SR_DDIM,
                                       sr_chunk_frames=4), models, progress=progress)
    assert seen[-1][0] == stage and seen[-1][1] == 1
    assert counter.calls == calls_at_cancel[0], "no network call after the cancelling callback"
    if stage == "base":
        assert sr_calls.calls == 0


def test_request_validation(models: LoadedModels) -> None:
    def fails(match: str, **kw: object) -> None:
        with pytest.raises(ValueError, match=match):
            generate(GenerationRequest(super_resolution=False, **kw), models)  # type: ignore[arg-type]

    fails(r"condition_video uint8 \[8, 16, 16, 3\]", mode="video-to-audio")
    fails(r"condition_video uint8 \[8, 16, 16, 3\]", mode="video-to-audio",
          condition_video=np.zeros((8, 64, 64, 3), np.uint8))
    fails(r"condition_video uint8", mode="video-to-audio",
          condition_video=np.zeros((8, 16, 16, 3), np.float32))
    fails(r"condition_audio float32 \[2048\]", mode="audio-to-video",
          condition_audio=np.zeros(25600, np.float32))
    fails(r"within \[-1, 1\]", mode="audio-to-video", condition_audio=np.full(L, 2, np.float32))
    fails(r"only used by mode='audio-to-video'", condition_audio=np.zeros(L, np.float32))
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        GenerationRequest(num_samples=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        GenerationRequest(mode="text-to-video")  # type: ignore[arg-type]
    no_sr = LoadedModels(**{**models.__dict__, "sr": None, "sr_cfg": None})
    with pytest.raises(ValueError, match="no SR model is loaded"):
        generate(GenerationRequest(), no_sr)


# --------------------------------------------------------------------------------------------
# registry


def test_random_weights_are_deterministic_and_announced(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with caplog.at_level(logging.WARNING, logger="model.registry"):
        a = load_models("t", preset="tiny", sr=False)
    assert torch.equal(before, torch.random.get_rng_state()), "global RNG untouched"
    b = load_models("t", preset="tiny", sr=False)
    assert a.random_weights and a.sr is None
    assert any("RANDOM weights" in r.message and "noise" in r.message for r in caplog.records)
    for (name, pa), (_, pb) in zip(a.unet.state_dict().items(), b.unet.state_dict().items(),
                                   strict=False):
        assert torch.equal(pa, pb), name
    assert not any(p.requires_grad for p in a.unet.parameters()) and not a.unet.training
    with pytest.raises(ValueError, match="precision must be one of"):
        load_models("t", preset="tiny", precision="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_seed_same_sample_on_cuda(golden_dir: Path, models: LoadedModels) -> None:
    cuda = load_models(
        "tiny",
        preset="tiny",
        checkpoint=_state_dict(golden_dir / "unet_tiny.pt"),
        sr_checkpoint=_state_dict(golden_dir / "sr_tiny.pt"),
        device="cuda",
    )
    request = GenerationRequest(seed=9, base_sampler=FAST, sr_sampler=SR_FAST)
    on_cpu, on_gpu = generate(request, models), generate(request, cuda)
    np.testing.assert_allclose(on_gpu.audio, on_cpu.audio, atol=2e-3)
    assert np.abs(on_gpu.frames.astype(int) - on_cpu.frames.astype(int)).mean() < 0.5
