"""`php-gateway`: serve a document root. Every option is a flag and an environment
variable (docs/configuration.md); the supervisor binds and spawns the workers."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.supervisor import main as supervise

    return supervise(argv)


if __name__ == "__main__":
    sys.exit(main())
