"""Fixtures of the end-to-end tests live in server_harness (the real php-gateway)."""

from server_harness import certs, client, docroot, server, tls_server

__all__ = ["certs", "client", "docroot", "server", "tls_server"]
