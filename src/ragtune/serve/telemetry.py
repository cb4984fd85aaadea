"""What the server spent where: Prometheus metrics at ``/metrics`` (admin key) and, when an OTLP
endpoint is configured, the request's spans exported to a collector (Jaeger, Tempo, ...).

The stages are the spans of :mod:`ragtune.tracing` (embed, store.query, rerank, read, generate,
model.load); one span processor turns each finished span into its latency histogram and token
counts, so stage timing is measured once and feeds both outputs. Everything lives in this
server's own registry (no process-global metrics).

Metrics:
  ragtune_http_requests_total{method,route,status}   route = the template (/v1/collections/{name}/search)
  ragtune_http_request_seconds{route}               latency histogram
  ragtune_stage_seconds{stage}                       per-stage latency histogram (from the spans)
  ragtune_generated_tokens_total{kind}              prompt / completion tokens of generations
  ragtune_model_loads_total{kind}                   models loaded (generators, readers, rerankers)
  ragtune_queue_depth{gate}                          calls running + waiting per model gate (503 beyond)
  ragtune_ingest_jobs{status}                        ingestion jobs queued / running
  ragtune_ingest_lag_seconds{collection}            age of the oldest unfinished ingestion job
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from opentelemetry.sdk.trace import SpanProcessor
from pydantic import BaseModel, Field

from ragtune.tracing import TRACER

STAGES = ("embed", "store.query", "rerank", "read", "generate", "model.load")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class TelemetryConfig(BaseModel):
    metrics: bool = Field(True, description="serve Prometheus metrics at /metrics (admin key)")
    otlp_endpoint: str | None = Field(None, description="export spans over OTLP/HTTP, e.g. http://collector:4318/v1/traces")
    service_name: str = "ragtune"


class Telemetry:
    def __init__(self, config: TelemetryConfig, gates: Callable[[], Iterable[tuple[str, int]]],
                 jobs: Callable[[], list]):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ragtune_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("ragtune_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stages = Histogram("ragtune_stage_seconds", "latency of each request stage", ["stage"],
                                buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tokens = Counter("ragtune_generated_tokens", "tokens of generations", ["kind"], registry=self.registry)
        self.loads = Counter("ragtune_model_loads", "models loaded", ["kind"], registry=self.registry)
        self.registry.register(_Live(gates, jobs))
        self.provider: Any = None

    def install_tracing(self) -> None:
        """Route ragtune's spans through an SDK provider with this server's metrics processor (and
        OTLP when configured). An SDK provider the process already has (the operator's own
        OpenTelemetry set-up) is reused rather than replaced."""
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current
        else:
            provider = TracerProvider(resource=Resource.create({"service.name": self.config.service_name}))
            trace.set_tracer_provider(provider)
        provider.add_span_processor(_StageMetrics(self))
        if self.config.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=self.config.otlp_endpoint)))
        self.provider = provider

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StageMetrics(SpanProcessor):
    """A span processor: each finished ragtune stage span becomes a histogram observation."""

    def __init__(self, telemetry: Telemetry):
        self.t = telemetry

    def on_end(self, span) -> None:
        scope = getattr(span, "instrumentation_scope", None)
        if scope is None or scope.name != TRACER or span.name not in STAGES:
            return
        if span.end_time and span.start_time:
            self.t.stages.labels(span.name).observe((span.end_time - span.start_time) / 1e9)
        attrs = span.attributes or {}
        for kind in ("prompt", "completion"):
            if (n := attrs.get(f"tokens.{kind}")) is not None:
                self.t.tokens.labels(kind).inc(float(n))
        if span.name == "model.load":
            self.t.loads.labels(str(attrs.get("kind", "model"))).inc()


class _Live:
    """Gauges read at scrape time: queue depths and ingestion lag are states, not events."""

    def __init__(self, gates: Callable[[], Iterable[tuple[str, int]]], jobs: Callable[[], list]):
        self.gates, self.jobs = gates, jobs

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily("ragtune_queue_depth", "calls running + waiting per model gate", labels=["gate"])
        for name, n in self.gates():
            depth.add_metric([name], n)
        pending = self.jobs()
        jobs = GaugeMetricFamily("ragtune_ingest_jobs", "ingestion jobs not finished", labels=["status"])
        for status in ("queued", "running"):
            jobs.add_metric([status], sum(j.status == status for j in pending))
        lag = GaugeMetricFamily("ragtune_ingest_lag_seconds", "age of the oldest unfinished ingestion job",
                                labels=["collection"])
        oldest: dict[str, float] = {}
        for j in pending:
            oldest[j.collection] = min(oldest.get(j.collection, j.created), j.created)
        now = time.time()
        for coll, created in oldest.items():
            lag.add_metric([coll], now - created)
        return [depth, jobs, lag]


class Metered:
    """ASGI middleware, outermost: every request counted and timed, 401s and 413s included."""

    def __init__(self, app, telemetry: Callable[[], Telemetry]):
        self.app, self.telemetry = app, telemetry

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        started = time.perf_counter()

        async def watched(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            route = getattr(scope.get("route"), "path", None) or ("unauthenticated" if status == 401 else "unmatched")
            t = self.telemetry()
            t.requests.labels(scope["method"], route, str(status)).inc()
            t.latency.labels(route).observe(time.perf_counter() - started)
