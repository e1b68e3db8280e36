<?php
// A 30 KiB HTML page (?kb= for another size) rendered row by row, as a template would;
// bench/workloads.py writes the same bytes to page30k.html, so PHP and static rows serve one page.
$kb = (int)($_GET['kb'] ?? 30);
$out = "<!doctype html>\n<html><head><title>Catalogue</title></head><body><table>\n";
for ($i = 0; strlen($out) < $kb * 1024; $i++) {
    $out .= '<tr class="row"><td>' . $i . '</td><td><a href="/item/' . $i . '">Item ' . $i
        . '</a></td><td>' . (($i * 7919) % 10007) . "</td></tr>\n";
}
echo $out, "</table></body></html>\n";
