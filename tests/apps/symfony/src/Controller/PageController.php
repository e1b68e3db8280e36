<?php
namespace App\Controller;

use Symfony\Bundle\FrameworkBundle\Controller\AbstractController;
use Symfony\Component\HttpFoundation\BinaryFileResponse;
use Symfony\Component\HttpFoundation\Cookie;
use Symfony\Component\HttpFoundation\JsonResponse;
use Symfony\Component\HttpFoundation\Request;
use Symfony\Component\HttpFoundation\Response;
use Symfony\Component\HttpFoundation\ResponseHeaderBag;
use Symfony\Component\HttpFoundation\StreamedResponse;
use Symfony\Component\Validator\Constraints as Assert;
use Symfony\Component\Validator\Validator\ValidatorInterface;

class PageController extends AbstractController
{
    public function home(): Response
    {
        return $this->render('home.html.twig');
    }

    public function hello(string $name): Response
    {
        return $this->render('hello.html.twig', ['name' => $name]);
    }

    public function item(int $id): JsonResponse
    {
        return $this->json(['id' => $id, 'name' => "item $id", 'tags' => ['a', 'b'],
                            'price' => $id * 1.5]);
    }

    public function counter(Request $request): Response
    {
        $session = $request->getSession();
        $session->set('n', $session->get('n', 0) + 1);
        return new Response("visits: {$session->get('n')}\n", 200,
                            ['Content-Type' => 'text/plain']);
    }

    public function form(Request $request): Response
    {
        $flash = $request->getSession()->getFlashBag();
        return $this->render('form.html.twig', [
            'status' => $flash->get('status')[0] ?? null,
            'errors' => $flash->get('errors'),
            'old' => $flash->get('old')[0] ?? [],
        ]);
    }

    public function submit(Request $request, ValidatorInterface $validator): Response
    {
        if (!$this->isCsrfTokenValid('contact', (string) $request->request->get('_token'))) {
            return new Response("Invalid CSRF token\n", 419, ['Content-Type' => 'text/plain']);
        }
        $data = ['name' => (string) $request->request->get('name'),
                 'email' => (string) $request->request->get('email')];
        $violations = $validator->validate($data, new Assert\Collection([
            'name' => [new Assert\NotBlank(), new Assert\Length(['min' => 3])],
            'email' => [new Assert\NotBlank(), new Assert\Email()],
        ]));
        $flash = $request->getSession()->getFlashBag();
        if (count($violations) > 0) {
            foreach ($violations as $violation) {
                $flash->add('errors', $violation->getPropertyPath() . ': ' . $violation->getMessage());
            }
            $flash->add('old', $data);
            return $this->redirect('/form');
        }
        $flash->add('status', "Thanks, {$data['name']}!");
        return $this->redirect('/form');
    }

    public function upload(Request $request): JsonResponse
    {
        $file = $request->files->get('doc');
        if ($file === null || !$file->isValid()) {
            return $this->json(['error' => 'no file'], 422);
        }
        $name = 'doc-' . sha1_file($file->getPathname()) . '.txt';
        $size = $file->getSize();
        $original = $file->getClientOriginalName();
        $file->move($this->getParameter('kernel.project_dir') . '/var/uploads', $name);
        return $this->json(['stored' => $name, 'size' => $size, 'original' => $original], 201);
    }

    public function download(string $name): Response
    {
        $path = $this->getParameter('kernel.project_dir') . '/var/uploads/' . basename($name);
        if (!is_file($path)) {
            throw $this->createNotFoundException();
        }
        $response = new BinaryFileResponse($path, 200, ['Content-Type' => 'text/plain']);
        $response->setContentDisposition(ResponseHeaderBag::DISPOSITION_ATTACHMENT, 'report.txt');
        return $response;
    }

    public function cookie(): Response
    {
        $response = new Response("set\n", 200, ['Content-Type' => 'text/plain']);
        $response->headers->setCookie(Cookie::create('flavour', 'oatmeal', time() + 3600));
        return $response;
    }

    public function readCookie(Request $request): Response
    {
        return new Response('flavour: ' . $request->cookies->get('flavour', 'none') . "\n", 200,
                            ['Content-Type' => 'text/plain']);
    }

    public function put(int $id): Response
    {
        return new Response("put $id\n", 200, ['Content-Type' => 'text/plain']);
    }

    public function delete(int $id): Response
    {
        return new Response("deleted $id\n", 200, ['Content-Type' => 'text/plain']);
    }

    public function streamed(): StreamedResponse
    {
        return new StreamedResponse(function () {
            foreach ([1, 2, 3] as $i) {
                echo "chunk $i\n";
                if (ob_get_level() > 0) {
                    ob_flush();  // php.ini's output_buffering holds it otherwise
                }
                flush();
                usleep(100000);
            }
        }, 200, ['Content-Type' => 'text/plain']);
    }

    public function fail(): Response
    {
        throw new \RuntimeException('boom');
    }
}
