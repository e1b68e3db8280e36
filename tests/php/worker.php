<?php
// A worker script (WORKER_SCRIPT) for the tests: boots once, then answers by ?case=.
// Its boot id and counters show what persists; the cases show what must not.
$boot = bin2hex(random_bytes(4));
$bootServer = ['SCRIPT_FILENAME' => $_SERVER['SCRIPT_FILENAME'] ?? null,
               'FRANKENPHP_WORKER' => $_SERVER['FRANKENPHP_WORKER'] ?? null,
               'REQUEST_METHOD' => $_SERVER['REQUEST_METHOD'] ?? null];
$served = 0;

function counter(): int
{
    static $n = 0;
    return ++$n;
}

$handler = static function () use ($boot, $bootServer, &$served): void {
    $served++;
    header('X-Boot: ' . $boot);
    switch ($_GET['case'] ?? 'state') {
        case 'state':
            echo json_encode(['boot' => $boot, 'count' => counter(), 'served' => $served,
                              'boot_server' => $bootServer]);
            break;
        case 'globals':
            $files = [];
            foreach ($_FILES as $field => $f) {
                $files[$field] = ['name' => $f['name'], 'size' => $f['size'],
                                  'tmp_name' => $f['tmp_name'],
                                  'uploaded' => is_uploaded_file($f['tmp_name'])];
            }
            $server = [];
            foreach (['REQUEST_METHOD', 'REQUEST_URI', 'QUERY_STRING', 'SCRIPT_FILENAME',
                      'SCRIPT_NAME', 'PATH_INFO', 'CONTENT_TYPE', 'CONTENT_LENGTH',
                      'SERVER_PROTOCOL', 'FRANKENPHP_WORKER'] as $key) {
                $server[$key] = $_SERVER[$key] ?? null;
            }
            foreach ($_SERVER as $key => $value) {
                if (str_starts_with($key, 'HTTP_X_')) {
                    $server[$key] = $value;
                }
            }
            echo json_encode([
                'get' => $_GET, 'post' => $_POST, 'cookie' => $_COOKIE, 'files' => $files,
                'request' => $_REQUEST, 'server' => $server,
                'input' => file_get_contents('php://input'),
                'filter' => filter_input(INPUT_GET, 'tag'),
                'session' => $_SESSION ?? null, 'ob_level' => ob_get_level(),
                'status' => http_response_code(), 'headers' => headers_list(),
                'last_error' => error_get_last(), 'aborted' => connection_aborted(),
            ]);
            break;
        case 'dirty':
            // leaves everything a request could leak behind it
            header('X-Leak: 1');
            setcookie('leak', '1');
            http_response_code(201);
            session_start();
            $_SESSION['secret'] = $_GET['secret'] ?? 's';
            $_GET['added'] = 'x';
            $GLOBALS['request_global'] = $_GET['secret'] ?? 's';
            ob_start();
            echo 'dirty';
            break;
        case 'upload':
            $f = $_FILES['file'] ?? null;
            echo json_encode(['tmp_name' => $f['tmp_name'] ?? null,
                              'size' => $f['size'] ?? null,
                              'content' => $f ? file_get_contents($f['tmp_name']) : null]);
            break;
        case 'exists':
            echo json_encode(['exists' => file_exists($_GET['path'] ?? ''),
                              'global' => $GLOBALS['request_global'] ?? null]);
            break;
        case 'throw':
            echo 'partial';
            throw new RuntimeException('boom from the handler');
        case 'memory':
            ini_set('memory_limit', '16M');
            $big = str_repeat('x', 64 << 20);
            echo strlen($big);
            break;
        case 'compile':
            eval('function counter() {}'); // Cannot redeclare: a compile-time fatal error
            break;
        case 'exit':
            header('Location: /elsewhere', true, 302);
            echo 'bye';
            exit(0);
        case 'spin':
            if (isset($_GET['limit'])) {
                set_time_limit((int) $_GET['limit']);
            }
            $end = microtime(true) + (float) ($_GET['s'] ?? 0.1);
            while (microtime(true) < $end) {
            }
            echo 'spun';
            break;
        case 'sleep':
            if (isset($_GET['mark'])) {
                touch((string) $_GET['mark']); // tells a test the request is running
            }
            usleep((int) ($_GET['ms'] ?? 100) * 1000);
            echo 'slept ', $_GET['tag'] ?? '';
            break;
        case 'finish':
            echo 'sent';
            fastcgi_finish_request();
            echo 'dropped';
            break;
        case 'nested':
            try {
                gateway_handle_request(static function (): void {});
            } catch (Error $e) {
                echo $e->getMessage();
            }
            break;
    }
};

while (frankenphp_handle_request($handler)) {
    gc_collect_cycles();
}
// reached when gateway_handle_request() says to stop: a drain, or WORKER_MAX_REQUESTS
error_log("worker loop left after $served requests");
