<?php
// PHP 8.4: parse a PUT/PATCH form or multipart body.
header('Content-Type: application/json');
[$post, $files] = request_parse_body();
$files = array_map(fn ($f) => ['name' => $f['name'], 'size' => $f['size'],
    'sha256' => hash_file('sha256', $f['tmp_name'])], $files);
echo json_encode(['method' => $_SERVER['REQUEST_METHOD'], 'post' => $post, 'files' => $files]);
