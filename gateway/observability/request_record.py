"""What the observing middleware knows of the request being served: its ids, its kind and
its PHP timings. One record per request, reachable from anywhere inside the request's task
through `current_record` (each request runs in a task of its own, so the variable never
leaks into another request), and from the PHP pool through the call it made."""

from __future__ import annotations

import contextvars
from typing import Any


class RequestRecord:
    __slots__ = (
        "kind",
        "method",
        "owner",
        "php_ended",
        "php_span",
        "php_started",
        "php_submitted",
        "request_id",
        "span",
        "span_id",
        "started",
        "trace_flags",
        "trace_id",
        "traceparent",
        "uri",
    )

    def __init__(self, started: float, method: str, uri: str, request_id: str, trace_id: str,
                 span_id: str, trace_flags: str) -> None:
        self.started = started  # time.monotonic() when the middleware saw the request
        self.method = method
        self.uri = uri
        self.request_id = request_id
        self.trace_id = trace_id  # 32 lower-case hex digits
        self.span_id = span_id  # 16 hex digits: the server span of this request
        self.trace_flags = trace_flags  # "01" sampled, "00" not
        self.traceparent = f"00-{trace_id}-{span_id}-{trace_flags}"
        self.kind = ""  # "php", "internal"; empty until an endpoint says (static or error)
        self.owner: object = None  # the request stream it describes
        self.span: Any = None  # the OpenTelemetry span when spans are exported
        self.php_span: Any = None  # its child for the PHP script, until the script is done
        # time.monotonic() values set by the PHP pool: queued, taken by a thread, done (0: not)
        self.php_submitted = 0.0
        self.php_started = 0.0
        self.php_ended = 0.0

    @property
    def php_wait(self) -> float | None:
        """Seconds the request waited for a PHP thread, once one took it."""
        if self.php_started and self.php_submitted:
            return max(0.0, self.php_started - self.php_submitted)
        return None

    @property
    def php_run(self) -> float | None:
        """Seconds PHP ran the script, once it was done."""
        if self.php_ended and self.php_started:
            return self.php_ended - self.php_started
        return None


current_record: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "current_record", default=None)
