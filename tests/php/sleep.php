<?php
$s = (float)($_GET['s'] ?? 1);
usleep((int)($s * 1e6));
echo "slept $s";
if (isset($_GET['exit'])) exit((int) $_GET['exit']);
