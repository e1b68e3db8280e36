"""HTTP/2 adapters, sans-IO: frames come from (and go back to) h2's client H2Connection.
Every test runs against both implementations (HTTP2_IMPL): nghttp2 and h2."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from hpack import Encoder, NeverIndexedHeaderTuple
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
)

from gateway.protocol.events import Body, BodyTooLarge, EndBody, ProtocolError, Request, StreamReset
from gateway.protocol.http1 import Http1Adapter, SwitchToH2
from gateway.protocol.http2 import (
    CONNECTION_WINDOW,
    FLOOD_BASE,
    STREAM_WINDOW,
    ConnectionClosed,
    H2Event,
    Http2Adapter,
    WindowOpened,
)
from gateway.protocol.http2_nghttp2 import Nghttp2Adapter
from gateway.protocol.response_headers import ResponseDefaults

DATE = b"Thu, 01 Jan 2026 00:00:00 GMT"
GET = [(b":method", b"GET"), (b":path", b"/index.php?x=1"), (b":scheme", b"https"),
       (b":authority", b"example.test")]


IMPLS = {"nghttp2": Nghttp2Adapter, "h2": Http2Adapter}
Adapter: type[Http2Adapter] = Http2Adapter  # the implementation under test (see impl)


@pytest.fixture(autouse=True, params=list(IMPLS))
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(sys.modules[__name__], "Adapter", IMPLS[request.param])
    return str(request.param)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client_conn() -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    return h2.connection.H2Connection(config)


def connect(**kwargs: object) -> tuple[Http2Adapter, h2.connection.H2Connection]:
    server = Adapter(defaults=ResponseDefaults(date=DATE), **kwargs)  # type: ignore[arg-type]
    server.initiate()
    client = client_conn()
    client.initiate_connection()
    assert server.receive_data(client.data_to_send()) == []
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())  # the client's SETTINGS ACK
    return server, client


def to_server(server: Http2Adapter, client: h2.connection.H2Connection) -> list[H2Event]:
    return server.receive_data(client.data_to_send())


def to_client(server: Http2Adapter, client: h2.connection.H2Connection) -> list[object]:
    return list(client.receive_data(server.data_to_send()))


def frames(data: bytes) -> Iterator[Frame]:
    view = memoryview(data)
    while view:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        yield frame
        view = view[9 + length :]


def test_settings_and_connection_window() -> None:
    _, client = connect(max_concurrent_streams=7, max_header_list_size=4096)
    codes = h2.settings.SettingCodes
    assert client.remote_settings[codes.MAX_CONCURRENT_STREAMS] == 7
    assert client.remote_settings[codes.MAX_HEADER_LIST_SIZE] == 4096
    assert client.remote_settings[codes.INITIAL_WINDOW_SIZE] == STREAM_WINDOW
    assert client.outbound_flow_control_window == CONNECTION_WINDOW


def test_get_request_and_response() -> None:
    server, client = connect()
    client.send_headers(1, [*GET, (b"accept", b"*/*"), (b"cookie", b"a=1"), (b"cookie", b"b=2")],
                        end_stream=True)
    request, end = to_server(server, client)
    assert isinstance(request, Request)
    assert request.stream_id == 1
    assert request.method == b"GET"
    assert request.target == b"/index.php?x=1"
    assert request.http_version == "2"
    assert request.authority == b"example.test"
    assert request.scheme == "https"
    assert request.has_body is False
    assert request.headers == [(b"accept", b"*/*"), (b"cookie", b"a=1; b=2")]
    assert end == EndBody(1)

    server.send_response(1, 200, [(b"content-type", b"text/plain"), (b"content-length", b"5"),
                                  (b"connection", b"keep-alive"), (b"server", b"Apache")])
    assert server.send_data(1, b"hello") == 5
    server.end_stream(1)
    events = to_client(server, client)
    response = events[0]
    assert isinstance(response, h2.events.ResponseReceived)
    assert response.headers == [
        (b":status", b"200"), (b"date", DATE), (b"server", b"php-gateway"),
        (b"content-type", b"text/plain"), (b"content-length", b"5"),
    ]
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert data == b"hello"
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    server.stream_finished(1)
    assert server.active_streams == 0


def test_request_body_is_flow_controlled_until_consumed() -> None:
    server, client = connect()
    client.send_headers(1, [(b":method", b"POST"), *GET[1:]])
    to_server(server, client)
    for _ in range(3):
        client.send_data(1, b"x" * 16384)
    client.send_data(1, b"x" * (STREAM_WINDOW - 3 * 16384))
    events = to_server(server, client)
    assert b"".join(e.data for e in events if isinstance(e, Body)) == b"x" * STREAM_WINDOW
    to_client(server, client)
    assert client.local_flow_control_window(1) == 0  # nothing consumed: no window granted
    server.acknowledge(1, STREAM_WINDOW)
    events = to_client(server, client)
    assert any(isinstance(e, h2.events.WindowUpdated) and e.stream_id == 1 for e in events)
    assert client.local_flow_control_window(1) == STREAM_WINDOW
    client.end_stream(1)
    assert to_server(server, client) == [EndBody(1)]


def test_padding_is_returned_at_once() -> None:
    server, client = connect()
    client.send_headers(1, [(b":method", b"POST"), *GET[1:]])
    to_server(server, client)
    for _ in range(130):  # 130 x (1 data + 255 padding + 1): past h2's half-window threshold
        client.send_data(1, b"a", pad_length=255)
    events = to_server(server, client)
    assert b"".join(e.data for e in events if isinstance(e, Body)) == b"a" * 130
    updates = [e for e in to_client(server, client) if isinstance(e, h2.events.WindowUpdated)]
    assert any(e.stream_id == 1 for e in updates)  # granted although the app read nothing


def test_send_waits_for_the_peer_window() -> None:
    server, client = connect()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    client.send_headers(1, GET, end_stream=True)
    to_server(server, client)
    server.send_response(1, 200, [])
    assert server.send_data(1, b"0123456789abcdef") == 10
    assert server.sendable(1) == 0
    assert server.send_data(1, b"abcdef") == 0
    to_client(server, client)
    client.increment_flow_control_window(6, stream_id=1)
    assert WindowOpened(1) in to_server(server, client)
    assert server.send_data(1, b"abcdef") == 6


def test_peer_settings_change_opens_every_window() -> None:
    server, client = connect()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100000})
    assert WindowOpened(0) in to_server(server, client)


def test_peer_reset_becomes_stream_reset() -> None:
    server, client = connect()
    client.send_headers(1, [(b":method", b"POST"), *GET[1:]])
    to_server(server, client)
    client.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    assert to_server(server, client) == [StreamReset(1)]
    assert server.streams_reset_by_peer == 1
    # DATA already in flight for the reset stream is not delivered
    server.stream_finished(1)
    assert server.active_streams == 0


def open_and_reset(server: Http2Adapter, client: h2.connection.H2Connection,
                   count: int, first: int = 1) -> list[H2Event]:
    events: list[H2Event] = []
    for stream_id in range(first, first + 2 * count, 2):
        client.send_headers(stream_id, GET, end_stream=True)
        client.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        events += to_server(server, client)
        for event in events:
            if isinstance(event, Request):
                server.stream_finished(event.stream_id)  # the app stops at once
    return events


def test_rapid_reset_is_stopped_with_enhance_your_calm() -> None:
    clock = Clock()
    server, client = connect(rapid_reset_limit=20, rapid_reset_window=10.0, clock=clock)
    events = open_and_reset(server, client, 19)
    assert not any(isinstance(e, ConnectionClosed) for e in events)
    events = open_and_reset(server, client, 1, first=39)
    assert events[-1] == ConnectionClosed(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
                                          "too many stream resets")
    assert server.closed
    goaway = [f for f in frames(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert goaway[-1].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_resets_spread_over_time_are_allowed() -> None:
    clock = Clock()
    server, client = connect(rapid_reset_limit=20, rapid_reset_window=10.0, clock=clock)
    for batch in range(5):
        events = open_and_reset(server, client, 10, first=1 + batch * 20)
        clock.now += 11.0
        assert not any(isinstance(e, ConnectionClosed) for e in events)
    assert not server.closed


def test_streams_whose_app_still_runs_count_against_the_limit() -> None:
    server, client = connect(max_concurrent_streams=2)
    for stream_id in (1, 3):
        client.send_headers(stream_id, GET, end_stream=True)
        client.reset_stream(stream_id)
    to_server(server, client)  # both apps keep running (stream_finished not called)
    client.send_headers(5, GET, end_stream=True)
    assert to_server(server, client) == []
    resets = [f for f in frames(server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [
        (5, h2.errors.ErrorCodes.REFUSED_STREAM)
    ]
    server.stream_finished(1)
    client.send_headers(7, GET, end_stream=True)
    assert isinstance(to_server(server, client)[0], Request)


def answer(server: Http2Adapter, stream_id: int, status: int) -> None:
    """What the server's chain does with a refused request: a short answer, then finish."""
    server.send_response(stream_id, status, [(b"content-length", b"0")])
    server.end_stream(stream_id)
    server.stream_finished(stream_id)


