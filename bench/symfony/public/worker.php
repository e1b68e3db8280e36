<?php
// Worker mode (WORKER_SCRIPT): the kernel boots once per PHP thread, then serves requests.
use App\Kernel;
use Symfony\Component\HttpFoundation\Request;

require dirname(__DIR__) . '/bootstrap.php';

$kernel = new Kernel('prod', false);
$kernel->boot();

$handler = static function () use ($kernel): void {
    $request = Request::createFromGlobals();
    $response = $kernel->handle($request);
    $response->send();
    $kernel->terminate($request, $response);
};

while (gateway_handle_request($handler)) {
    gc_collect_cycles();  // between requests, as Symfony Runtime's FrankenPHP runner does
}
