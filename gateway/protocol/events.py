"""Events between the sans-IO protocol adapters and the per-request pipeline.

The adapters (http1, http2, http3) turn bytes into these events and serialise the
pipeline's answers (their send_* methods); they never touch sockets. Every event but
ProtocolError carries the stream id (always 1 on HTTP/1.1, the h2/h3 stream id otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]


# Request and Body are not frozen (treat them as immutable all the same): a frozen
# dataclass's __init__ sets every field through object.__setattr__, ~1 µs per request
@dataclass(slots=True, unsafe_hash=True)
class Request:
    stream_id: int
    method: bytes
    target: bytes  # raw request-target as sent: path plus optional ?query
    headers: Headers  # lower-case names, in arrival order
    http_version: str  # "1.0", "1.1", "2", "3"
    authority: bytes = b""  # :authority on h2/h3, Host on HTTP/1
    scheme: str = "http"
    # Content-Length if the request declared one, None for chunked / h2 / h3 without it
    content_length: int | None = None
    has_body: bool = True  # False when the request is known to carry no body
    # non-zero: the adapter refuses the request with this status (413, 431, 501...); the
    # server answers it through the pipeline's chain without running the router
    refused: int = 0


@dataclass(slots=True, unsafe_hash=True)
class Body:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class EndBody:
    stream_id: int


@dataclass(frozen=True, slots=True)
class BodyTooLarge:
    """The request body passed MAX_BODY_SIZE: answer 413 (or abort a started response);
    the adapter takes no more of it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer abandoned the stream (h2/h3 RST_STREAM, or the connection went away)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Malformed input. The adapter has already queued the error response (if any)."""

    status: int
    reason: str
    close: bool = True
    # what is known of the refused request (the head when it parsed, else at least its
    # Accept field), so the answer can still be shaped for the client (an HTML error page)
    request: Request | None = None


Event = Request | Body | EndBody | BodyTooLarge | StreamReset | ProtocolError
