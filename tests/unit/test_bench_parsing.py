"""The load-generator parsers in bench/ against output captured from real wrk 4.1.0 and
h2load 1.52.0 runs on the benchmark machine (no load is generated here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `bench` lives at the repo root

from bench.parsers import (
    ParseError,
    h2load_latencies_us,
    h2load_result,
    parse_duration,
    parse_h2load,
    parse_size,
    parse_wrk,
    percentile,
)

WRK_OK = """\
Running 1s test @ http://127.0.0.1:18999/a.txt
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.30ms    2.38ms  17.91ms   86.37%
    Req/Sec     1.30k   317.46     1.65k    70.00%
  Latency Distribution
     50%    2.39ms
     75%    3.80ms
     90%    6.25ms
     99%   13.10ms
  1291 requests in 1.00s, 237.02KB read
Requests/sec:   1290.00
Transfer/sec:    236.84KB
"""


WRK_404 = """\
Running 1s test @ http://127.0.0.1:18999/missing
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.21ms    3.20ms  16.44ms   77.45%
    Req/Sec     1.03k   348.60     1.61k    70.00%
  Latency Distribution
     50%    3.01ms
     75%    5.60ms
     90%    8.61ms
     99%   14.10ms
  1027 requests in 1.00s, 521.70KB read
  Non-2xx or 3xx responses: 1027
Requests/sec:   1026.29
Transfer/sec:    521.35KB
"""


WRK_SOCKET_ERRORS = """\
Running 3s test @ http://127.0.0.1:18997/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 3.04s, 0.00B read
  Socket errors: connect 0, read 4, write 699, timeout 0
Requests/sec:      0.00
Transfer/sec:       0.00B
"""


H2LOAD_H2_TLS = """\
starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Warm-up started for thread #0.
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 2.00s, 11149.00 req/s, 947.47KB/s
requests: 22298 total, 22398 started, 22298 done, 22298 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 22298 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.85MB (1940416) total, 1.19MB (1248688) headers (space savings 42.27%), 283.08KB (289874) data
                     min         max         mean         sd        +/- sd
time for request:     2.74ms     21.29ms      8.87ms      1.75ms    84.83%
time for connect:     1.59ms      8.90ms      5.49ms      2.46ms    60.00%
time to 1st byte:    10.93ms     18.95ms     14.68ms      2.66ms    60.00%
req/s           :    1074.21     1126.84     1114.60       20.93    80.00%
"""  # noqa: E501 (captured output, verbatim)


H2LOAD_H1_404 = """\
starting benchmark...
spawning thread #0: 4 total client(s). 100 total requests
Application protocol: http/1.1

finished in 119.20ms, 838.91 req/s, 92.45KB/s
requests: 100 total, 100 started, 100 done, 0 succeeded, 100 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 100 4xx, 0 5xx
traffic: 11.02KB (11285) total, 13.09KB (13400) headers (space savings 0.00%), 32.71KB (33500) data
                     min         max         mean         sd        +/- sd
time for request:      806us     20.30ms      4.50ms      3.61ms    85.00%
time for connect:       28us        77us        43us        22us    75.00%
time to 1st byte:      883us      2.14ms      1.72ms       572us    75.00%
req/s           :     214.48      228.79      218.82        6.69    75.00%
"""


H2LOAD_LOG = (
    "1795269413235275\t200\t2741\n"
    "1795269413235276\t200\t2782\n"
    "1795269413235277\t200\t2787\n"
    "1795269413235277\t200\t2800\n"
    "1795269413235278\t200\t2894\n"
    "1795269413235277\t200\t2945\n"
    "1795269413235278\t200\t3138\n"
    "1795269413235278\t200\t3192\n"
    "1795269413235278\t200\t3315\n"
    "1795269413235279\t200\t3391\n"
)


# php-gateway itself (bench/run.py --quick --servers gateway), the 1 MB PHP response.
WRK_GATEWAY_1MB = """\
Running 2s test @ http://127.0.0.1:40649/big.php
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    57.35ms   12.67ms 118.30ms   84.12%
    Req/Sec     0.85k   121.38     1.15k    75.00%
  Latency Distribution
     50%   55.95ms
     75%   63.41ms
     90%   69.65ms
     99%  110.16ms
  1703 requests in 2.00s, 1.66GB read
Requests/sec:    849.50
Transfer/sec:    850.40MB
"""


H2LOAD_GATEWAY_1MB = """\
starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Warm-up started for thread #0.
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_256_GCM_SHA384
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 2.01s, 202.00 req/s, 203.01MB/s
requests: 404 total, 504 started, 404 done, 404 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 407 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 406.01MB (425737415) total, 3.10KB (3176) headers (space savings 93.71%), 405.78MB (425492480) data
                     min         max         mean         sd        +/- sd
