from __future__ import annotations

import base64
from pathlib import Path

import pytest

from backend.settings import SettingsError, load_settings

KEY = base64.b64encode(b"k" * 32).decode()


def test_defaults_are_safe() -> None:
    s = load_settings({})
    assert s.host == "127.0.0.1"
    assert s.argon2_memory_kib >= 19_456
    assert s.argon2_time_cost >= 2
    assert s.session_idle_timeout_s == 900
    assert s.session_absolute_timeout_s == 43_200
    assert set(s.mfa_required_roles) == {"clinician", "compliance_officer", "admin"}


def test_values_are_parsed_from_strings() -> None:
    s = load_settings(
        {"CONFIDE_PORT": "9000", "CONFIDE_DB_POOL_MAX": "20", "CONFIDE_MFA_REQUIRED_ROLES": "admin"}
    )
    assert s.port == 9000
    assert s.db_pool_max == 20
    assert s.mfa_required_roles == ("admin",)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CONFIDE_PORT": "eighty"}, "CONFIDE_PORT"),
        ({"CONFIDE_PORT": "70000"}, "CONFIDE_PORT"),
        ({"CONFIDE_ARGON2_MEMORY_KIB": "1024"}, "CONFIDE_ARGON2_MEMORY_KIB"),
        ({"CONFIDE_ARGON2_TIME_COST": "1"}, "CONFIDE_ARGON2_TIME_COST"),
        ({"CONFIDE_OTEL_EXPORTER": "zipkin"}, "CONFIDE_OTEL_EXPORTER"),
        ({"CONFIDE_MFA_REQUIRED_ROLES": "root"}, "CONFIDE_MFA_REQUIRED_ROLES"),
        ({"CONFIDE_NO_SUCH_THING": "1"}, "CONFIDE_NO_SUCH_THING"),
        ({"CONFIDE_DB_POOL_MIN": "9", "CONFIDE_DB_POOL_MAX": "3"}, "CONFIDE_DB_POOL_MIN"),
        ({"CONFIDE_SESSION_IDLE_TIMEOUT_S": "50000"}, "CONFIDE_SESSION_IDLE_TIMEOUT_S"),
        (
            {"CONFIDE_THROTTLE_BASE_DELAY_S": "100", "CONFIDE_THROTTLE_MAX_DELAY_S": "10"},
            "CONFIDE_THROTTLE_BASE",
        ),
        ({"CONFIDE_ENVIRONMENT": "production"}, "CONFIDE_SECRET_KEY"),
        ({"CONFIDE_OTEL_EXPORTER": "otlp"}, "CONFIDE_OTEL_ENDPOINT"),
    ],
)
def test_bad_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(env)


def test_server_key_from_setting_file_and_generated(tmp_path: Path) -> None:
    assert load_settings({"CONFIDE_SECRET_KEY": KEY}).server_key() == b"k" * 32
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    assert load_settings({"CONFIDE_SECRET_KEY_FILE": str(key_file)}).server_key() == b"k" * 32
    generated = load_settings({"CONFIDE_DATA_DIR": str(tmp_path / "data")})
    first = generated.server_key()
    assert len(first) == 32
    assert generated.server_key() == first, "the development key is generated once and kept"
    assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_bad_server_key_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="CONFIDE_SECRET_KEY"):
        load_settings({"CONFIDE_SECRET_KEY": value}).server_key()


def test_effective_values() -> None:
    s = load_settings({"CONFIDE_HASH_WORKERS": "3", "CONFIDE_INSTANCE_ID": "api-1"})
    assert s.effective_hash_workers == 3
    assert s.effective_instance_id == "api-1"
    assert load_settings({}).effective_hash_workers >= 1
