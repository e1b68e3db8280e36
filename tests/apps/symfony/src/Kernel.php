<?php
namespace App;

use App\Controller\PageController;
use Symfony\Bundle\FrameworkBundle\FrameworkBundle;
use Symfony\Bundle\FrameworkBundle\Kernel\MicroKernelTrait;
use Symfony\Bundle\TwigBundle\TwigBundle;
use Symfony\Component\DependencyInjection\Loader\Configurator\ContainerConfigurator;
use Symfony\Component\HttpKernel\Kernel as BaseKernel;
use Symfony\Component\Routing\Loader\Configurator\RoutingConfigurator;

class Kernel extends BaseKernel
{
    use MicroKernelTrait;

    public function registerBundles(): iterable
    {
        yield new FrameworkBundle();
        yield new TwigBundle();
    }

    public function getProjectDir(): string
    {
        return dirname(__DIR__);
    }

    protected function configureContainer(ContainerConfigurator $container): void
    {
        $container->extension('framework', [
            'secret' => 'php-gateway-test-secret',
            'http_method_override' => true,
            'session' => ['handler_id' => null, 'storage_factory_id' => 'session.storage.factory.native',
                          'cookie_samesite' => 'lax'],
            'csrf_protection' => true,
            'validation' => ['enabled' => true, 'email_validation_mode' => 'html5'],
            'router' => ['utf8' => true],
        ]);
        $container->extension('twig', ['default_path' => '%kernel.project_dir%/templates']);
        $container->services()->set(PageController::class)
            ->autowire()->autoconfigure()->public();
    }

    protected function configureRoutes(RoutingConfigurator $routes): void
    {
        $page = PageController::class;
        $routes->add('home', '/')->controller([$page, 'home'])->methods(['GET']);
        $routes->add('hello', '/hello/{name}')->controller([$page, 'hello'])->methods(['GET']);
        $routes->add('item', '/api/items/{id}')->controller([$page, 'item'])
            ->requirements(['id' => '\d+'])->methods(['GET']);
        $routes->add('counter', '/counter')->controller([$page, 'counter'])->methods(['GET']);
        $routes->add('form', '/form')->controller([$page, 'form'])->methods(['GET']);
        $routes->add('submit', '/form')->controller([$page, 'submit'])->methods(['POST']);
        $routes->add('upload', '/upload')->controller([$page, 'upload'])->methods(['POST']);
        $routes->add('download', '/download/{name}')->controller([$page, 'download'])
            ->methods(['GET']);
        $routes->add('cookie', '/cookie')->controller([$page, 'cookie'])->methods(['GET']);
        $routes->add('cookie_read', '/cookie/read')->controller([$page, 'readCookie'])
            ->methods(['GET']);
        $routes->add('item_put', '/items/{id}')->controller([$page, 'put'])->methods(['PUT']);
        $routes->add('item_delete', '/items/{id}')->controller([$page, 'delete'])
            ->methods(['DELETE']);
        $routes->add('stream', '/stream')->controller([$page, 'streamed'])->methods(['GET']);
        $routes->add('fail', '/fail')->controller([$page, 'fail'])->methods(['GET']);
    }
}
