<?php
// Parses a urlencoded form body ($_POST) and answers with a digest of what arrived.
$n = count($_POST);
$bytes = 0;
foreach ($_POST as $v) {
    $bytes += strlen($v);
}
header('Content-Type: application/json');
echo json_encode(['fields' => $n, 'bytes' => $bytes, 'crc' => crc32(implode('&', $_POST))]);
