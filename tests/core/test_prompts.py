"""The submit-time prompt rules (``core.prompts``) and the aligner settings
(``ModelSpec.aligner`` / ``aligner_weights``), and the torch-free mirrors of the model's lists:
the aligner kinds (``model.aligners.ALIGNER_KINDS``) and the demo vocabulary (the demo world's
colour names, which the real demo aligner accepts and nothing else)."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from core.prompts import (
    NO_PROMPT_WITH_DDPM_WINDOWS,
    PROMPT_VOCABULARY,
    PromptRefused,
    check_prompt_request,
)
from core.settings import AlignerKind, ModelSpec, Settings

LIMITS = {"max_chars": 10, "scale_max": 20.0}


def _refused(prompt: str | None, scale: float | None, aligner: str | None = "demo",
             duration_s: float | None = None, sampler: str | None = None) -> PromptRefused:
    with pytest.raises(PromptRefused) as info:
        check_prompt_request(prompt, scale, model="m", aligner=aligner, duration_s=duration_s,
                             sampler=sampler, **LIMITS)
    assert isinstance(info.value, ValueError)
    return info.value


def test_accepted_prompts_come_back_stripped() -> None:
    assert check_prompt_request(None, None, model="m", aligner=None, **LIMITS) is None
    assert check_prompt_request(" Red ", 20.0, model="m", aligner="demo", **LIMITS) == "Red"
    assert check_prompt_request("a dog barks", 0.0, model="m", aligner="imagebind",
                                **{**LIMITS, "max_chars": 11}) == "a dog barks"  # free text


def test_each_rule_names_its_field_and_code() -> None:
    e = _refused("red", None, aligner=None)
    assert (e.code, e.field) == ("prompt_unsupported", "prompt")
    assert "MMD_MODELS.m.aligner" in e.message
    e = _refused(" \t", None)
    assert (e.code, e.field) == ("invalid_request", "prompt") and "empty" in e.message
    e = _refused("a dog barks!", None, aligner="imagebind")
    assert (e.code, e.field) == ("invalid_request", "prompt")
    assert "12 characters" in e.message and "MMD_PROMPT_MAX_CHARS" in e.message
    e = _refused("purple", None)
    assert (e.code, e.field) == ("unknown_prompt", "prompt") and "red, green, blue" in e.message
    for scale in (-0.1, 20.5, float("nan")):
        e = _refused("red", scale)
        assert (e.code, e.field) == ("invalid_request", "prompt_scale"), scale
        assert "MMD_PROMPT_SCALE_MAX" in e.message
    e = _refused(None, 1.0, aligner=None)
    assert (e.code, e.field) == ("invalid_request", "prompt_scale")
    e = _refused("red", None, duration_s=2.0, sampler="ddpm")
    assert (e.code, e.field, e.message) == ("invalid_request", "duration_s",
                                            NO_PROMPT_WITH_DDPM_WINDOWS)
    for sampler in ("ddim", "dpm_solver", "dpm_solver++"):  # whole clips on the fast samplers
        assert check_prompt_request("red", None, model="m", aligner="demo", duration_s=2.0,
                                    sampler=sampler, **LIMITS) == "red"


def test_model_spec_resolves_its_aligner() -> None:
    assert ModelSpec(preset="demo").resolved_aligner() == "demo"
    assert ModelSpec(preset="demo", checkpoint="/w/demo.pt").resolved_aligner() == "demo"
    assert ModelSpec(preset="demo", aligner="none").resolved_aligner() is None
    assert ModelSpec(preset="tiny").resolved_aligner() is None
    assert ModelSpec(preset="landscape").resolved_aligner() is None
    spec = ModelSpec(preset="landscape", aligner="imagebind", aligner_weights="/w/ib.pth")
    assert spec.resolved_aligner() == "imagebind"
    assert Settings().models["demo"].resolved_aligner() == "demo"  # the unconfigured default


@pytest.mark.parametrize(("fields", "says"), [
    ({"preset": "landscape", "aligner": "imagebind"}, "needs aligner_weights"),
    ({"preset": "tiny", "aligner_weights": "/w/x.pt"}, "has no aligner"),
    ({"preset": "demo", "aligner": "none", "aligner_weights": "/w/x.pt"}, "has no aligner"),
    ({"preset": "landscape", "aligner": "imagebind", "aligner_weights": "s3://b/ib.pth"},
     "local files only"),
    ({"preset": "demo", "aligner": "clip"}, "aligner"),
])
def test_bad_aligner_settings_are_refused_at_start(fields: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        ModelSpec(**fields)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=says):
        Settings(models={"m": fields})  # type: ignore[dict-item]


def test_aligner_kinds_are_the_models() -> None:
    from model.aligners import ALIGNER_KINDS

    assert set(get_args(AlignerKind)) == set(ALIGNER_KINDS)


def test_demo_vocabulary_is_the_demo_worlds_colours() -> None:
    from model.demo.world import COLOUR_NAMES

    assert PROMPT_VOCABULARY["demo"] == tuple(COLOUR_NAMES)
    assert set(PROMPT_VOCABULARY) <= set(get_args(AlignerKind))


def test_the_demo_aligner_accepts_exactly_the_vocabulary() -> None:
    """What the gateway lets through, the shipped demo aligner takes (and it refuses a word
    the gateway refuses too)."""
    from model.config import UNetConfig
    from model.demo.aligner import load_demo_aligner

    aligner = load_demo_aligner(UNetConfig.preset("demo"), weights=None)
    for word in PROMPT_VOCABULARY["demo"]:
        for sent in (word, f" {word.upper()} "):
            text = check_prompt_request(sent, None, model="demo", aligner="demo",
                                        max_chars=200, scale_max=1e3)
            assert text is not None
            aligner.check_prompt(text)  # raises ValueError if the aligner refused it
    with pytest.raises(ValueError, match="red"):
        aligner.check_prompt("purple")
