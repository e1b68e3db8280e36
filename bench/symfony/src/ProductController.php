<?php

namespace App;

use Symfony\Component\HttpFoundation\Request;
use Symfony\Component\HttpFoundation\Response;
use Symfony\Component\HttpKernel\Exception\NotFoundHttpException;

final class ProductController
{
    public function __construct(private Catalog $catalog)
    {
    }

    public function show(Request $request, int $id): Response
    {
        $product = $this->catalog->find($id) ?? throw new NotFoundHttpException("no product $id");
        $rows = '';
        foreach ($this->catalog->related($id, 12) as $p) {
            $rows .= sprintf('<li><a href="/product/%d">%s</a> %d.%02d EUR</li>' . "\n",
                             $p['id'], htmlspecialchars($p['name']), intdiv($p['price'], 100),
                             $p['price'] % 100);
        }
        $html = sprintf("<!doctype html>\n<html><head><title>%s</title></head><body>\n"
                        . "<h1>%s</h1><p>%d.%02d EUR, %s</p>\n<ul>\n%s</ul>\n</body></html>\n",
                        htmlspecialchars($product['name']), htmlspecialchars($product['name']),
                        intdiv($product['price'], 100), $product['price'] % 100,
                        implode(', ', $product['tags']), $rows);
        return new Response($html, 200, ['Content-Type' => 'text/html; charset=UTF-8',
                                         'Cache-Control' => 'private, max-age=0']);
    }
}
