<?php
// ?kind= picks how this request fails.
ini_set('display_errors', '0');
switch ($_GET['kind'] ?? '') {
    case 'fatal': undefined_function_xyz(); break;
    case 'exception': throw new RuntimeException('boom'); 
    case 'exit': echo "bye"; exit(3);
    case 'memory': ini_set('memory_limit', '16M'); $a = []; while (true) { $a[] = str_repeat('x', 1 << 16); }
    case 'time': set_time_limit(1); while (true) { $x = 1; }
    case 'late_fatal': echo "partial output"; flush(); undefined_function_xyz(); break;
    case 'parse': include __DIR__ . '/broken.inc'; break;
}
echo "not reached";
