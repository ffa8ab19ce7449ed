"""Settings parsing."""

from __future__ import annotations

import pytest

from switch.config import ConfigError, check_serving, load_settings


def test_zero_config_defaults():
    settings = load_settings({})
    assert settings.database_url == "" and settings.redis_url == ""
    assert settings.port == 8000 and settings.workers == 1


def test_environment_overrides_and_flags_win():
    settings = load_settings({"SWITCH_PORT": "9000", "SWITCH_DATA_DIR": "/tmp/x"}, port=9100)
    assert settings.port == 9100 and settings.data_dir == "/tmp/x"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SWITCH_PORT": "x"}, "SWITCH_PORT must be an integer"),
        ({"SWITCH_PORT": "70000"}, "between 1 and 65535"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_several_workers_cannot_serve_without_redis():
    with pytest.raises(ConfigError, match="SWITCH_REDIS_URL"):
        check_serving(load_settings({"SWITCH_WORKERS": "2"}))
    check_serving(load_settings({"SWITCH_WORKERS": "2", "SWITCH_REDIS_URL": "redis://127.0.0.1:6379/0"}))


def test_repr_hides_the_database_url():
    settings = load_settings({"SWITCH_DATABASE_URL": "postgresql://u:secret@h/db"})
    assert "secret" not in repr(settings)
