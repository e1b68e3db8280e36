<?php
// ?kb= kilobytes of deterministic output in 8 KiB writes.
header('Content-Type: application/octet-stream');
$kb = (int)($_GET['kb'] ?? 1024);
$block = str_repeat(implode('', array_map('chr', range(0, 255))), 32);
for ($i = 0; $i < intdiv($kb, 8); $i++) { echo $block; }
