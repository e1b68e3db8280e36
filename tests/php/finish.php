<?php
echo "sent early";
fastcgi_finish_request();
echo "never seen";
usleep(200000);
file_put_contents($_GET['marker'], 'after finish');
