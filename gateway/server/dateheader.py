"""Refreshes the cached Date header once a second, so no response formats a date."""

from __future__ import annotations

import asyncio
import time

from gateway.protocol.response_headers import ResponseDefaults, http_date


class DateClock:
    def __init__(self, defaults: ResponseDefaults, loop: asyncio.AbstractEventLoop) -> None:
        self._defaults = defaults
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._tick()

    def _tick(self) -> None:
        now = time.time()
        self._defaults.set_date(http_date(now))
        # wake just after the next second boundary so the header changes when the second does
        self._handle = self._loop.call_later(1.001 - now % 1.0, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
