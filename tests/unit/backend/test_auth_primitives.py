"""TOTP against RFC 6238, tokens, throttle arithmetic, password policy, sealed server secrets."""

from __future__ import annotations

import datetime as dt

import pytest

from backend.auth import totp
from backend.auth.passwords import check_password_policy
from backend.auth.throttle import ThrottlePolicy, ThrottleState, after_failure, retry_after
from backend.auth.tokens import new_token, parse_bearer, token_digest
from backend.errors import WeakPasswordError
from backend.server_keys import SealError, ServerKeys

RFC6238_SECRET = b"12345678901234567890"


@pytest.mark.parametrize(
    ("unix", "expected"),
    # RFC 6238 Appendix B, SHA-1 column (8 digits).
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_totp_rfc6238_vectors(unix: int, expected: str) -> None:
    at = dt.datetime.fromtimestamp(unix, dt.UTC)
    assert totp.hotp(RFC6238_SECRET, totp.time_step(at), digits=8) == expected


def test_totp_window_and_replay() -> None:
    secret = totp.generate_secret()
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    step = totp.time_step(now)
    code = totp.hotp(secret, step)
    assert totp.verify_totp(secret, code, now, None) == step
    assert totp.verify_totp(secret, code, now + dt.timedelta(seconds=30), None) == step, "one step of drift"
    assert totp.verify_totp(secret, code, now + dt.timedelta(seconds=90), None) is None
    assert totp.verify_totp(secret, code, now, last_step=step) is None, "a used step is refused"
    assert totp.verify_totp(secret, "12345", now, None) is None
    assert totp.verify_totp(secret, "\uff11\uff12\uff13\uff14\uff15\uff16", now, None) is None, (
        "non-ASCII digits are refused"
    )
    uri = totp.provisioning_uri(secret, issuer="Confide", account_label="acct")
    assert uri.startswith("otpauth://totp/Confide%3Aacct?secret=")


def test_tokens() -> None:
    token = new_token()
    assert token.startswith("cfd_")
    assert len(token) == 47
    assert token != new_token()
    assert parse_bearer(f"Bearer {token}") == token
    assert parse_bearer(f"bearer {token}") == token
    for bad in (None, "", token, f"Basic {token}", "Bearer cfd_short", f"Bearer {token}x"):
        assert parse_bearer(bad) is None
    assert len(token_digest(token)) == 32


POLICY = ThrottlePolicy(free_failures=3, base_delay_s=2, max_delay_s=60, window_s=600)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_throttle_backoff_doubles_and_caps() -> None:
    state: ThrottleState | None = None
    delays = []
    for i in range(12):
        state = after_failure(state, POLICY, T0 + dt.timedelta(seconds=i))
        delays.append(retry_after(state, T0 + dt.timedelta(seconds=i)))
    assert delays[:3] == [None, None, None]
    assert delays[3:8] == [2, 4, 8, 16, 32]
    assert set(delays[8:]) == {60}


def test_throttle_window_resets_and_lock_expires() -> None:
    state = ThrottleState(failures=10, window_started_at=T0, locked_until=T0 + dt.timedelta(seconds=5))
    assert retry_after(state, T0 + dt.timedelta(seconds=5)) is None
    assert retry_after(state, T0 + dt.timedelta(seconds=4.5)) == 1
    later = after_failure(state, POLICY, T0 + dt.timedelta(seconds=601))
    assert later.failures == 1
    assert later.locked_until is None
    assert retry_after(None, T0) is None


@pytest.mark.parametrize(
    ("password", "mfa", "ok"),
    [
        ("a" * 3 + "bcdefghijklm", False, True),  # 15 characters, single factor
        ("abcdefghijklmn", False, False),  # 14 characters, single factor
        ("abcdefgh", True, True),  # 8 characters with MFA
        ("abcdefg", True, False),
        ("x" * 64 + "yz1", False, True),
        ("pässwörd-ünïcödé-ok", False, True),
        ("🙂🙃😀😁😂🤣😃😄😅😆😉😊😋😎😍", False, True),  # 15 emoji code points
        ("e\u0301" * 8, True, False),  # combining marks normalise (NFKC) to 8 'é': too few distinct
        ("correcthorsebatterystaple", False, False),  # a famous example is a common password
        ("aaaaaaaaaaaaaaaaaaaa", False, False),
        ("a" * 257, True, False),
        ("trailing spaces are fine   ", False, True),
        ("nul\x00inside-the-password", False, False),
    ],
)
def test_password_policy(password: str, mfa: bool, ok: bool) -> None:
    if ok:
        check_password_policy(password, mfa_required=mfa, email="someone@example.org")
    else:
        with pytest.raises(WeakPasswordError):
            check_password_policy(password, mfa_required=mfa, email="someone@example.org")


def test_password_equal_to_email_is_refused() -> None:
    with pytest.raises(WeakPasswordError):
        check_password_policy(
            "someone.long.name@example.org", mfa_required=False, email="someone.long.name@example.org"
        )
    with pytest.raises(WeakPasswordError):
        check_password_policy("someonelongname", mfa_required=False, email="someonelongname@example.org")


def test_server_keys_seal_and_digest() -> None:
    keys = ServerKeys(b"s" * 32)
    sealed = keys.seal(b"seed", "totp:1")
    assert keys.unseal(sealed, "totp:1") == b"seed"
    with pytest.raises(SealError):
        keys.unseal(sealed, "totp:2")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError):
        keys.unseal(tampered, "totp:1")
    with pytest.raises(SealError):
        keys.unseal(b"\x02" + sealed[1:], "totp:1")
    with pytest.raises(SealError):
        ServerKeys(b"t" * 32).unseal(sealed, "totp:1")
    assert keys.digest("a", "x") != keys.digest("b", "x")
    assert keys.digest("a", "x") != ServerKeys(b"t" * 32).digest("a", "x")
    with pytest.raises(ValueError, match="32 bytes"):
        ServerKeys(b"short")
