"""Model loading at worker start-up: every configured model once, random weights flagged."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from core.settings import ModelSpec, Settings
from worker.loading import load_all


def test_tiny_default_loads_with_random_weights() -> None:
    models = load_all(Settings(models={"a": ModelSpec(), "b": ModelSpec(sr=False)},
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
