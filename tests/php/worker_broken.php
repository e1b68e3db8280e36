<?php
// A worker script that cannot boot (its database is down, say): it never takes a request.
throw new RuntimeException('cannot boot: the database is unreachable');
