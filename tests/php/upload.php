<?php
// Moves each uploaded file next to a target dir given in ?dest= and reports what happened.
header('Content-Type: application/json');
$out = [];
$dest = $_GET['dest'] ?? sys_get_temp_dir();
foreach ($_FILES as $field => $f) {
    $entry = [
        'name' => $f['name'], 'type' => $f['type'], 'size' => $f['size'], 'error' => $f['error'],
        'tmp_exists' => is_file($f['tmp_name']),
        'is_uploaded' => is_uploaded_file($f['tmp_name']),
        'tmp_name' => $f['tmp_name'],
        'sha256' => is_file($f['tmp_name']) ? hash_file('sha256', $f['tmp_name']) : null,
    ];
    $target = $dest . '/' . basename($f['name']);
    $entry['moved'] = move_uploaded_file($f['tmp_name'], $target);
    $entry['target_sha256'] = is_file($target) ? hash_file('sha256', $target) : null;
    $out[$field] = $entry;
}
// A file that is not an upload must be refused.
$fake = tempnam(sys_get_temp_dir(), 'nope');
$out['_fake_moved'] = move_uploaded_file($fake, $dest . '/fake');
$out['_post'] = $_POST;
echo json_encode($out, JSON_UNESCAPED_SLASHES);
