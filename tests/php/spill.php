<?php
// 24 KiB of HTML in output_buffering's 4 KiB spills, a pause of ?ms= milliseconds with no
// flush(), then 24 KiB more: streamed output whose spills need not leave one by one.
header('Content-Type: text/html');
$ms = (int)($_GET['ms'] ?? 400);
for ($half = 0; $half < 2; $half++) {
    for ($i = 0; $i < 400; $i++) {
        printf("<tr><td>%d</td><td>row %05d of the table</td></tr>\n", $half, $i);
    }
    if ($half === 0) {
        usleep($ms * 1000);
    }
}
