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


def install(config: Config, worker: int) -> tuple[Tracer, TracerProvider]:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
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
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
        endpoint=config.otlp_traces_url)))
    trace.set_tracer_provider(provider)
    return trace.get_tracer("php-gateway"), provider
