<?php
// Everything a request sees, as JSON, for the superglobal tests.
header('Content-Type: application/json');
echo json_encode([
    'server' => $_SERVER,
    'get' => $_GET,
    'post' => $_POST,
    'cookie' => $_COOKIE,
    'request' => $_REQUEST,
    'files' => $_FILES,
    'input' => file_get_contents('php://input'),
    'sapi' => PHP_SAPI,
    'headers' => function_exists('getallheaders') ? getallheaders() : null,
], JSON_UNESCAPED_SLASHES);
