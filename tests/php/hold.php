<?php
// Holds its PHP thread until the file ?until= exists (at most 60 s): a busy thread for as
// long as a test needs one. max_execution_time is wall-clock time in this build (the
// max-execution timers count CLOCK_BOOTTIME), so php.ini's 30 s would cut a long hold.
set_time_limit(0);
$file = (string)($_GET['until'] ?? '');
for ($i = 0; $i < 1200 && !file_exists($file); $i++) {
    usleep(50000);
}
echo file_exists($file) ? 'released' : 'gave up';
