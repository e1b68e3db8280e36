"""Accept-Encoding negotiation, the compressible-type list, the header rewrites and the
COMPRESSION_* options' parsing."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config
from gateway.pipeline.compressors import (
    BEST,
    FAST,
    compress_whole,
    decompress,
    stream_encoder,
)
from gateway.pipeline.encoding import (
    CompressionPolicy,
    ResponseFields,
    encoded_headers,
    negotiate,
    with_vary,
)

ORDER = ("zstd", "br", "gzip")


@pytest.mark.parametrize(("accept", "chosen"), [
    (b"gzip, deflate, br, zstd", "zstd"),  # Chrome's: equal q, the server's order decides
    (b"gzip, deflate, br", "br"),
    (b"gzip", "gzip"),
    (b"GZIP", "gzip"),
    (b"x-gzip", "gzip"),
    (b"deflate", None),
    (b"", None),  # identity only
    (b"identity", None),
    (b"gzip;q=1.0, br;q=0.5, zstd;q=0.1", "gzip"),  # the client's q wins over our order
    (b"zstd;q=0, br;q=0.001", "br"),
    (b"zstd;q=0, br;q=0, gzip;q=0", None),
    (b"*", "zstd"),
    (b"*;q=0.5, br", "br"),
    (b"gzip;q=0, *", "zstd"),
    (b"*;q=0", None),
    (b"identity;q=0", None),  # refuses identity, accepts none of ours: identity anyway
    (b"identity;q=0, gzip", "gzip"),
    (b"identity, gzip;q=0.5", None),  # identity explicitly preferred
    (b"gzip;q=0.5, identity;q=0.2", "gzip"),
    (b"br;q=2, gzip", "gzip"),  # q out of range: item ignored
    (b"br;q=abc, gzip;q=0.1", "gzip"),
    (b"br;q=0.12345, gzip;q=0.1", "gzip"),  # more than three decimals: not a weight
    (b" br ; q=0.9 ,gzip;q=0.8", "br"),
    (b"compress, gzip;level=9", "gzip"),  # other parameters do not change the weight
])
def test_negotiation_follows_rfc_9110(accept: bytes, chosen: str | None) -> None:
    assert negotiate(accept, ORDER) == chosen


def test_server_order_breaks_ties_and_limits_the_codings() -> None:
    assert negotiate(b"zstd, br, gzip", ("gzip", "br")) == "gzip"
    assert negotiate(b"zstd", ("gzip", "br")) is None


def test_policy_reads_every_accept_encoding_line_and_remembers_answers() -> None:
    policy = CompressionPolicy()
    assert policy.choose([]) is None
    assert policy.choose([(b"accept-encoding", b"gzip;q=0.1"),
                          (b"accept-encoding", b"br")]) == "br"
    for _ in range(3):  # the memo gives the same answer as the first parse
        assert policy.choose([(b"accept-encoding", b"gzip, br;q=0")]) == "gzip"


@pytest.mark.parametrize(("ctype", "compressible"), [
    (b"text/html; charset=UTF-8", True),
    (b"TEXT/CSS", True),
    (b"text/event-stream", True),
    (b"application/json", True),
    (b"application/problem+json", True),
    (b"application/ld+json; charset=utf-8", True),
    (b"application/atom+xml", True),
    (b"application/javascript", True),
    (b"image/svg+xml", True),
    (b"application/wasm", True),
    (b"font/ttf", True),
    (b"font/woff2", False),  # already compressed
    (b"image/png", False),
    (b"application/octet-stream", False),
    (b"application/zip", False),
    (b"", False),
])
def test_default_types(ctype: bytes, compressible: bool) -> None:
    assert CompressionPolicy().compressible_type(ctype) is compressible


def test_type_patterns() -> None:
    policy = CompressionPolicy(types=("text/plain", "application/*+json", "image/*"))
    assert policy.compressible_type(b"text/plain")
    assert not policy.compressible_type(b"text/html")
    assert policy.compressible_type(b"application/vnd.api+json")
    assert not policy.compressible_type(b"application/json")
    assert policy.compressible_type(b"image/webp")


@pytest.mark.parametrize(("status", "headers", "could"), [
    (200, [(b"content-type", b"text/html")], True),
    (404, [(b"content-type", b"text/html")], True),
    (200, [(b"content-type", b"text/html"), (b"content-length", b"300")], True),
    (200, [(b"content-type", b"text/html"), (b"content-length", b"255")], False),
    (200, [(b"content-type", b"image/png")], False),
    (200, [(b"content-type", b"text/html"), (b"content-encoding", b"gzip")], False),
    (200, [(b"content-type", b"text/html"), (b"cache-control", b"public, No-Transform")],
     False),
    (200, [(b"content-type", b"text/html"), (b"content-range", b"bytes 0-9/99")], False),
    (206, [(b"content-type", b"text/html")], False),
    (204, [(b"content-type", b"text/html")], False),
    (304, [(b"content-type", b"text/html")], False),
    (103, [(b"content-type", b"text/html")], False),
])
def test_which_responses_could_be_compressed(status: int, headers: list[tuple[bytes, bytes]],
                                             could: bool) -> None:
    assert CompressionPolicy().could_compress(status, ResponseFields.read(headers)) is could


def test_vary_is_added_once_and_merged() -> None:
    assert with_vary([]) == [(b"vary", b"Accept-Encoding")]
    assert with_vary([(b"vary", b"Cookie")]) == [(b"vary", b"Cookie, Accept-Encoding")]
    assert with_vary([(b"vary", b"cookie, accept-encoding")]) == [
        (b"vary", b"cookie, accept-encoding")]
    assert with_vary([(b"vary", b"*")]) == [(b"vary", b"*")]


def test_encoded_headers_describe_the_variant() -> None:
    headers = [(b"content-type", b"text/css"), (b"etag", b'"5f-1a"'),
               (b"accept-ranges", b"bytes"), (b"content-length", b"26"),
               (b"x-kept", b"1")]
    assert encoded_headers(headers, "br", 12) == [
        (b"content-type", b"text/css"), (b"x-kept", b"1"), (b"etag", b'W/"5f-1a"'),
        (b"content-encoding", b"br"), (b"content-length", b"12"),
        (b"vary", b"Accept-Encoding")]
    framed = dict(encoded_headers([(b"etag", b'W/"x"')], "gzip", None))
    assert b"content-length" not in framed and framed[b"etag"] == b'W/"x"'


@pytest.mark.parametrize("coding", ORDER)
def test_streaming_encoders_flush_every_chunk(coding: str) -> None:
    encoder = stream_encoder(coding)
    sent = b""
    for i in range(5):
        chunk = b"data: event %d %s\n\n" % (i, b"x" * i)
        sent += encoder.compress(chunk)
        # what left so far decodes to everything given so far: nothing waits in the encoder
        assert _decode_prefix(coding, sent) == b"".join(
            b"data: event %d %s\n\n" % (j, b"x" * j) for j in range(i + 1))
    sent += encoder.finish()
    assert decompress(coding, sent).endswith(b"event 4 xxxx\n\n")


@pytest.mark.parametrize("coding", ORDER)
@pytest.mark.parametrize("level", ["fast", "best"])
def test_one_shot_round_trip(coding: str, level: str) -> None:
    body = b"<p>hello compression</p>\n" * 400
    lvl = (FAST if level == "fast" else BEST)[coding]
    encoded = compress_whole(coding, body, lvl)
    assert len(encoded) < len(body) // 10
    assert decompress(coding, encoded) == body


def _decode_prefix(coding: str, data: bytes) -> bytes:
    import zlib

    import brotli
    import zstandard

    if coding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if coding == "br":
        return bytes(brotli.Decompressor().process(data))
    out: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return out


# ---------------------------------------------------------------- the options


def test_compression_options_defaults(tmp_path: object) -> None:
    config = load_config(["--document-root", "."], {})
    assert config.compression is True
    assert config.compression_encodings == ("zstd", "br", "gzip")
    assert config.compression_min_size == 256
    assert "text/*" in config.compression_types
    policy = CompressionPolicy.from_config(config)
    assert policy.encodings == ("zstd", "br", "gzip") and policy.min_size == 256


def test_compression_options_parse() -> None:
    config = load_config(["--document-root", ".", "--compression-encodings", "GZIP br",
                          "--compression-min-size", "1K",
                          "--compression-types", "text/html, application/*+json"], {})
    assert config.compression_encodings == ("gzip", "br")
    assert config.compression_min_size == 1024
    assert config.compression_types == ("text/html", "application/*+json")
    env = load_config(["--document-root", "."], {"COMPRESSION": "off",
                                                  "COMPRESSION_ENCODINGS": "zstd"})
    assert env.compression is False and env.compression_encodings == ("zstd",)


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--compression-encodings", "gzip,deflate", "'deflate' is not one of zstd, br, gzip"),
    ("--compression-encodings", "gzip,gzip", "each once"),
    ("--compression-encodings", ",", "each once"),
    ("--compression-types", "html", "'html' is not type/subtype"),
    ("--compression-types", "text/html; charset=utf-8", "is not type/subtype"),
    ("--compression-min-size", "-1", "must be a size"),
])
def test_bad_compression_options_are_refused(flag: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(["--document-root", ".", flag, value], {})
    assert message in str(err.value)
    assert flag in str(err.value)
