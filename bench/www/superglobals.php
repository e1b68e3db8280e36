<?php
// 30 superglobal reads (20 $_SERVER, 5 $_GET, 5 $_COOKIE) returned as JSON: the request
// metadata a typical front controller touches before routing.
$server = ['REQUEST_METHOD', 'REQUEST_URI', 'QUERY_STRING', 'SCRIPT_NAME', 'SCRIPT_FILENAME',
    'DOCUMENT_ROOT', 'SERVER_NAME', 'SERVER_PORT', 'SERVER_PROTOCOL', 'SERVER_ADDR',
    'REMOTE_ADDR', 'REMOTE_PORT', 'HTTP_HOST', 'HTTP_USER_AGENT', 'HTTP_ACCEPT',
    'HTTP_COOKIE', 'HTTPS', 'PHP_SELF', 'REQUEST_TIME', 'GATEWAY_INTERFACE'];
$out = [];
foreach ($server as $k) {
    $out['server'][$k] = $_SERVER[$k] ?? null;
}
foreach (['page', 'sort', 'limit', 'lang', 'q'] as $k) {
    $out['get'][$k] = $_GET[$k] ?? null;
}
foreach (['session', 'theme', 'consent', 'tz', 'ab'] as $k) {
    $out['cookie'][$k] = $_COOKIE[$k] ?? null;
}
header('Content-Type: application/json');
echo json_encode($out, JSON_UNESCAPED_SLASHES);
