<?php
namespace App\Http\Controllers;

use Illuminate\Http\Request;
use Illuminate\Routing\Controller;

class PageController extends Controller
{
    public function hello(string $name)
    {
        return view('hello', ['name' => $name, 'shout' => strtoupper($name)]);
    }

    public function form(Request $request)
    {
        return view('form', ['status' => $request->session()->get('status')]);
    }

    public function submit(Request $request)
    {
        $data = $request->validate(['name' => 'required|min:3', 'email' => 'required|email']);
        $request->session()->flash('status', "Thanks, {$data['name']}!");
        return redirect('/form');
    }

    public function upload(Request $request)
    {
        $request->validate(['doc' => 'required|file|max:1024']);
        $file = $request->file('doc');
        $name = 'doc-' . sha1_file($file->getRealPath()) . '.txt';
        $file->storeAs('uploads', $name, 'local');
        return response()->json(['stored' => $name, 'size' => $file->getSize(),
                                 'original' => $file->getClientOriginalName()], 201);
    }

    public function download(string $name)
    {
        $path = storage_path('app/uploads/' . basename($name));
        abort_unless(is_file($path), 404);
        return response()->download($path, 'report.txt', ['Content-Type' => 'text/plain']);
    }
}
