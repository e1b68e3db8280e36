#!/bin/sh
# The image's entrypoint. No arguments, or arguments that start with "-": run php-gateway
# with them (`docker run IMAGE --index-file index.php`). Anything else runs as is
# (`docker run IMAGE php artisan migrate`, `... php -m`, `... bash`). exec keeps the command
# PID 1, so it receives SIGTERM from `docker stop` itself.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- php-gateway "$@"
fi
exec "$@"
