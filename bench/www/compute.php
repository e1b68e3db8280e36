<?php
// CPU in the engine alone: a chain of md5() calls and a usort() with a PHP callback, the two
// shapes of work (internal function calls, user function calls from C) most pages repeat.
$h = 'php-gateway';
for ($i = 0; $i < 5000; $i++) {
    $h = md5($h . $i);
}
$rows = [];
for ($i = 0; $i < 2000; $i++) {
    $rows[] = ['id' => $i, 'score' => ($i * 7919) % 1000, 'name' => 'item' . (($i * 31) % 2000)];
}
usort($rows, function (array $a, array $b): int {
    return $b['score'] <=> $a['score'] ?: strcmp($a['name'], $b['name']);
});
$ids = implode(',', array_column($rows, 'id'));
header('Content-Type: application/json');
echo json_encode(['md5' => $h, 'first' => $rows[0]['id'], 'last' => $rows[1999]['id'],
                  'order' => md5($ids)]);
