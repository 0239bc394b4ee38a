"""The log pipeline: allow-listed keys, scrubbed values, one JSON object per line."""

from __future__ import annotations

import io
import json

import structlog

from backend.telemetry import configure_logging, exception_frames


def _capture(**fields: object) -> dict[str, object]:
    buffer = io.StringIO()
    configure_logging("info", "json", stream=buffer)
    structlog.get_logger("test").info("event_name", **fields)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 1
    parsed: dict[str, object] = json.loads(lines[0])
    return parsed


def test_unknown_keys_are_dropped_and_named() -> None:
    line = _capture(password="hunter2-secret", email="a@b.c", route="/v1/me")
    assert "password" not in line
    assert "email" not in line
    assert line["dropped"] == ["email", "password"]
    assert line["route"] == "/v1/me"
    assert "hunter2" not in json.dumps(line)


def test_allowed_keys_are_scrubbed() -> None:
    line = _capture(reason="user patient@example.org sent cfd_" + "A" * 43, count=3)
    text = json.dumps(line)
    assert "patient@example.org" not in text
    assert "AAAAAAAAAAAAAAAAAAAA" not in text
    assert line["count"] == 3
    assert _capture(reason={"nested": "x"})["reason"] == "[redacted]"
    assert _capture(reason=["a@b.example", 1])["reason"] == ["[redacted]", 1]


def test_control_characters_stay_escaped() -> None:
    buffer = io.StringIO()
    configure_logging("info", "json", stream=buffer)
    structlog.get_logger("test").info('x\r\n{"forged": true}\x1b[31m', reason="a\nb")
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["reason"] == "a\nb"


def test_foreign_log_records_are_masked() -> None:
    import logging  # noqa: PLC0415

    buffer = io.StringIO()
    configure_logging("info", "json", stream=buffer)
    logging.getLogger("some.library").warning("connection from patient@example.org failed")
    text = buffer.getvalue()
    assert "patient@example.org" not in text
    assert json.loads(text.splitlines()[0])["event"] == "foreign_log"


def test_exception_frames_carry_no_message() -> None:
    try:
        raise ValueError("secret row value 4242")  # noqa: TRY301
    except ValueError as exc:
        frames = exception_frames(exc)
    assert frames
    assert "4242" not in " ".join(frames)
