<?php
/** @var \Illuminate\Routing\Router $router */
use App\Http\Controllers\PageController;
use Illuminate\Http\Request;

$router->get('/', fn () => view('home'));
$router->get('/hello/{name}', [PageController::class, 'hello'])->where('name', '[A-Za-z<>&"\']+');
$router->get('/api/items/{id}', fn (int $id) => response()->json([
    'id' => $id, 'name' => "item $id", 'tags' => ['a', 'b'], 'price' => $id * 1.5,
]))->where('id', '[0-9]+');
$router->get('/counter', function (Request $request) {
    $n = $request->session()->get('n', 0) + 1;
    $request->session()->put('n', $n);
    return response("visits: $n\n")->header('Content-Type', 'text/plain');
});
$router->get('/form', [PageController::class, 'form']);
$router->post('/form', [PageController::class, 'submit']);
$router->post('/upload', [PageController::class, 'upload']);
$router->get('/download/{name}', [PageController::class, 'download']);
$router->get('/cookie', fn () => response("set\n")->cookie('flavour', 'oatmeal', 60));
$router->get('/cookie/read', fn (Request $request) => response(
    'flavour: ' . $request->cookie('flavour', 'none') . "\n")->header('Content-Type', 'text/plain'));
$router->put('/items/{id}', fn (int $id) => response("put $id\n"));
$router->delete('/items/{id}', fn (int $id) => response("deleted $id\n"));
$router->get('/stream', fn () => response()->stream(function () {
    foreach ([1, 2, 3] as $i) {
        echo "chunk $i\n";
        if (ob_get_level() > 0) {
            ob_flush();  // php.ini's output_buffering holds it otherwise
        }
        flush();
        usleep(100000);
    }
}, 200, ['Content-Type' => 'text/plain', 'Cache-Control' => 'no-cache']));
$router->get('/fail', function () {
    throw new RuntimeException('boom');
});
