"""One span per stage of a request (embed, store query, rerank, read, generate), through the
OpenTelemetry *API*: without an SDK provider (a library user who set none up) every span is a
no-op costing well under a microsecond; ``ragtune serve`` installs one that feeds its Prometheus
stage latencies and, when configured, an OTLP exporter.

Example:
    >>> with stage("embed", texts=1) as span:
    ...     span.set_attribute("tokens", 12)  # on a no-op span, ignored
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

TRACER = "ragtune"


def stage(name: str, **attributes: Any):
    """A span named ``name`` (a context manager yielding it), child of the current one."""
    return trace.get_tracer(TRACER).start_as_current_span(name, attributes=attributes or None)


def stage_start(name: str, **attributes: Any) -> trace.Span:
    """A span the caller ends itself (``span.end()``): for work that spans a generator's yields,
    where a ``with`` span would stay the current one inside the caller's code."""
    return trace.get_tracer(TRACER).start_span(name, attributes=attributes or None)
