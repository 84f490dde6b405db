"""KFAAS_TIMEOUT means one thing for a lambda function and for the runtime: seconds, greater than 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfaas import Settings
from kfaas.aws._config import ConfigError, config_from
from kfaas.runtime.settings import SettingsError

RAW = {"kind": "lambda", "handler": "app.handler", "runtime": "python3.11", "timeout": 12}


def test_the_description_timeout_unless_kfaas_timeout_names_another(tmp_path: Path) -> None:
    assert config_from(RAW, tmp_path, {}).timeout == 12
    assert config_from(RAW, tmp_path, {"KFAAS_TIMEOUT": "7.5"}).timeout == 7.5
    assert Settings.from_env({"KFAAS_TIMEOUT": "7.5"}).timeout == 7.5


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_timeout_of_zero_or_less_is_refused_by_both(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="must be greater than 0"):
        config_from(RAW, tmp_path, {"KFAAS_TIMEOUT": value})
    with pytest.raises(SettingsError, match=r"KFAAS_TIMEOUT=.* must be greater than 0"):
        Settings.from_env({"KFAAS_TIMEOUT": value})


def test_a_timeout_that_is_not_a_number_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'soon' is not a number of seconds"):
        config_from(RAW, tmp_path, {"KFAAS_TIMEOUT": "soon"})
