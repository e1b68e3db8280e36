"""Structured logs: one JSON object per line on stdout (what log shippers expect from a
container), or readable console lines when stdout is a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from gateway.observability.request_record import current_record

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure_logging(level: str = "info", service: str = "php-gateway",
                      json_output: bool | None = None) -> None:
    if json_output is None:
        json_output = not sys.stdout.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _add_service(service),
            _add_request_ids,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )


def _add_request_ids(
    _: object, __: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Every line written while a request is served names it (its task's record)."""
    record = current_record.get()
    if record is not None:
        event.setdefault("request_id", record.request_id)
        event.setdefault("trace_id", record.trace_id)
    return event


def _add_service(service: str) -> structlog.types.Processor:
    def processor(
        _: object, __: str, event: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event.setdefault("service", service)
        return event

    return processor
