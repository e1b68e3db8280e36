"""Side-by-side benchmark of php-gateway against nginx + php-fpm (see docs/benchmarks.md)."""
