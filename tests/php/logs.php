<?php
// PHP's own messages, one of each kind: error_log(), a warning, a notice, a deprecation.
error_log('written by error_log');
trigger_error('a user warning', E_USER_WARNING);
trigger_error('a user notice', E_USER_NOTICE);
trigger_error('a user deprecation', E_USER_DEPRECATED);
echo 'logged';
