<?php
// ?kb= kilobytes of deterministic output in flushed 8 KiB writes; after each write the number
// of bytes written so far goes to ?file=, so a test can see how far the script got.
header('Content-Type: application/octet-stream');
$kb = (int)($_GET['kb'] ?? 1024);
$file = (string)($_GET['file'] ?? '');
$block = str_repeat(implode('', array_map('chr', range(0, 255))), 32);
for ($i = 1; $i <= intdiv($kb, 8); $i++) {
    echo $block;
    flush();
    file_put_contents($file, (string)($i * 8192));
}
