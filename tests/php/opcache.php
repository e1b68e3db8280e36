<?php
header('Content-Type: application/json');
$s = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
echo json_encode([
    'enabled' => $s ? $s['opcache_enabled'] : false,
    'jit' => $s ? ($s['jit']['on'] ?? false) : false,
    'sapi' => PHP_SAPI,
    'ini' => ['memory_limit' => ini_get('memory_limit'), 'max_execution_time' => ini_get('max_execution_time'),
              'precision' => ini_get('precision'), 'date.timezone' => ini_get('date.timezone'),
              'post_max_size' => ini_get('post_max_size'), 'expose_php' => ini_get('expose_php')],
    'ini_file' => php_ini_loaded_file(),
    'cached' => $s ? $s['opcache_statistics']['num_cached_scripts'] : 0,
    'zts' => PHP_ZTS,
    'version' => PHP_VERSION,
    'extensions' => get_loaded_extensions(),
]);
