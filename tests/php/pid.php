<?php
// The process that ran this request: which worker process the connection landed in.
echo getmypid();
