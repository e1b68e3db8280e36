"""TLS server context: TLS 1.2+, ALPN h2 then http/1.1, ciphers HTTP/2 accepts."""

from __future__ import annotations

import ssl
from os import PathLike

ALPN_PROTOCOLS = ["h2", "http/1.1"]
# RFC 9113 §9.2.2 forbids non-AEAD / non-ephemeral suites on TLS 1.2 for HTTP/2
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def create_ssl_context(
    cert_file: str | PathLike[str], key_file: str | PathLike[str] | None = None
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The client's order wins, as with nginx's default `ssl_prefer_server_ciphers off`
    # (Mozilla's intermediate profile): every suite offered is strong and the client knows
    # what its hardware runs fastest. Python sets server preference by default, which made
    # OpenSSL impose AES-256-GCM on clients asking for AES-128-GCM first.
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_COMPRESSION
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    context.set_ciphers(TLS12_CIPHERS)
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    context.load_cert_chain(cert_file, key_file)
    return context
