<?php
// ?mode= selects how the status is set.
switch ($_GET['mode'] ?? '') {
    case 'code': http_response_code(418); echo "teapot"; break;
    case 'line': header('HTTP/1.1 404 Not Here'); echo "missing"; break;
    case 'location': header('Location: /elsewhere'); break;
    case 'created': header('Location: /new', true, 201); break;
    case 'cookies':
        setcookie('a', '1');
        setcookie('b', '2', ['httponly' => true, 'path' => '/x']);
        header('X-Order: first');
        header('X-Multi: one');
        header('X-Multi: two', false);
        header('X-Order-Last: last');
        echo 'ok';
        break;
    case 'binary':
        header('Content-Type: application/octet-stream');
        echo implode('', array_map('chr', range(0, 255))), "\0\r\n\xff";
        break;
    case 'empty': break;
    case 'remove': header('X-Gone: yes'); header_remove('X-Gone'); echo 'r'; break;
}
