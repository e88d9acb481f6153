"""docs/configuration.md is generated from the settings' field descriptions; it may not drift."""

from __future__ import annotations

from core.settings import ModelSpec, Settings
from tools.configuration_doc import DOC, render


def test_every_setting_is_described() -> None:
    undescribed = [n for n, f in {**Settings.model_fields, **ModelSpec.model_fields}.items()
                   if not f.description]
    assert not undescribed


def test_configuration_doc_matches_the_settings() -> None:
    text = render()
    for name in Settings.model_fields:
        assert f"| `MMD_{name.upper()}` |" in text
    assert DOC.read_text() == text, "run: python3 tools/configuration_doc.py"
