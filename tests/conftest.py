"""Fixtures shared by all tests live in php_harness (one real PHP pool per session)."""

from php_harness import php, php_pool

__all__ = ["php", "php_pool"]
