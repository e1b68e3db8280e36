<?php
// Streams php://input back as its length and sha256, reading in 8 KiB pieces.
$in = fopen('php://input', 'rb');
$h = hash_init('sha256');
$n = 0;
while (!feof($in)) { $d = fread($in, 8192); $n += strlen($d); hash_update($h, $d); }
header('Content-Type: application/json');
echo json_encode(['length' => $n, 'sha256' => hash_final($h), 'method' => $_SERVER['REQUEST_METHOD']]);
