<?php
// A framework-shaped front controller: a PSR-4 autoloader, a 2,000-entry configuration merged
// from defaults and overrides and flattened, and a container that builds 300 services, each
// its own class file (generated into app/ by bench/workloads.py). With OPcache on, this is
// what a framework's kernel boot costs before any route runs.
spl_autoload_register(function (string $class): void {
    if (str_starts_with($class, 'App\\')) {
        require __DIR__ . '/app/' . str_replace('\\', '/', substr($class, 4)) . '.php';
    }
});

$defaults = [];
$overrides = [];
for ($m = 0; $m < 30; $m++) {
    for ($k = 0; $k < 66; $k++) {
        $defaults["module$m"]["section" . ($k % 6)]["key$k"] = "default-$m-$k";
        if ($k % 3 === 0) {
            $overrides["module$m"]["section" . ($k % 6)]["key$k"] = $m * 100 + $k;
        }
    }
}
$defaults['app'] = ['name' => 'bench', 'debug' => false, 'locale' => 'en', 'timezone' => 'UTC'];
for ($k = 0; $k < 16; $k++) {
    $defaults['app']["flag$k"] = $k % 2 === 0;
}
$config = array_replace_recursive($defaults, $overrides);
$flat = [];
$walk = function (array $node, string $prefix) use (&$walk, &$flat): void {
    foreach ($node as $key => $value) {
        is_array($value) ? $walk($value, "$prefix$key.") : $flat["$prefix$key"] = $value;
    }
};
$walk($config, '');

$container = new App\Kernel\Container($flat);
for ($m = 0; $m < 30; $m++) {
    for ($s = 0; $s < 10; $s++) {
        $container->register("App\\Module$m\\Service$s");
    }
}
$checksum = 0;
foreach ($container->ids() as $id) {
    $checksum += $container->get($id)->handle(['n' => 1])['n'];
}
$classes = count(array_filter(get_declared_classes(), fn($c) => str_starts_with($c, 'App\\')));
header('Content-Type: application/json');
echo json_encode(['config' => count($flat), 'services' => count($container->ids()),
                  'classes' => $classes, 'checksum' => $checksum,
                  'sample' => $flat['module7.section3.key63']]);
