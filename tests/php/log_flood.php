<?php
// Logs n lines as fast as PHP can: more than the bridge keeps waiting for the server.
$n = (int) ($_GET['n'] ?? 10000);
for ($i = 0; $i < $n; $i++) {
    error_log("flood line $i");
}
echo "logged $n";
