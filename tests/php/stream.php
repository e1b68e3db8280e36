<?php
// Prints a line every ?ms= milliseconds (?n= lines), flushing each.
$n = (int)($_GET['n'] ?? 5);
$ms = (int)($_GET['ms'] ?? 100);
header('Content-Type: text/plain');
for ($i = 0; $i < $n; $i++) {
    echo "line $i ", sprintf('%.3f', microtime(true)), "\n";
    if (ob_get_level()) { ob_flush(); }
    flush();
    usleep($ms * 1000);
}
