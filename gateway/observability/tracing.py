"""Request ids and W3C Trace Context for every request, and OpenTelemetry spans when they are
exported.

Every request gets a trace id (the caller's, from a valid `traceparent`, else a new one), a
span id of its own and a request id (a valid incoming `X-Request-ID`, else a new one). PHP
sees them as $_SERVER['TRACE_ID'], ['SPAN_ID'], ['REQUEST_ID'] and ['TRACEPARENT'] (the
header to send on outgoing calls, naming the span PHP runs in); the response carries
`traceparent` and `X-Request-ID`.

Spans: with OTEL_TRACES_EXPORTER=otlp (gateway/observability/otel_export.py installs the
SDK) each request is a SERVER span through opentelemetry-api with the HTTP semantic
conventions, and a PHP script a child span `php` from its submission to its end, with its
wait for a thread as an attribute and an event when a thread took it. Without an exporter
no API call is made at all: the ids are made here, which is all a no-op tracer would give.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from gateway.observability.request_record import RequestRecord
from gateway.protocol.events import Request

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

_HEX = frozenset(b"0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_MAX_REQUEST_ID = 200
_READ = frozenset({b"traceparent", b"tracestate", b"x-request-id"})
# ids must be unique, not secret (the OpenTelemetry SDK draws its own the same way): a
# generator seeded from os.urandom in each process costs a third of a read of os.urandom
_random = random.Random()
_getrandbits = _random.getrandbits


def parse_traceparent(value: bytes) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a valid `traceparent`, else None (W3C Trace
    Context level 1, section 3.2: a malformed header is ignored and a new trace started)."""
    if len(value) < 55 or value[2:3] != b"-" or value[35:36] != b"-" or value[52:53] != b"-":
        return None
    version = value[:2]
    if not set(version) <= _HEX or version == b"ff":
        return None
    if version == b"00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55:56] != b"-":  # a later version may append fields
        return None
    trace_id, span_id, flags = value[3:35], value[36:52], value[53:55]
    if not (set(trace_id) <= _HEX and set(span_id) <= _HEX and set(flags) <= _HEX):
        return None
    trace, span = trace_id.decode(), span_id.decode()
    if trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    # only the sampled bit is defined; others are not passed on (section 3.2.2.5)
    return trace, span, "01" if int(flags, 16) & 1 else "00"


def valid_request_id(value: bytes) -> bool:
    """Visible ASCII, at most 200 bytes: safe in a header, a log line and $_SERVER."""
    return 0 < len(value) <= _MAX_REQUEST_ID and all(0x21 <= c <= 0x7E for c in value)


def new_ids() -> tuple[str, str, str]:
    """A trace id, a span id and a request id, from one draw (three cost three times as
    much)."""
    hex_ = _getrandbits(320).to_bytes(40, "little").hex()  # randbytes() is this, in Python
    trace, span = hex_[:32], hex_[32:48]
    if trace == _ZERO_TRACE or span == _ZERO_SPAN:  # invalid ids (2^-64): draw again
        return new_ids()
    return trace, span, hex_[48:]


# time.monotonic() -> epoch nanoseconds, for spans timed by the PHP bridge's clock
_OFFSET_NS = time.time_ns() - time.monotonic_ns()


def _epoch_ns(monotonic: float) -> int:
    return int(monotonic * 1e9) + _OFFSET_NS


