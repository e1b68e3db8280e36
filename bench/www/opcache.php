<?php
// Not a workload: the benchmark asks every server this once to record what it runs.
$s = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
header('Content-Type: application/json');
echo json_encode([
    'php' => PHP_VERSION,
    'sapi' => PHP_SAPI,
    'zts' => PHP_ZTS,
    'opcache' => $s ? $s['opcache_enabled'] : false,
    'jit' => $s ? ($s['jit']['on'] ?? false) : false,
]);
