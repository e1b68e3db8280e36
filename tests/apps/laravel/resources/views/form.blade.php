<!doctype html>
<title>Contact</title>
@if ($status)
<p class="status">{{ $status }}</p>
@endif
@if ($errors->any())
<ul class="errors">
@foreach ($errors->all() as $error)
<li>{{ $error }}</li>
@endforeach
</ul>
@endif
<form method="post" action="/form">
@csrf
<input name="name" value="{{ old('name') }}">
<input name="email" value="{{ old('email') }}">
<button>Send</button>
</form>
