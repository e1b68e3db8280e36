"""Knobs of the connection layer (gateway/server/), with the defaults nginx users expect."""

from __future__ import annotations

from dataclasses import dataclass, fields

from gateway.protocol.http1 import PARSERS

HTTP2_IMPLS = ("nghttp2", "h2")  # gateway/server/h2_connection.py maps them to adapters

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """All durations are seconds, all sizes bytes.

    Defaults and their models:
    - header_timeout 5 s: tokio_php HEADER_TIMEOUT_SECS (nginx client_header_timeout is 60 s);
      runs from accept (or from the first byte of a keep-alive request) to the full head.
    - idle_timeout 60 s: tokio_php IDLE_TIMEOUT_SECS, longer than common LB idle timeouts.
    - body_timeout 60 s: nginx client_body_timeout; the longest gap between two body reads.
    - send_timeout 60 s: nginx send_timeout; how long a response may stay blocked on a
      client that does not read (HTTP/1 socket buffer, HTTP/2 flow-control window).
    - max_header_bytes 16 KiB: h11's default; nginx's large_client_header_buffers
      (4 x 8k) allows up to 32 KiB in total, raise it if big cookies need that.
    - max_request_line 8 KiB: one nginx large header buffer.
    - max_body_bytes 64 MiB: nginx client_max_body_size is 1 MiB, too small for PHP
      uploads, PHP's post_max_size still applies; 0 means no limit.
    - h2_max_concurrent_streams 100, h2_max_header_list_size 64 KiB: h2 / Hypercorn.
    - h2_rapid_reset_limit / _window: more than 100 peer resets of unfinished streams
      within 30 s ends the connection with ENHANCE_YOUR_CALM (CVE-2023-44487).
    """

    http1_parser: str = "httptools"
    http2_impl: str = "nghttp2"
    header_timeout: float = 5.0
    idle_timeout: float = 60.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0
    tls_handshake_timeout: float = 10.0
    drain_timeout: float = 30.0
    max_header_bytes: int = 16 * KIB
    max_request_line: int = 8 * KIB
    max_body_bytes: int = 64 * MIB
    h2_max_concurrent_streams: int = 100
    h2_max_header_list_size: int = 64 * KIB
    h2_rapid_reset_limit: int = 100
    h2_rapid_reset_window: float = 30.0
    # added to every response on every protocol (HTTP/3 puts Alt-Svc here)
    extra_response_headers: tuple[tuple[str, str], ...] = ()
    server_header: str | None = "php-gateway"  # None: no server header at all
    backlog: int = 2048
    max_connections: int = 4096  # per worker process, all listeners together

    def __post_init__(self) -> None:
        if self.http1_parser not in PARSERS:
            raise ValueError(f"http1_parser must be one of {PARSERS}, not {self.http1_parser!r}")
        if self.http2_impl not in HTTP2_IMPLS:
            raise ValueError(f"http2_impl must be one of {HTTP2_IMPLS}, not {self.http2_impl!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{f.name} must not be negative (got {value})")
        for name in ("header_timeout", "idle_timeout", "body_timeout", "send_timeout",
                     "tls_handshake_timeout", "max_header_bytes", "max_request_line",
                     "h2_max_concurrent_streams", "h2_max_header_list_size",
                     "h2_rapid_reset_limit", "backlog", "max_connections"):
            if getattr(self, name) == 0:
                raise ValueError(f"{name} must be positive")

    @property
    def body_limit(self) -> int:
        """max_body_bytes with 0 (no limit) turned into a number the adapters compare against."""
        return self.max_body_bytes or 1 << 62
