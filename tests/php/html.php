<?php
// ?kb= kilobytes of deterministic HTML, as a template renders it; ?etag=1 adds a strong ETag.
$kb = (int)($_GET['kb'] ?? 24);
if (isset($_GET['etag'])) {
    header('ETag: "page-v1"');
}
$rows = '';
for ($i = 0; strlen($rows) < $kb * 1024; $i++) {
    $rows .= "<tr><td>row $i</td><td>" . md5((string)$i) . "</td><td>item " . ($i * 7 % 1000)
        . "</td></tr>\n";
}
echo substr($rows, 0, $kb * 1024);
