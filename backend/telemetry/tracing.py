"""OpenTelemetry tracing: exporter chosen by settings (``none``, ``console``, ``otlp``).

Spans carry route templates, methods, status codes and request ids only. asyncpg is
instrumented with ``capture_parameters=False``: span attributes hold the SQL text
with its ``$n`` placeholders and never the values bound to them.
"""

from __future__ import annotations

from typing import Literal

from opentelemetry import trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

__all__ = ["configure_tracing"]

_state: dict[str, TracerProvider] = {}


def configure_tracing(
    exporter: Literal["none", "console", "otlp"],
    *,
    service_name: str = "confide",
    endpoint: str | None = None,
    sample_ratio: float = 1.0,
) -> TracerProvider:
    """Install the process's tracer provider once and instrument asyncpg."""
    existing = _state.get("provider")
    if existing is not None:
        return existing
    # Unsampled spans still carry trace ids (for log correlation) but record nothing.
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    span_exporter: SpanExporter | None = None
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415 -- optional path
            OTLPSpanExporter,
        )

        span_exporter = OTLPSpanExporter(endpoint=endpoint, timeout=2)
    if span_exporter is not None:
        # Bounded queue: when the collector is down spans are dropped, never piled up.
        provider.add_span_processor(
            BatchSpanProcessor(span_exporter, max_queue_size=2048, export_timeout_millis=2000)
        )
    trace.set_tracer_provider(provider)
    if sample_ratio > 0:
        # Database spans only when traces are recorded at all: unsampled, they cost and show nothing.
        instrumentor = AsyncPGInstrumentor(capture_parameters=False)  # type: ignore[no-untyped-call] # untyped upstream
        instrumentor.instrument(tracer_provider=provider)
    _state["provider"] = provider
    return provider
