"""The HTTP hardening settings: TLS declaration, HSTS age and CORS origins."""

from __future__ import annotations

import base64

import pytest

from backend.app import cors_config
from backend.settings import SettingsError, load_settings

KEY = base64.b64encode(b"k" * 32).decode()


def test_defaults_send_no_hsts_and_allow_no_origin() -> None:
    settings = load_settings({})
    assert settings.behind_tls is False
    assert settings.cors_allowed_origins == ()
    assert cors_config(settings) is None


def test_origins_are_a_comma_separated_list() -> None:
    settings = load_settings(
        {"CONFIDE_CORS_ALLOWED_ORIGINS": "https://app.clinic.example, http://localhost:5173,"}
    )
    assert settings.cors_allowed_origins == ("https://app.clinic.example", "http://localhost:5173")
    config = cors_config(settings)
    assert config is not None
    assert config.allow_origins == ["https://app.clinic.example", "http://localhost:5173"]
    assert config.allow_credentials is False
    assert not config.is_allow_all_origins
    assert not config.is_allow_all_methods
    assert not config.is_allow_all_headers


@pytest.mark.parametrize(
    "value",
    [
        "*",
        "https://*.clinic.example",
        "https://app.clinic.example/",
        "https://app.clinic.example/path",
        "app.clinic.example",
        "https://App.Clinic.Example",
        "ftp://app.clinic.example",
        "https://app.clinic.example:port",
    ],
)
def test_a_malformed_or_wildcard_origin_stops_start_up(value: str) -> None:
    """Origins are matched literally: a wildcard or a path is refused, naming the variable."""
    with pytest.raises(SettingsError, match="CONFIDE_CORS_ALLOWED_ORIGINS"):
        load_settings({"CONFIDE_CORS_ALLOWED_ORIGINS": value})


def test_production_accepts_https_origins_only() -> None:
    base = {
        "CONFIDE_ENVIRONMENT": "production",
        "CONFIDE_SECRET_KEY": KEY,
        "CONFIDE_AUDIT_LOG_KEY": "unused-here",
    }
    with pytest.raises(SettingsError, match="https origins only"):
        load_settings({**base, "CONFIDE_CORS_ALLOWED_ORIGINS": "http://app.clinic.example"})
    ok = load_settings({**base, "CONFIDE_CORS_ALLOWED_ORIGINS": "https://app.clinic.example"})
    assert ok.cors_allowed_origins == ("https://app.clinic.example",)


@pytest.mark.parametrize("value", ["60", "100000000", "year"])
def test_hsts_age_is_bounded(value: str) -> None:
    with pytest.raises(SettingsError, match="CONFIDE_HSTS_MAX_AGE_S"):
        load_settings({"CONFIDE_HSTS_MAX_AGE_S": value})


def test_no_proxy_is_trusted_by_default() -> None:
    assert load_settings({}).forwarded_allow_ips == ()


def test_trusted_proxies_are_addresses_or_networks() -> None:
    settings = load_settings({"CONFIDE_FORWARDED_ALLOW_IPS": "10.0.0.0/8, 127.0.0.1,::1"})
    assert settings.forwarded_allow_ips == ("10.0.0.0/8", "127.0.0.1", "::1")


@pytest.mark.parametrize("value", ["*", "ingress.local", "10.0.0.0/33", "10.0.0.1, everyone"])
def test_a_wildcard_or_name_as_trusted_proxy_stops_start_up(value: str) -> None:
    """Trusting ``*`` would let any client choose the address its failed logins count against."""
    with pytest.raises(SettingsError, match="CONFIDE_FORWARDED_ALLOW_IPS"):
        load_settings({"CONFIDE_FORWARDED_ALLOW_IPS": value})


def test_trusted_proxies_need_uvicorn() -> None:
    with pytest.raises(SettingsError, match="CONFIDE_SERVER=uvicorn"):
        load_settings({"CONFIDE_FORWARDED_ALLOW_IPS": "127.0.0.1", "CONFIDE_SERVER": "granian"})
