<?php
// A 1 MiB response written in 8 KiB pieces, as a template engine would emit it.
$chunk = str_repeat('0123456789abcdef', 512);
header('Content-Type: text/plain');
for ($i = 0; $i < 128; $i++) {
    echo $chunk;
}
