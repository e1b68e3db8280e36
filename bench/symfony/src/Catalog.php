<?php

namespace App;

/** The application's data: built when the container makes the service. */
final class Catalog
{
    /** @var array<int, array{id: int, name: string, price: int, tags: list<string>}> */
    private array $products = [];

    public function __construct()
    {
        for ($i = 1; $i <= 500; $i++) {
            $this->products[$i] = ['id' => $i, 'name' => "Product $i", 'price' => ($i * 7919) % 10007,
                                   'tags' => ['tag' . ($i % 7), 'tag' . ($i % 11)]];
        }
    }

    /** @return array{id: int, name: string, price: int, tags: list<string>}|null */
    public function find(int $id): ?array
    {
        return $this->products[$id] ?? null;
    }

    /** @return list<array{id: int, name: string, price: int, tags: list<string>}> */
    public function related(int $id, int $count): array
    {
        $out = [];
        for ($i = 1; $i <= $count; $i++) {
            $out[] = $this->products[($id + $i * 37) % 500 + 1];
        }
        return $out;
    }
}
