"""MemoDecoder gives exactly what hpack's own Decoder gives, whatever the encoder did to
the dynamic table between two identical blocks."""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol.hpack_memo import MemoDecoder, MemoEncoder

NAMES = [b":path", b"cookie", b"user-agent", b"x-a", b"x-b", b"accept"]
VALUES = [b"/", b"/a?q=1", b"session=abc", b"theme=dark", b"v1", b"v2", b"x" * 300]

field = st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES), st.booleans())
block = st.lists(field, min_size=1, max_size=6)
# a step: a header list to send, or a new table size the encoder announces
step = st.one_of(block, st.sampled_from([0, 64, 256, 4096]))


def encode(encoder: hpack.Encoder, fields: list[tuple[bytes, bytes, bool]]) -> bytes:
    # sensitive fields are sent never-indexed (they leave the table alone), the rest indexed
    return encoder.encode([(n, v, sensitive) for n, v, sensitive in fields])


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=30), st.data())
def test_memo_decoder_matches_hpack(steps: list[object], data: st.DataObject) -> None:
    encoder = hpack.Encoder()
    reference, memo = hpack.Decoder(), MemoDecoder()
    sent: list[bytes] = []
    for s in steps:
        if isinstance(s, int):
            encoder.header_table_size = s
            continue
        wire = encode(encoder, s)
        sent.append(wire)
        # also replay an earlier block verbatim: the memo's risky case
        replay = data.draw(st.sampled_from(sent))
        for blob in (wire, replay):
            try:
                expected = reference.decode(blob, raw=True)
            except hpack.HPACKError as exc:
                try:
                    memo.decode(blob, raw=True)
                except hpack.HPACKError as memo_exc:
                    assert type(memo_exc) is type(exc)
                    continue
                raise AssertionError(f"memo decoded what hpack refused: {exc}") from None
            assert memo.decode(blob, raw=True) == expected


def test_repeated_neutral_block_is_served_from_the_memo() -> None:
    encoder, decoder = hpack.Encoder(), MemoDecoder()
    fields = [(b":method", b"GET"), (b":path", b"/x"), (b"cookie", b"a=1", True)]
    first = decoder.decode(encoder.encode(fields), raw=True)  # indexes :path: not remembered
    again = encoder.encode(fields)  # indexed :path + never-indexed cookie: table-neutral
    assert decoder.decode(again, raw=True) == first
    assert again in decoder._memo
    assert decoder.decode(again, raw=True) == first


def test_memo_respects_a_lowered_header_list_limit() -> None:
    encoder, decoder = hpack.Encoder(), MemoDecoder()
    fields = [(b"x-big", b"y" * 500, True)]
    blob = encoder.encode(fields)
    decoder.decode(blob, raw=True)
    decoder.max_header_list_size = 100
    try:
        decoder.decode(blob, raw=True)
    except hpack.OversizedHeaderListError:
        return
    raise AssertionError("an oversized list was served from the memo")


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=30), st.data())
def test_memo_encoder_emits_hpacks_bytes(steps: list[object], data: st.DataObject) -> None:
    """Byte for byte what hpack's Encoder emits, repeats and table resizes included."""
    from gateway.protocol.hpack_memo import MemoEncoder

    reference, memo = hpack.Encoder(), MemoEncoder()
    lists: list[list[tuple[bytes, bytes]]] = []
    for s in steps:
        if isinstance(s, int):
            reference.header_table_size = memo.header_table_size = s
            continue
        lists.append([(n, v) for n, v, _ in s])
        for fields in (lists[-1], data.draw(st.sampled_from(lists)), lists[-1]):
            assert memo.encode(fields) == reference.encode(fields)


def test_memo_encoder_leaves_sensitive_fields_to_hpack() -> None:
    from gateway.protocol.hpack_memo import MemoEncoder

    encoder, decoder = MemoEncoder(), hpack.Decoder()
    fields = [(b"set-cookie", b"sid=1", True)]
    for _ in range(3):
        decoded = decoder.decode(encoder.encode(fields), raw=True)
        assert decoded == [(b"set-cookie", b"sid=1")]
        assert isinstance(decoded[0], hpack.NeverIndexedHeaderTuple)
    assert encoder._memo == {}


def test_fields_new_in_every_response_do_not_defeat_the_memo() -> None:
    encoder = MemoEncoder()
    decoder = hpack.Decoder()
    stable = [(b":status", b"200"), (b"content-type", b"text/html"), (b"content-length", b"13")]
    for i in range(4):
        ids = [(b"traceparent", b"00-%032x-%016x-01" % (i, i)), (b"x-request-id", b"%d" % i)]
        block = encoder.encode([stable[0], ids[0], *stable[1:], ids[1]])
        assert decoder.decode(block, raw=True) == [*stable, *ids]  # the ids go last
        names = {name for name, _ in decoder.header_table.dynamic_entries}
        assert not names & {b"traceparent", b"x-request-id"}  # never indexed
    assert len(encoder._memo) == 1  # one block without the ids, hit from the third on
