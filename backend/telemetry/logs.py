"""structlog configured by us: JSON out, allow-listed keys only, redaction last.

Only keys named in :data:`ALLOWED_LOG_KEYS` reach the output; any other key is
dropped and its *name* listed under ``dropped``. Values of allowed keys still pass a
scrubber that masks anything shaped like an email address, a bearer token, a long
base64 or hex run (ciphertext, keys), so a mistake upstream does not become a leak.
Exceptions are logged as their type and frames (file, line, function), never their
message, which may carry database row values.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["ALLOWED_LOG_KEYS", "configure_logging", "exception_frames", "redact"]

ALLOWED_LOG_KEYS: frozenset[str] = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "logger",
        "request_id",
        "trace_id",
        "instance",
        "method",
        "route",
        "status",
        "duration_ms",
        "error_type",
        "frames",
        "sqlstate",
        "constraint",
        "outcome",
        "audit_type",
        "account_id",
        "org_id",
        "role",
        "reason",
        "count",
        "version",
        "migration",
        "host",
        "port",
        "workers",
        "server",
        "database",
        "dropped",
        "retry_after",
        "tree_size",  # audit log integrator: leaves in the log
        "lag_ms",  # audit log integrator: age of the oldest event of a batch when signed
    }
)

_EMAIL_RE = re.compile(r"[^\s@\"']{1,64}@[^\s@\"']{1,255}")
_LONG_B64_RE = re.compile(r"[A-Za-z0-9+/_=-]{32,}")
_MASK = "[redacted]"
# Values we generate ourselves (ids are hex and would trip the token scrubber).
_TRUSTED_KEYS = frozenset({"timestamp", "level", "logger", "request_id", "trace_id"})


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        value = _EMAIL_RE.sub(_MASK, value)
        return _LONG_B64_RE.sub(_MASK, value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return _MASK


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Keep allow-listed keys, scrub their values, name what was dropped."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in event_dict.items():
        if key in ALLOWED_LOG_KEYS:
            kept[key] = value if key in _TRUSTED_KEYS else _scrub(value)
        else:
            dropped.append(key)
    if dropped:
        kept["dropped"] = sorted(dropped)
    return kept


def exception_frames(exc: BaseException, limit: int = 12) -> list[str]:
    """An exception's innermost frames as ``file:line:function``, without its message."""
    frames = traceback.extract_tb(exc.__traceback__)[-limit:]
    return [f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}:{frame.name}" for frame in frames]


def _add_logger_name(logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name and "logger" not in event_dict:
        event_dict["logger"] = name
    return event_dict


def configure_logging(
    level: Literal["debug", "info", "warning", "error"] = "info",
    fmt: Literal["json", "console"] = "json",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog (and route stdlib logging through the same allow-list)."""
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Third-party loggers (uvicorn, asyncpg, opentelemetry) go through the same redaction.
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _stdlib_to_event,
                redact,
                renderer,
            ],
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if level == "debug" else logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True


def _stdlib_to_event(_logger: WrappedLogger, _method: str, event_dict: MutableMapping[str, Any]) -> EventDict:
    # A foreign record's message may hold anything (uvicorn prints client addresses,
    # asyncpg prints server notices): keep its logger name and level, mask the text.
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
    event_dict["event"] = "foreign_log"
    return dict(event_dict)
