"""Model loading at worker start-up: every configured model once, random weights flagged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from core.settings import ModelSpec, Settings
from worker.loading import load_all


def test_tiny_default_loads_with_random_weights() -> None:
    models = load_all(Settings(models={"a": ModelSpec(preset="tiny"),
                                       "b": ModelSpec(preset="tiny", sr=False)},
                               default_model="a"))
    assert set(models) == {"a", "b"}
    assert models["a"].random_weights is True and models["a"].sr is not None
    assert models["b"].sr is None
    assert REGISTRY.get_sample_value("mmd_model_load_seconds",
                                     {"model": "a", "phase": "load"}) > 0


def test_s3_checkpoint_needs_fetch_weights_first() -> None:
    settings = Settings(models={"default": ModelSpec(preset="tiny", checkpoint="s3://w/base.pt")})
    with pytest.raises(ValueError, match="mmd fetch-weights"):
        load_all(settings)


def test_unknown_default_model_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="MMD_DEFAULT_MODEL"):
        Settings(default_model="nope")


def test_no_configuration_serves_the_shipped_demo_weights() -> None:
    settings = Settings()
    assert settings.default_model == "demo" and list(settings.models) == ["demo"]
    models = load_all(settings)
    demo = models["demo"]
    assert demo.random_weights is False and demo.sr is not None
    assert (demo.unet_cfg.fps, demo.unet_cfg.sample_rate, demo.unet_cfg.prediction) == \
        (8, 2048, "v")


def test_demo_weights_are_sha256_checked(tmp_path: Path) -> None:
    from model.demo.weights_io import WEIGHTS_DIR

    for f in WEIGHTS_DIR.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    base = tmp_path / "demo_base.pt"
    data = bytearray(base.read_bytes())
    data[-1] ^= 1
    base.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_all(Settings(demo_weights_dir=tmp_path))


def test_one_configured_model_is_the_default() -> None:
    assert Settings(models={"x": ModelSpec(preset="tiny")}).default_model == "x"


@pytest.mark.parametrize("preset", ["tiny", "demo", "landscape", "aist++"])
def test_settings_and_registry_pair_the_same_sr_preset(preset: str) -> None:
    from model.registry import default_sr_preset

    assert ModelSpec(preset=preset).resolved_sr_preset() == default_sr_preset(preset)


def test_auto_threads_are_one_for_small_presets_on_cpu() -> None:
    assert Settings().cpu_threads() == 1  # the demo model
    big = {"a": ModelSpec(preset="demo"), "b": ModelSpec(preset="landscape")}
    assert Settings(models=big, default_model="a").cpu_threads() is None
    assert Settings(device="cuda").cpu_threads() is None
    assert Settings(torch_threads=3).cpu_threads() == 3
