<?php

namespace App;

use Symfony\Component\Config\FileLocator;
use Symfony\Component\Config\Loader\LoaderInterface;
use Symfony\Component\DependencyInjection\ContainerBuilder;
use Symfony\Component\DependencyInjection\Reference;
use Symfony\Component\EventDispatcher\EventDispatcher;
use Symfony\Component\HttpFoundation\RequestStack;
use Symfony\Component\HttpKernel\Controller\ArgumentResolver;
use Symfony\Component\HttpKernel\Controller\ContainerControllerResolver;
use Symfony\Component\HttpKernel\EventListener\ResponseListener;
use Symfony\Component\HttpKernel\EventListener\RouterListener;
use Symfony\Component\HttpKernel\HttpKernel;
use Symfony\Component\HttpKernel\Kernel as BaseKernel;
use Symfony\Component\Routing\Loader\PhpFileLoader;
use Symfony\Component\Routing\RequestContext;
use Symfony\Component\Routing\Router;

/**
 * HttpKernel + Routing without FrameworkBundle: the container is compiled once into
 * var/cache/<env> (then only included), the routes into a compiled matcher beside it.
 */
final class Kernel extends BaseKernel
{
    public function registerBundles(): iterable
    {
        return [];
    }

    public function getProjectDir(): string
    {
        return \dirname(__DIR__);
    }

    public function getCacheDir(): string
    {
        return ($_SERVER['APP_CACHE_DIR'] ?? $this->getProjectDir() . '/var/cache') . '/' . $this->environment;
    }

    public function getLogDir(): string
    {
        return $this->getCacheDir() . '/log';
    }

    public function registerContainerConfiguration(LoaderInterface $loader): void
    {
        $loader->load(static function (ContainerBuilder $c): void {
            $c->register('request_stack', RequestStack::class);
            $c->register('router.loader', PhpFileLoader::class)
                ->setArguments([new Reference('file_locator')]);
            $c->register('file_locator', FileLocator::class)
                ->setArguments(['%kernel.project_dir%/config']);
            $c->register('router.request_context', RequestContext::class);
            $c->register('router', Router::class)->setArguments([
                new Reference('router.loader'), 'routes.php',
                ['cache_dir' => '%kernel.cache_dir%', 'debug' => '%kernel.debug%'],
                new Reference('router.request_context'),
            ]);
            $c->register('router_listener', RouterListener::class)->setArguments([
                new Reference('router'), new Reference('request_stack'),
                new Reference('router.request_context'),
            ]);
            $c->register('response_listener', ResponseListener::class)->setArguments(['UTF-8']);
            $c->register('event_dispatcher', EventDispatcher::class)
                ->addMethodCall('addSubscriber', [new Reference('router_listener')])
                ->addMethodCall('addSubscriber', [new Reference('response_listener')]);
            $c->register('controller_resolver', ContainerControllerResolver::class)
                ->setArguments([new Reference('service_container')]);
            $c->register('argument_resolver', ArgumentResolver::class);
            $c->register('http_kernel', HttpKernel::class)->setPublic(true)->setArguments([
                new Reference('event_dispatcher'), new Reference('controller_resolver'),
                new Reference('request_stack'), new Reference('argument_resolver'),
            ]);
            $c->register(Catalog::class, Catalog::class);
            $c->register(ProductController::class, ProductController::class)
                ->setPublic(true)->setArguments([new Reference(Catalog::class)]);
        });
    }
}
