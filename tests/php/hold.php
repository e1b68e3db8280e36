<?php
// Holds its PHP thread until the file ?until= exists (at most 60 s): a busy thread for as
// long as a test needs one.
$file = (string)($_GET['until'] ?? '');
for ($i = 0; $i < 1200 && !file_exists($file); $i++) {
    usleep(50000);
}
echo file_exists($file) ? 'released' : 'gave up';
