"""Settings are read once, typed, and every one of them is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfaas import Settings
from kfaas.runtime.settings import SettingsError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


def test_defaults_and_types_from_the_environment() -> None:
    settings = Settings.from_env(
        {"PORT": "9090", "KFAAS_DRAIN_SECONDS": "2.5", "SMTP_STARTTLS": "yes", "MONGODB_URL": "mongodb://m"}
    )
    assert settings.port == 9090
    assert settings.drain_seconds == 2.5
    assert settings.smtp_starttls is True
    assert settings.mongodb_url == "mongodb://m"
    assert settings.host == "0.0.0.0"
    assert settings.mongodb_database == "kfaas"


def test_flags_win_over_the_environment() -> None:
    settings = Settings.from_env({"PORT": "9090", "FUNCTION_TARGET": "a"}, port=7070, target=None)
    assert settings.port == 7070
    assert settings.target == "a"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT='http' is not a valid int"),
        ({"SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS='maybe' is not a valid bool"),
        (
            {"FUNCTION_SIGNATURE_TYPE": "background"},
            "FUNCTION_SIGNATURE_TYPE='background': signature type 'background' is not one of: "
            "asgi, cloudevent, event, http, lambda, typed",
        ),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_the_password_stays_out_of_repr() -> None:
    assert "hunter2" not in repr(Settings(smtp_password="hunter2"))


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [name for name, _, _ in Settings.describe() if f"`{name}`" not in text]
    assert not missing, f"docs/runtime.md does not document: {missing}"