class Tracing:
    """Starts and ends the records (and spans) of one worker process's requests; `tracer`
    is the SDK's when spans are exported, else None."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self.tracer = tracer

    def start(self, request: Request, client: tuple[str, int], server: tuple[str, int],
              tls: bool, started: float) -> RequestRecord:
        traceparents = 0
        traceparent = request_id = b""
        states: list[bytes] = []
        for name, value in request.headers:
            if name not in _READ:  # most fields: one set lookup, not three comparisons
                continue
            if name == b"traceparent":
                traceparents += 1
                traceparent = value
            elif name == b"tracestate":
                states.append(value)  # several fields are one list (RFC 9110 5.3)
            elif name == b"x-request-id":
                request_id = value
        # two traceparent fields make it invalid: there can be only one parent
        parent = parse_traceparent(traceparent) if traceparents == 1 else None
        trace, span, new_rid = new_ids()
        rid = request_id.decode("ascii") if valid_request_id(request_id) else new_rid
        target = request.target.decode("latin-1")
        method = request.method.decode("latin-1")
        if self.tracer is None:
            if parent is not None:
                return RequestRecord(started, method, target, rid, parent[0], span, parent[2])
            # not sampled: nothing of this trace is recorded here
            return RequestRecord(started, method, target, rid, trace, span, "00")
        tracestate = b",".join(states) if parent is not None else b""
        return self._start_span(request, client, server, tls, started, parent, tracestate,
                                target, rid)

    def _start_span(self, request: Request, client: tuple[str, int], server: tuple[str, int],
                    tls: bool, started: float, parent: tuple[str, str, str] | None,
                    tracestate: bytes, target: str, request_id: str) -> RequestRecord:
        from opentelemetry import trace

        assert self.tracer is not None
        context = None
        if parent is not None:
            state = trace.TraceState.from_header([tracestate.decode("latin-1")]) \
                if tracestate else None
            parent_ctx = trace.SpanContext(int(parent[0], 16), int(parent[1], 16),
                                           is_remote=True,
                                           trace_flags=trace.TraceFlags(int(parent[2], 16)),
                                           trace_state=state)
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent_ctx))
        method = request.method.decode("latin-1")
        path, _, query = target.partition("?")
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": path,
            "url.scheme": "https" if tls else "http",
            "network.protocol.name": "http",
            "network.protocol.version": request.http_version,
            "client.address": client[0],
            "client.port": client[1],
            "server.port": server[1],
            "http.request.header.x_request_id": request_id,
        }
        if query:
            attributes["url.query"] = query
        host = request.authority or next((v for n, v in request.headers if n == b"host"), b"")
        if host:  # without its port; an IPv6 literal keeps its brackets
            name = host[: host.find(b"]") + 1] if host.startswith(b"[") else \
                host.partition(b":")[0]
            attributes["server.address"] = name.decode("latin-1")
        agent = next((v for n, v in request.headers if n == b"user-agent"), None)
        if agent is not None:
            attributes["user_agent.original"] = agent.decode("latin-1")
        span = self.tracer.start_span(method, context=context, kind=trace.SpanKind.SERVER,
                                      attributes=attributes,
                                      start_time=_epoch_ns(started))
        sc = span.get_span_context()
        record = RequestRecord(started, method, target, request_id, f"{sc.trace_id:032x}",
                               f"{sc.span_id:016x}", f"{int(sc.trace_flags):02x}")
        record.span = span
        return record

    def end(self, record: RequestRecord, status: int, bytes_sent: int, ended: float) -> None:
        span = record.span
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("http.response.status_code", status)
        span.set_attribute("http.response.body.size", bytes_sent)
        if status >= 500:  # server spans: only 5xx are errors (semantic conventions)
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=_epoch_ns(ended))



def start_php_span(record: RequestRecord, script: str) -> tuple[str, str]:
    """The span PHP runs in, child of the request's: (span id, traceparent) for PHP."""
    if record.span is None:
        return record.span_id, record.traceparent
    from opentelemetry import trace

    span = trace.get_tracer(__name__).start_span(
        "php", context=trace.set_span_in_context(record.span), kind=trace.SpanKind.INTERNAL,
        attributes={"code.filepath": script},
        # the monotonic clock, as every other timestamp of the request's spans: the wall
        # clock the SDK would read drifts from it, and PHP's span began before its parent
        start_time=_epoch_ns(time.monotonic()))
    record.php_span = span
    span_id = f"{span.get_span_context().span_id:016x}"
    return span_id, f"00-{record.trace_id}-{span_id}-{record.trace_flags}"



def end_php_span(record: RequestRecord, fatal: bool, timed_out: bool) -> None:
    """Ends the `php` span once the bridge says the script is done (called by the pool)."""
    span = record.php_span
    record.php_span = None
    from opentelemetry.trace import Status, StatusCode

    wait = record.php_wait
    if wait is not None:
        span.set_attribute("php.queue_wait_seconds", wait)
        span.add_event("php.thread_started", timestamp=_epoch_ns(record.php_started))
    if fatal or timed_out:
        span.set_attribute("error.type", "timeout" if timed_out else "fatal")
        span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=_epoch_ns(record.php_ended or time.monotonic()))
