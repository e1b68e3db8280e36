<?php
// What the image's PHP looks like from inside: served by php-gateway and run by the CLI
// (`php runtime.php`), so the two can be compared.
header('Content-Type: application/json');
$tmp = tempnam(sys_get_temp_dir(), 'img');
$written = $tmp !== false && file_put_contents($tmp, 'temp ok') === 7;
$read = $written ? file_get_contents($tmp) : null;
if ($tmp !== false) {
    @unlink($tmp);
}
echo json_encode([
    'sapi' => PHP_SAPI,
    'version' => PHP_VERSION,
    'zts' => PHP_ZTS,
    'binary' => PHP_BINARY,
    'extensions' => get_loaded_extensions(),
    'zend_extensions' => get_loaded_extensions(true),
    'euid' => posix_geteuid(),
    'egid' => posix_getegid(),
    'temp_dir' => sys_get_temp_dir(),
    'temp_file_ok' => $read === 'temp ok',
    'session_save_path' => ini_get('session.save_path'),
    'memory_limit' => ini_get('memory_limit'),
    'timezone' => ini_get('date.timezone'),
    'cwd' => getcwd(),
], JSON_UNESCAPED_SLASHES), "\n";
