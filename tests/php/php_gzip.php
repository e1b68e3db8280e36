<?php
// A page PHP compresses itself: ?via=handler (ob_gzhandler) or ?via=ini (zlib.output_compression).
if (($_GET['via'] ?? 'handler') === 'ini') {
    ini_set('zlib.output_compression', '1');
} else {
    ob_start('ob_gzhandler');
}
echo str_repeat("<p>compressed by PHP itself</p>\n", 800);
