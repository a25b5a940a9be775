"""Settings: environment variables, validation, and the generated docs."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings, settings_table


def test_every_setting_is_documented_and_has_an_env_var(monkeypatch):
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
    monkeypatch.setenv("DENDRITE_HTTP_PORT", "9123")
    monkeypatch.setenv("DENDRITE_STARTUP_MODELS", '["a", "b"]')
    s = Settings()
    assert s.http_port == 9123 and s.startup_models == ["a", "b"]


def test_invalid_values_are_rejected(monkeypatch):
    monkeypatch.setenv("DENDRITE_MODEL_CONTROL_MODE", "sometimes")
    with pytest.raises(ValidationError, match="model_control_mode"):
        Settings()


def test_configuration_doc_is_current(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(f"DENDRITE_{name.upper()}", raising=False)
    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    assert settings_table() in doc, "docs/configuration.md is stale: regenerate it with `python -m app settings`"
