<?php

use App\ProductController;
use Symfony\Component\Routing\Loader\Configurator\RoutingConfigurator;

return static function (RoutingConfigurator $routes): void {
    $routes->add('home', '/')->controller([ProductController::class, 'show'])->defaults(['id' => 1]);
    $routes->add('product', '/product/{id}')->controller([ProductController::class, 'show'])
        ->requirements(['id' => '\d+']);
    for ($i = 0; $i < 40; $i++) {  // a realistic route table to match against
        $routes->add("page_$i", "/section-$i/{slug}")->controller([ProductController::class, 'show'])
            ->defaults(['id' => $i + 1]);
    }
};
