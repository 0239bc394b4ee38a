"""Logs and traces: structlog JSON with an allow-list, OpenTelemetry spans."""

from backend.telemetry.logs import ALLOWED_LOG_KEYS, configure_logging, exception_frames
from backend.telemetry.tracing import configure_tracing

__all__ = ["ALLOWED_LOG_KEYS", "configure_logging", "configure_tracing", "exception_frames"]
