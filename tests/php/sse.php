<?php
// ?n= Server-Sent Events ?ms= milliseconds apart, each flushed at once; none after the last.
header('Content-Type: text/event-stream');
header('Cache-Control: no-cache');
$n = (int)($_GET['n'] ?? 5);
$ms = (int)($_GET['ms'] ?? 200);
for ($i = 0; $i < $n; $i++) {
    if ($i > 0) {
        usleep($ms * 1000);
    }
    echo "id: $i\nevent: tick\ndata: {\"n\": $i}\n\n";
    if (ob_get_level()) {
        ob_flush();
    }
    flush();
}
