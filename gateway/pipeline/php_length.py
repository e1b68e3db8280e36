"""A Content-Length a PHP script set itself, held against the bytes it then writes.

nginx in front of php-fpm sends what fits the declared length and drops the rest (warning
"upstream sent more data than specified"), and when the script writes less it sends what
there is and then closes the connection ("upstream prematurely closed"), so a client never
takes a cut body for a whole one and never waits for bytes that will not come. The PHP
stage does the same on every protocol: `fit()` each chunk, and abort the response instead of
ending it while `missing` is not 0 (HTTP/1 closes, HTTP/2 and HTTP/3 reset the stream).
"""

from __future__ import annotations


class DeclaredLength:
    __slots__ = ("declared", "dropped", "missing")

    def __init__(self, declared: int) -> None:
        self.declared = declared
        self.missing = declared  # bytes still owed to the client
        self.dropped = 0  # bytes written beyond the declared length

    @classmethod
    def parse(cls, value: bytes) -> DeclaredLength | None:
        """The script's own Content-Length field value, if it is a valid one."""
        return cls(int(value)) if value.isdigit() else None

    def fit(self, data: bytes) -> bytes:
        """The part of `data` the declared length still has room for."""
        if len(data) <= self.missing:
            self.missing -= len(data)
            return data
        self.dropped += len(data) - self.missing
        data = data[: self.missing]
        self.missing = 0
        return data
