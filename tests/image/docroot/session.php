<?php
// A session round trip: each request with the cookie counts one more.
header('Content-Type: application/json');
$started = session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
echo json_encode([
    'started' => $started,
    'n' => $_SESSION['n'],
    'id' => session_id(),
    'save_path' => session_save_path(),
    'temp_dir' => sys_get_temp_dir(),
], JSON_UNESCAPED_SLASHES);
