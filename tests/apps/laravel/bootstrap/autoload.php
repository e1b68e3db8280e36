<?php
// Laravel 8 from Debian's php-laravel-framework (under /usr/share/php, whose autoloaders pull
// in Symfony, Carbon, Monolog...) and the application's own classes.
set_include_path('/usr/share/php' . PATH_SEPARATOR . get_include_path());
require_once 'Illuminate/autoload.php';

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'App\\')) {
        require dirname(__DIR__) . '/app/' . str_replace('\\', '/', substr($class, 4)) . '.php';
    }
});
