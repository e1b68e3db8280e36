<?php
// Default landing page of php-gateway: proves PHP runs and shows what the request looked like.
declare(strict_types=1);

function e(mixed $value): string
{
    return htmlspecialchars((string) ($value ?? ''), ENT_QUOTES | ENT_SUBSTITUTE | ENT_HTML5, 'UTF-8');
}

$server = [
    'SERVER_SOFTWARE', 'SERVER_PROTOCOL', 'REQUEST_METHOD', 'REQUEST_URI', 'SCRIPT_NAME',
    'PATH_INFO', 'QUERY_STRING', 'DOCUMENT_ROOT', 'REMOTE_ADDR', 'HTTPS', 'HTTP_HOST',
];
$opcache = function_exists('opcache_get_status') && (opcache_get_status(false)['opcache_enabled'] ?? false);
header('Content-Type: text/html; charset=utf-8');
?><!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>php-gateway is running</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; padding: 0 1rem; color: #1d2330; }
  h1 { font-size: 1.6rem; margin-bottom: .25rem; }
  p.lead { color: #556; margin-top: 0; }
  table { border-collapse: collapse; width: 100%; margin: 1.5rem 0; }
  th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e3e6ee; vertical-align: top; }
  th { width: 40%; font-weight: 600; white-space: nowrap; }
  td { font-family: ui-monospace, monospace; word-break: break-all; }
  code { background: #f1f3f8; padding: .1rem .3rem; border-radius: 3px; }
</style>
</head>
<body>
<h1>php-gateway is running</h1>
<p class="lead">PHP <?= e(PHP_VERSION) ?> (<?= e(PHP_SAPI) ?>, <?= PHP_ZTS ? 'thread-safe' : 'non-thread-safe' ?>)</p>

<table>
  <tr><th>PHP version</th><td><?= e(PHP_VERSION) ?></td></tr>
  <tr><th>SAPI</th><td><?= e(PHP_SAPI) ?></td></tr>
  <tr><th>OPcache</th><td><?= $opcache ? 'enabled' : 'disabled' ?></td></tr>
  <tr><th>Loaded php.ini</th><td><?= e(php_ini_loaded_file() ?: '(none)') ?></td></tr>
<?php foreach ($server as $key): ?>
  <tr><th><?= e($key) ?></th><td><?= e($_SERVER[$key] ?? '') ?></td></tr>
<?php endforeach; ?>
</table>

<p>Replace this page by mounting your application over <code>/var/www/html</code>, e.g.
<code>docker run -v ./public:/var/www/html …</code>, or set <code>DOCUMENT_ROOT</code>.</p>
</body>
</html>
