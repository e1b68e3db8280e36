"""OTEL_TRACES_EXPORTER=otlp: the OpenTelemetry SDK's tracer provider with a batching OTLP/HTTP
exporter, installed as the process's global provider. Imported only then: the SDK is an
optional extra (`pip install 'php-gateway[otel]'`), and without it no span is made at all."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from gateway.config import Config

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer


def traces_url(config: Config) -> str:
    """Where spans are posted: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, else
    OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318) plus /v1/traces, as the SDK
    documents them."""
    if config.otel_exporter_otlp_traces_endpoint:
        return config.otel_exporter_otlp_traces_endpoint
    base = config.otel_exporter_otlp_endpoint or "http://localhost:4318"
    return base.rstrip("/") + "/v1/traces"


def install(config: Config, worker: int) -> tuple[Tracer, TracerProvider]:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({
        "service.name": config.otel_service_name,
        "service.instance.id": f"{socket.gethostname()}/{os.getpid()}",
        "process.pid": os.getpid(),
        "php_gateway.worker": worker,
    })
    provider = TracerProvider(resource=resource)
    # batches leave from the SDK's own thread: the event loop never waits on the collector
    if config.otel_exporter_otlp_protocol != "http/protobuf":  # config refuses the others
        raise ValueError(f"unsupported OTLP protocol {config.otel_exporter_otlp_protocol!r}")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
        endpoint=traces_url(config))))
    trace.set_tracer_provider(provider)
    return trace.get_tracer("php-gateway"), provider
