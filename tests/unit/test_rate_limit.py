"""The rate-limit middleware with a recording context: fields on every answer, a 429 that
goes down the chain as a server-made answer (error pages, no endpoint work)."""

from __future__ import annotations

from recording_context import RecordingContext, request

from gateway.pipeline.context import RequestContext
from gateway.pipeline.error_pages import PageSet, builtin_page, serve_pages
from gateway.pipeline.rate_limit import RatePolicy, limit_requests
from gateway.pipeline.rate_table import RateTable
from gateway.pipeline.responses import respond, respond_status

SECOND = 1_000_000_000


def test_policy_fields() -> None:
    policy = RatePolicy(limit=40, window=60, burst=40)
    assert (policy.interval_ns, policy.tolerance_ns) == (1_500_000_000, 60 * SECOND)
    now = 5 * SECOND
    fields = dict(policy.headers(True, now + policy.interval_ns, now))
    assert fields == {
        b"ratelimit-policy": b'"default";q=40;w=60',
        b"ratelimit": b'"default";r=39;t=2',
        b"x-ratelimit-limit": b"40",
        b"x-ratelimit-remaining": b"39",
        b"x-ratelimit-reset": b"2",
    }
    refused = dict(policy.headers(False, now + 60 * SECOND, now))
    assert refused[b"x-ratelimit-remaining"] == b"0"
    assert refused[b"x-ratelimit-reset"] == b"60"
    assert refused[b"retry-after"] == b"2"  # one interval (1.5 s), rounded up


def test_burst_differs_from_limit() -> None:
    policy = RatePolicy(limit=10, window=10, burst=3)
    assert (policy.interval_ns, policy.tolerance_ns) == (SECOND, 3 * SECOND)
    now = 100 * SECOND
    assert dict(policy.headers(True, now + SECOND, now))[b"x-ratelimit-remaining"] == b"2"


async def test_refused_request_is_answered_down_the_chain() -> None:
    runs: list[int | None] = []

    async def endpoint(ctx: RequestContext) -> None:
        runs.append(ctx.error_status)
        if ctx.error_status is not None:
            await respond_status(ctx, ctx.error_status)
        else:
            await respond(ctx, 200, b"ok")

    table = RateTable.create(16, shared=False)
    policy = RatePolicy(limit=2, window=3600, burst=2)
    app = limit_requests(policy, table)(serve_pages(PageSet(None))(endpoint))
    browser = [(b"accept", b"text/html")]
    answers = []
    for headers in ([], [], [], browser):
        ctx = RecordingContext(request(headers=headers), client=("198.51.100.4", 1234))
        await app(ctx)
        answers.append(ctx)
    assert [a.status for a in answers] == [200, 200, 429, 429]
    assert runs == [None, None, 429, 429]
    assert [a.header(b"x-ratelimit-remaining") for a in answers] == [b"1", b"0", b"0", b"0"]
    plain, html = answers[2], answers[3]
    assert plain.body == b"429 Too Many Requests\n"
    assert html.body == builtin_page(429)
    assert html.header(b"content-type") == b"text/html; charset=utf-8"
    for refused in (plain, html):
        assert refused.header(b"retry-after") == b"1800"
        assert refused.header(b"ratelimit") == b'"default";r=0;t=3600'
        assert refused.header(b"ratelimit-policy") == b'"default";q=2;w=3600'
    assert answers[0].header(b"retry-after") is None


async def test_server_made_answers_and_other_clients_are_not_counted() -> None:
    async def endpoint(ctx: RequestContext) -> None:
        await respond_status(ctx, ctx.error_status or 200)

    table = RateTable.create(16, shared=False)
    app = limit_requests(RatePolicy(limit=1, window=3600, burst=1), table)(endpoint)
    bad = RecordingContext(request(), client=("198.51.100.5", 1), error_status=400)
    await app(bad)
    assert bad.status == 400 and bad.header(b"x-ratelimit-limit") is None
    first = RecordingContext(request(), client=("198.51.100.5", 2))
    await app(first)
    assert first.status == 200  # the 400 did not use the allowance
    other = RecordingContext(request(), client=("198.51.100.6", 3))
    await app(other)
    assert other.status == 200
    again = RecordingContext(request(), client=("198.51.100.5", 4))
    await app(again)
    assert again.status == 429
