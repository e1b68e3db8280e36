<!doctype html>
<html>
<head><title>{{ config('app.name') }}</title><link rel="stylesheet" href="/app.css"></head>
<body><h1>Welcome</h1><p><a href="/hello/world">hello</a></p></body>
</html>