def test_declared_body_over_limit_is_refused_with_413() -> None:
    server, client = connect(max_body_bytes=1000)
    client.send_headers(1, [(b":method", b"POST"), *GET[1:], (b"content-length", b"1001")])
    (request,) = to_server(server, client)
    assert isinstance(request, Request) and request.refused == 413
    answer(server, 1, 413)
    events = to_client(server, client)
    response = events[0]
    assert isinstance(response, h2.events.ResponseReceived)
    assert (b":status", b"413") in response.headers
    assert any(isinstance(e, h2.events.StreamReset) and e.error_code == 0 for e in events)


def test_streamed_body_over_limit_stops_the_upload() -> None:
    server, client = connect(max_body_bytes=1000)
    client.send_headers(1, [(b":method", b"POST"), *GET[1:]])
    client.send_data(1, b"a" * 600)
    events = to_server(server, client)
    assert events[1] == Body(1, b"a" * 600)
    client.send_data(1, b"b" * 600)
    assert to_server(server, client) == [BodyTooLarge(1)]
    answer(server, 1, 413)
    events = to_client(server, client)
    assert isinstance(events[0], h2.events.ResponseReceived)
    assert (b":status", b"413") in events[0].headers
    assert any(isinstance(e, h2.events.StreamReset) and e.error_code == 0 for e in events)


