"""`python -m gateway` is the `php-gateway` command."""

import sys

from gateway.cli import main

sys.exit(main())
