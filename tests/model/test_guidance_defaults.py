"""The per-model guidance scale: the gateway's torch-free table (``core.sampling``) equals the
model presets' ``UNetConfig.guidance_scale``, and a request without a scale runs the model's.

Why demo's is 450 (``bench/guidance.py``, shipped weights, fast conditional preset DDIM 20,
base only): audio-to-video sync / colour-pitch over 8 jobs were 0.24 / 0.36 at scale 3,
0.45 / 0.36 at 100, 0.84 / 0.90 at 300, 0.82 / 0.75 at 1000; over 64 jobs 0.774 / 0.787 at
300, 0.814 / 0.766 at 450, 0.825 / 0.767 at 600; video-to-audio was 0.95 / 0.94 at both 3 and
300 (8 jobs) and 0.928 / 0.985 at 450 (32). The loss is a per-element mean, so the demo's
2,048-sample condition needs a far larger scale than the official scripts' 3.0 (which their fp16
loss scale made act as 3 * 2**20).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.sampling import DEFAULT_GUIDANCE_SCALE, GUIDANCE_SCALES, default_guidance_scale
from model.config import UNetConfig
from model.pipeline import GenerationRequest, generate
from model.registry import load_models
from model.samplers import SamplerSpec


@pytest.mark.parametrize("preset", ["demo", "tiny", "landscape", "aist++"])
def test_core_table_matches_the_model_presets(preset: str) -> None:
    assert default_guidance_scale(preset) == UNetConfig.preset(preset).guidance_scale


def test_only_listed_presets_differ_from_the_official_scale() -> None:
    assert UNetConfig().guidance_scale == DEFAULT_GUIDANCE_SCALE == 3.0
    assert set(GUIDANCE_SCALES) == {"demo"}


def test_a_request_without_a_scale_runs_the_models_scale() -> None:
    """None = ``UNetConfig.guidance_scale``: equal to passing it, unlike passing another."""
    models = load_models("tiny", preset="tiny", sr=False)
    cfg = models.unet_cfg
    models.unet_cfg = cfg.with_(guidance_scale=50.0)
    audio = np.sin(np.linspace(0, 200, cfg.audio_size[1])).astype(np.float32) * 0.5

    def run(scale: float | None) -> torch.Tensor:
        req = GenerationRequest(mode="audio-to-video", seed=3, condition_audio=audio,
                                super_resolution=False, guidance_scale=scale,
                                base_sampler=SamplerSpec(name="ddim", steps=3))
        return torch.from_numpy(generate(req, models).frames.astype(np.float32))

    default = run(None)
    assert torch.equal(default, run(50.0))
    assert not torch.equal(default, run(3.0))