def test_interim_response_before_the_final_one() -> None:
    server, client = connect()
    client.send_headers(1, GET, end_stream=True)
    to_server(server, client)
    server.send_interim(1, 103, [(b"link", b"</a.css>; rel=preload"), (b"connection", b"x")])
    server.send_response(1, 200, [(b"content-length", b"0")])
    server.end_stream(1)
    server.send_interim(1, 103, [(b"link", b"</late.css>")])  # after the response: dropped
    events = to_client(server, client)
    assert isinstance(events[0], h2.events.InformationalResponseReceived)
    assert events[0].headers == [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")]
    assert isinstance(events[1], h2.events.ResponseReceived)
    assert sum(isinstance(e, h2.events.InformationalResponseReceived) for e in events) == 1


def test_head_response_ends_with_the_headers() -> None:
    server, client = connect()
    client.send_headers(1, [(b":method", b"HEAD"), *GET[1:]], end_stream=True)
    to_server(server, client)
    server.send_response(1, 200, [(b"content-length", b"5")])
    assert not server.body_allowed(1)
    assert server.send_data(1, b"hello") == 5  # discarded
    server.end_stream(1)
    events = to_client(server, client)
    assert isinstance(events[0], h2.events.ResponseReceived)
    assert isinstance(events[1], h2.events.StreamEnded)
    assert not any(isinstance(e, h2.events.DataReceived) for e in events)


def test_response_header_checks() -> None:
    server, client = connect()
    client.send_headers(1, GET, end_stream=True)
    to_server(server, client)
    with pytest.raises(ValueError):
        server.send_response(1, 200, [(b"x-evil", b"a\r\nb")])
    client.send_headers(3, GET, end_stream=True)
    to_server(server, client)
    server.send_response(3, 200, [(b"content-length", b"4")])
    with pytest.raises(RuntimeError):
        server.send_data(3, b"too long")
    server.send_data(3, b"ab")
    with pytest.raises(RuntimeError):
        server.end_stream(3)


MALFORMED = [
    [*GET, (b"X-Upper", b"1")],
    [*GET, (b"bad name", b"1")],
    [*GET, (b"x-colon:", b"1")],
    [*GET, (b"", b"1")],
    [*GET, (b"connection", b"keep-alive")],
    [*GET, (b"transfer-encoding", b"chunked")],
    [*GET, (b"te", b"gzip")],
    [*GET, (b"x-nul", b"a\x00b")],
    [*GET, (b"x-lf", b"a\nb")],
    [*GET, (b"x-space", b" padded")],
    [*GET, (b"x-tab", b"padded\t")],
    [*GET, (b"host", b"other.test")],  # differs from :authority
    [(b":method", b"GET"), (b"x-a", b"1"), (b":path", b"/"), (b":scheme", b"https"),
     (b":authority", b"a")],  # pseudo-header after a regular field
    [*GET, (b":method", b"POST")],  # repeated
    [*GET, (b":protocol", b"websocket")],  # extended CONNECT is not offered
    [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a")],  # no :path
    [(b":method", b"GET"), (b":path", b""), (b":scheme", b"https"), (b":authority", b"a")],
    [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https")],  # no authority, no host
    [(b":path", b"/"), (b":scheme", b"https"), (b":authority", b"a")],  # no :method
]


@pytest.mark.parametrize("fields", MALFORMED)
def test_malformed_request_resets_only_its_stream(fields: list[tuple[bytes, bytes]]) -> None:
    server = Adapter(defaults=ResponseDefaults(date=DATE))
    server.initiate()
    raw = h2.connection.H2Connection(h2.config.H2Configuration(  # sends what it is given
        client_side=True, header_encoding=None, validate_outbound_headers=False,
        normalize_outbound_headers=False))
    raw.initiate_connection()
    server.receive_data(raw.data_to_send())
    raw.receive_data(server.data_to_send())
    server.data_to_send()
    raw.send_headers(1, fields, end_stream=True)
    raw.send_headers(3, GET, end_stream=True)
    events = server.receive_data(raw.data_to_send())
    assert [type(e) for e in events] == [Request, EndBody]  # only stream 3 reaches the app
    assert events[0].stream_id == 3
    resets = [f for f in frames(server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [
        (1, h2.errors.ErrorCodes.PROTOCOL_ERROR)]
    assert not server.closed


def test_connect_is_refused() -> None:
    server, client = connect()
    client.send_headers(1, [(b":method", b"CONNECT"), (b":authority", b"example.test:443")])
    (request,) = to_server(server, client)
    assert isinstance(request, Request) and request.refused == 501
    answer(server, 1, 501)
    response = to_client(server, client)[0]
    assert isinstance(response, h2.events.ResponseReceived)
    assert (b":status", b"501") in response.headers


def test_drain_refuses_new_streams_and_lets_running_ones_finish() -> None:
    server, client = connect()
    client.send_headers(1, GET, end_stream=True)
    to_server(server, client)
    server.start_drain()
    goaway = [f for f in frames(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert [(f.last_stream_id, f.error_code) for f in goaway] == [(1, 0)]
    assert not server.closed
    client.send_headers(3, GET, end_stream=True)  # crossed the GOAWAY in flight
    assert to_server(server, client) == []
    refused = [f for f in frames(server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in refused] == [
        (3, h2.errors.ErrorCodes.REFUSED_STREAM)
    ]
    server.send_response(1, 200, [(b"content-length", b"2")])
    server.send_data(1, b"ok")
    server.end_stream(1)
    sent = list(frames(server.data_to_send()))
    assert any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in sent)
    server.stream_finished(1)
    assert server.active_streams == 0
    server.close()
    goaway = [f for f in frames(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert [(f.last_stream_id, f.error_code) for f in goaway] == [(1, 0)]


def test_idle_drain_closes_at_once() -> None:
    server, client = connect()
    server.start_drain()
    assert server.closed
    events = to_client(server, client)
    assert isinstance(events[-1], h2.events.ConnectionTerminated)
    assert events[-1].error_code == 0


def test_peer_goaway_and_protocol_errors_close() -> None:
    server, client = connect()
    client.close_connection()
    assert to_server(server, client) == [ConnectionClosed(0, "peer sent GOAWAY")]
    assert server.closed

    server, client = connect()
    closed = server.receive_data(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    assert len(closed) == 1 and isinstance(closed[0], ConnectionClosed)
    assert closed[0].error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    goaway = [f for f in frames(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert goaway and goaway[0].error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR


def test_body_completing_its_content_length_carries_end_stream() -> None:
    server, client = connect()
    client.send_headers(1, GET, end_stream=True)
    to_server(server, client)
    server.send_response(1, 200, [(b"content-length", b"5")])
    assert server.send_data(1, b"hel") == 3
    assert server.send_data(1, b"lo") == 2
    server.end_stream(1)  # already ended by the last DATA frame: sends nothing more
    data_frames = [f for f in frames(server.data_to_send()) if isinstance(f, DataFrame)]
    # h2 frames each call, nghttp2 what is queued when it sends: never an empty last frame
    assert b"".join(f.data for f in data_frames) == b"hello"
    assert ["END_STREAM" in f.flags for f in data_frames][-1:] == [True]
    assert all(f.data for f in data_frames)


def test_responses_after_a_peer_goaway_are_dropped_quietly() -> None:
    # a load generator ends with GOAWAY + close while apps still answer its last streams
    server, client = connect()
    client.send_headers(1, GET, end_stream=True)
    client.send_headers(3, GET, end_stream=True)
    to_server(server, client)
    server.send_response(1, 200, [(b"content-length", b"2")])
    assert server.send_data(1, b"ok") == 2
    server.end_stream(1)
    to_client(server, client)
    client.close_connection()
    assert to_server(server, client) == [ConnectionClosed(0, "peer sent GOAWAY")]
    server.send_response(3, 200, [(b"content-length", b"5")])  # h2 itself would raise here
    assert server.send_data(3, b"later") == 5
    server.end_stream(3)
    assert server.data_to_send() == b""


def test_header_list_over_the_limit_closes() -> None:
    server, client = connect(max_header_list_size=1024)
    client.send_headers(1, [*GET, (b"x-big", b"v" * 2000)], end_stream=True)
    events = to_server(server, client)
    assert len(events) == 1 and isinstance(events[0], ConnectionClosed)


def test_prior_knowledge_from_the_http1_adapter() -> None:
    client = client_conn()
    client.initiate_connection()
    client.send_headers(1, GET, end_stream=True)
    h1 = Http1Adapter()
    h1.receive_data(client.data_to_send())
    switch = h1.next_event()
    assert isinstance(switch, SwitchToH2)
    server = Adapter(defaults=ResponseDefaults(date=DATE), scheme="http")
    server.initiate()
    request, end = server.receive_data(switch.data)
    assert isinstance(request, Request) and request.target == b"/index.php?x=1"
    assert request.scheme == "http"
    assert end == EndBody(1)


def test_h2c_upgrade_answers_on_stream_1() -> None:
    client = client_conn()
    settings = client.initiate_upgrade_connection()
    assert settings is not None
    h1 = Http1Adapter()
    h1.receive_data(
        b"GET /up HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n" + client.data_to_send()
    )
    switch = h1.next_event()
    assert isinstance(switch, SwitchToH2) and switch.request is not None
    server = Adapter(defaults=ResponseDefaults(date=DATE), scheme="http")
    request, end = server.initiate_upgrade(switch.settings, switch.request)
    assert isinstance(request, Request)
    assert (request.stream_id, request.target, request.http_version) == (1, b"/up", "2")
    assert request.authority == b"example.test"
    assert all(name not in (b"upgrade", b"http2-settings") for name, _ in request.headers)
    assert end == EndBody(1)
    assert server.receive_data(switch.data) == []  # the client's preface and SETTINGS
    server.send_response(1, 200, [(b"content-length", b"2")])
    server.send_data(1, b"ok")
    server.end_stream(1)
    events = to_client(server, client)
    response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
    assert response.stream_id == 1 and (b":status", b"200") in response.headers
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"ok"


def test_bad_upgrade_settings_close() -> None:
    server = Adapter()
    request = Request(1, b"GET", b"/", [], "1.1")
    events = server.initiate_upgrade(b"%%%not base64", request)
    assert len(events) == 1 and isinstance(events[0], ConnectionClosed)
    assert not isinstance(events[0], ProtocolError)


def test_frame_repr_text_is_unchanged_by_the_short_cut() -> None:
    import binascii

    from gateway.protocol.http2 import _short_data_repr

    def hyperframe_original(data: bytes | None) -> str:
        if not data:
            return "None"
        r = binascii.hexlify(data).decode("ascii")
        return "<hex:" + (r[:20] + "..." if len(r) > 20 else r) + ">"

    for data in [None, b"", *(bytes(range(n)) for n in range(0, 30)), b"\xff" * 10_000]:
        assert _short_data_repr(data) == hyperframe_original(data)
    assert "<hex:" in repr(DataFrame(1, data=b"x" * 10_000))


def _big_client(window: int) -> tuple[Http2Adapter, h2.connection.H2Connection]:
    server, client = connect()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    if window > 65535:
        client.increment_flow_control_window(window - 65535)
    to_server(server, client)
    to_client(server, client)
    return server, client


@pytest.mark.parametrize("declared", [True, False])
@pytest.mark.parametrize("bulk", [True, False])
def test_large_bodies_arrive_whole_and_book_the_same_windows(
    declared: bool, bulk: bool, impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk DATA path against h2's own, frame by frame: same bytes, same windows."""
    if impl != "h2" and not bulk:
        pytest.skip("the bulk path is the h2 adapter's")
    if not bulk:
        monkeypatch.setattr(Http2Adapter, "_send_bulk", lambda *args: 0)
    body = bytes(range(256)) * 400 + b"tail"  # 102,404 bytes: six full frames and a piece
    server, client = _big_client(1 << 20)
    client.send_headers(1, GET, end_stream=True)
    to_server(server, client)
    length = [(b"content-length", str(len(body)).encode())] if declared else []
    server.send_response(1, 200, length)
    view, sent = memoryview(body), 0
    while sent < len(body):
        taken = server.send_data(1, view[sent:])
        assert taken > 0
        sent += taken
    server.end_stream(1)
    received, ended = b"", False
    for event in to_client(server, client):
        if isinstance(event, h2.events.DataReceived):
            received += event.data
        ended = ended or isinstance(event, h2.events.StreamEnded)
    assert received == body and ended
    if impl == "h2":
        assert server._h2.outbound_flow_control_window == (1 << 20) - len(body)
    assert client.inbound_flow_control_window == (1 << 20) - len(body)


def test_bulk_frames_stop_at_the_peer_window() -> None:
    server, client = _big_client(65535)  # the protocol's default windows
    client.send_headers(1, GET, end_stream=True)
    to_server(server, client)
    server.send_response(1, 200, [(b"content-length", b"200000")])
    body = b"z" * 200_000
    taken = server.send_data(1, body)
    assert 0 < taken <= 65535
    while (more := server.send_data(1, body[taken:])) > 0:
        taken += more
    assert taken == 65535  # exactly the window: then the caller waits for WINDOW_UPDATE
    received = sum(len(e.data) for e in to_client(server, client)
                   if isinstance(e, h2.events.DataReceived))
    assert received == 65535


# -- floods of frames that move no request forward ---------------------------------------------


def _empty_data(client: h2.connection.H2Connection) -> None:
    """An empty DATA frame on stream 1 (opened by the first call)."""
    if not client.open_outbound_streams:
        client.send_headers(1, GET, end_stream=False)
    client.send_data(1, b"")


def _flood(send: object) -> tuple[list[H2Event], bytes]:
    server, client = connect()
    events: list[H2Event] = []
    for _ in range(FLOOD_BASE + 50):
        send(client)  # type: ignore[operator]
        events += to_server(server, client)
        if server.closed:
            break
    return events, server.data_to_send()


@pytest.mark.parametrize("send", [
    lambda c: c.ping(b"12345678"),
    lambda c: c.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0}),
    lambda c: c.increment_flow_control_window(1),
    lambda c: c.prioritize(1, weight=16),
    _empty_data,
], ids=["ping", "settings", "window-update", "priority", "empty-data"])
def test_control_frame_flood_ends_with_enhance_your_calm(send: object) -> None:
    events, wire = _flood(send)
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert [c.error_code for c in closed] == [h2.errors.ErrorCodes.ENHANCE_YOUR_CALM]
    goaways = [f for f in frames(wire) if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[-1].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_a_reader_earns_its_window_updates() -> None:
    """A client downloading 4 MiB sends a WINDOW_UPDATE per 16 KiB it reads: no flood."""
    server, client = connect()
    client.send_headers(1, GET, end_stream=True)
    to_server(server, client)
    server.send_response(1, 200, [])
    body = b"x" * (4 << 20)
    sent = 0
    while sent < len(body):
        sent += server.send_data(1, body[sent : sent + 16384])
        for event in to_client(server, client):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, 1)
                client.increment_flow_control_window(1)  # and a gratuitous one more
        for _ in range(3):
            client.ping(b"abcdefgh")  # and pings
        assert not [e for e in to_server(server, client) if isinstance(e, ConnectionClosed)]
    assert not server.closed


def test_a_flood_in_one_read_is_stopped_within_a_slice() -> None:
    server, client = connect()
    for _ in range(20_000):
        client.ping(b"12345678")
    events = to_server(server, client)  # 340 kB of PINGs in one read
    assert [type(e) for e in events] == [ConnectionClosed]
    acks = [f for f in frames(server.data_to_send()) if type(f).__name__ == "PingFrame"]
    # the handshake's SETTINGS and SETTINGS ACK count as control frames too (nghttp2 stops
    # at the frame; h2 answers the rest of the slice before it is checked)
    assert FLOOD_BASE - 2 <= len(acks) < FLOOD_BASE + 16 * 1024 // 17  # at most a slice more


# -- limits both implementations keep ----------------------------------------------------------


def test_a_continuation_flood_is_cut_off() -> None:
    """CVE-2024-28182: a header block spread over endless CONTINUATION frames."""
    server, _ = connect()
    head = HeadersFrame(1, data=Encoder().encode(GET)[:2], flags=["END_STREAM"])
    wire = head.serialize() + ContinuationFrame(1, data=b"").serialize() * 2000
    events = server.receive_data(wire)
    assert [type(e) for e in events] == [ConnectionClosed]
    assert server.closed
    goaway = [f for f in frames(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert goaway and goaway[-1].error_code != 0


def test_an_hpack_bomb_is_stopped_by_the_header_list_limit() -> None:
    """A 3 KB field indexed once, then referenced 30 times in 43 bytes: 90 KB decoded."""
    server, client = connect()
    client.send_headers(1, [*GET, (b"x-big", b"v" * 3000)], end_stream=True)
    assert isinstance(to_server(server, client)[0], Request)
    client.send_headers(3, [*GET, *[(b"x-big", b"v" * 3000)] * 30], end_stream=True)
    wire = client.data_to_send()
    assert len(wire) < 100
    events = server.receive_data(wire)
    assert [type(e) for e in events] == [ConnectionClosed]
    assert events[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_volatile_response_fields_are_never_indexed() -> None:
    server, client = connect()
    client.send_headers(1, GET, end_stream=True)
    to_server(server, client)
    server.send_response(1, 200, [(b"x-request-id", b"r-1"), (b"traceparent", b"00-ab-cd-01"),
                                  (b"content-type", b"text/plain"), (b"content-length", b"0")])
    server.end_stream(1)
    response = to_client(server, client)[0]
    assert isinstance(response, h2.events.ResponseReceived)
    kinds = {field[0]: type(field) for field in response.headers}
    assert kinds[b"x-request-id"] is NeverIndexedHeaderTuple
    assert kinds[b"traceparent"] is NeverIndexedHeaderTuple
    assert kinds[b"content-type"] is not NeverIndexedHeaderTuple


def test_unknown_frame_flood_ends_with_enhance_your_calm() -> None:
    server, _ = connect()
    unknown = b"\x00\x00\x01\xfa\x00\x00\x00\x00\x00x"  # type 0xfa, one byte, stream 0
    events: list[H2Event] = []
    for _ in range(FLOOD_BASE // 100 + 2):
        events += server.receive_data(unknown * 100)
        if server.closed:
            break
    assert [e.error_code for e in events if isinstance(e, ConnectionClosed)] == [
        h2.errors.ErrorCodes.ENHANCE_YOUR_CALM]


def test_data_beyond_the_content_length_ends_the_stream(impl: str) -> None:
    """RFC 9113 §8.1.1: malformed. nghttp2 resets the stream (a stream error), h2 ends the
    connection; either way the app's stream is over and the peer is told PROTOCOL_ERROR."""
    server, client = connect()
    client.send_headers(1, [(b":method", b"POST"), *GET[1:], (b"content-length", b"5")])
    to_server(server, client)
    events = server.receive_data(DataFrame(1, data=b"0123456789", flags=["END_STREAM"])
                                 .serialize())
    assert not any(isinstance(e, Body) for e in events)
    sent = list(frames(server.data_to_send()))
    if impl == "nghttp2":
        assert events == [StreamReset(1)]
        assert [(f.stream_id, f.error_code) for f in sent if isinstance(f, RstStreamFrame)] == [
            (1, h2.errors.ErrorCodes.PROTOCOL_ERROR)]
        assert not server.closed
    else:
        assert [type(e) for e in events] == [ConnectionClosed]
        assert [f.error_code for f in sent if isinstance(f, GoAwayFrame)] == [
            h2.errors.ErrorCodes.PROTOCOL_ERROR]


def test_a_malformed_authority_is_answered_400() -> None:
    """As HTTP/1 answers a bad Host: the request reaches the chain refused, not reset."""
    server, client = connect()
    client.send_headers(1, [*GET[:3], (b":authority", b"a b")], end_stream=True)
    request, end = to_server(server, client)
    assert isinstance(request, Request) and request.refused == 400
    assert end == EndBody(1)


def test_a_reset_follows_what_was_already_sent() -> None:
    """A body cut short of its content-length: the head and the bytes there were, then
    RST_STREAM(INTERNAL_ERROR), so the client sees a truncated answer, not none."""
    server, client = connect()
    client.send_headers(1, GET, end_stream=True)
    to_server(server, client)
    server.send_response(1, 200, [(b"content-length", b"20")])
    assert server.send_data(1, b"x" * 10) == 10
    with pytest.raises(RuntimeError):
        server.end_stream(1)
    events = to_client(server, client)
    assert [type(e) for e in events] == [
        h2.events.ResponseReceived, h2.events.DataReceived, h2.events.StreamReset]
    assert events[2].error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