time for request:    21.02ms    731.99ms    416.28ms    210.37ms    57.18%
time for connect:     5.40ms     13.00ms      9.47ms      2.71ms    50.00%
time to 1st byte:    20.97ms    591.72ms    254.03ms    197.17ms    60.00%
req/s           :      10.00       34.99       20.20        9.88    60.00%
"""  # noqa: E501 (captured output, verbatim)


H2LOAD_GATEWAY_1MB_LOG = (
    "1795271338409706\t200\t21016\n"
    "1795271338409708\t200\t25906\n"
    "1795271338411201\t200\t27885\n"
    "1795271338409708\t200\t40240\n"
    "1795271338411201\t200\t39038\n"
    "1795271338409709\t200\t42962\n"
    "1795271338411202\t200\t47977\n"
    "1795271338411202\t200\t56502\n"
    "1795271338409709\t200\t58312\n"
    "1795271338409709\t200\t61724\n"
)


def test_wrk_ok() -> None:
    r = parse_wrk(WRK_OK)
    assert r.requests == 1291
    assert r.duration_s == pytest.approx(1.0)
    assert r.rps == pytest.approx(1290.0)
    assert r.p50_ms == pytest.approx(2.39)
    assert r.p99_ms == pytest.approx(13.10)
    assert r.errors == 0
    assert r.bytes_read == round(237.02 * 1024)


def test_wrk_non_2xx_count_as_errors() -> None:
    r = parse_wrk(WRK_404)
    assert r.requests == 1027
    assert r.errors == 1027
    assert r.rps == pytest.approx(1026.29)
    assert r.p99_ms == pytest.approx(14.10)


def test_wrk_socket_errors_are_summed() -> None:
    r = parse_wrk(WRK_SOCKET_ERRORS)
    assert r.requests == 0
    assert r.rps == 0.0
    assert r.errors == 4 + 699
    assert r.duration_s == pytest.approx(3.04)
    assert r.p50_ms == 0.0


def test_wrk_refuses_other_text() -> None:
    with pytest.raises(ParseError):
        parse_wrk("unable to connect to 127.0.0.1:18998 Connection refused\n")


def test_h2load_h2_over_tls() -> None:
    s = parse_h2load(H2LOAD_H2_TLS)
    assert s.protocol == "h2"
    assert s.tls == "TLSv1.3 TLS_AES_128_GCM_SHA256"
    assert s.duration_s == pytest.approx(2.0)
    assert s.rps == pytest.approx(11149.0)
    assert (s.total, s.succeeded, s.failed, s.errored, s.timeout) == (22298, 22298, 0, 0, 0)
    assert s.status_2xx == 22298
    assert s.bytes_total == 1940416
    assert s.errors == 0


def test_h2load_4xx_are_errors_once() -> None:
    s = parse_h2load(H2LOAD_H1_404)
    assert s.protocol == "http/1.1"
    assert s.tls is None
    assert s.status_4xx == 100
    assert s.failed == 100
    assert s.errors == 100  # h2load's `failed` already holds the 4xx; not counted twice
    assert s.rps == pytest.approx(838.91)
    assert s.duration_s == pytest.approx(0.1192)


def test_h2load_log_percentiles() -> None:
    lat = h2load_latencies_us(H2LOAD_LOG.splitlines())
    assert lat == [2741, 2782, 2787, 2800, 2894, 2945, 3138, 3192, 3315, 3391]
    s = sorted(lat)
    assert percentile(s, 50) == 2894.0  # nearest rank: 5th of 10
    assert percentile(s, 99) == 3391.0
    r = h2load_result(H2LOAD_H2_TLS, H2LOAD_LOG.splitlines())
    assert r.p50_ms == pytest.approx(2.894)
    assert r.p99_ms == pytest.approx(3.391)
    assert r.requests == 22298
    assert r.errors == 0


def test_units() -> None:
    assert parse_duration("950us") == pytest.approx(0.00095)
    assert parse_duration("1.50s") == pytest.approx(1.5)
    assert parse_duration("2m") == 120.0
    assert parse_size("0.00B") == 0
    assert parse_size("1.50MB") == 1572864
    with pytest.raises(ParseError):
        parse_duration("fast")


def test_wrk_gateway_1mb_sizes_in_gib() -> None:
    r = parse_wrk(WRK_GATEWAY_1MB)
    assert r.requests == 1703
    assert r.rps == pytest.approx(849.50)
    assert r.p50_ms == pytest.approx(55.95)
    assert r.p99_ms == pytest.approx(110.16)
    # "1.66GB read": 1703 answers of 1 MiB each, to the 2 decimals wrk prints
    assert r.bytes_read == round(1.66 * 1024**3)
    assert r.bytes_read / r.requests == pytest.approx(1024 * 1024, rel=0.01)


def test_h2load_gateway_1mb() -> None:
    s = parse_h2load(H2LOAD_GATEWAY_1MB)
    assert s.tls == "TLSv1.3 TLS_AES_256_GCM_SHA384"
    assert (s.total, s.succeeded, s.failed) == (404, 404, 0)
    assert s.status_2xx == 407  # h2load also counts answers that came after the deadline
    assert s.bytes_total == 425737415
    r = h2load_result(H2LOAD_GATEWAY_1MB, H2LOAD_GATEWAY_1MB_LOG.splitlines())
    assert r.rps == pytest.approx(202.0)
    assert r.duration_s == pytest.approx(2.01)
    assert r.p50_ms == pytest.approx(40.240)  # 5th of the 10 sorted latencies
    assert r.p99_ms == pytest.approx(61.724)
