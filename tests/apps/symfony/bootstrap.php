<?php
// Symfony 5.4 from Debian's php-symfony packages (FrameworkBundle, TwigBundle, Validator and
// Security CSRF; their autoloaders pull in the rest) and the application's own classes.
set_include_path('/usr/share/php' . PATH_SEPARATOR . get_include_path());
require_once 'Symfony/Bundle/FrameworkBundle/autoload.php';
require_once 'Symfony/Bundle/TwigBundle/autoload.php';
require_once 'Symfony/Component/Validator/autoload.php';
require_once 'Symfony/Component/Security/Csrf/autoload.php';

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'App\\')) {
        require __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 4)) . '.php';
    }
});
