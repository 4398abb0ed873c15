"""Property and fuzz tests for the ESL readers.

* random events -> writers -> both decoders: they agree, and give back what was written;
* random commands -> encode -> server parser -> the same command;
* random / mutated capture bytes at random chunk boundaries: each decoder yields messages and
  then either finishes or raises RemoteProtocolError -- never another exception, never a hang,
  never more buffered bytes than the limits allow -- and both decoders behave identically.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccfast.esl import (
    CLOSED,
    HAVE_CYTHON,
    Api,
    BgApi,
    ClientProtocol,
    Event,
    Filter,
    RemoteProtocolError,
    SendEvent,
    SendMsg,
    ServerProtocol,
    Subscribe,
    url_decode,
    url_encode,
    write_event_json,
    write_event_plain,
)

FIXTURES = Path("/work/shared/fixtures/freeswitch-esl")
CAPTURES = [
    "esl-capture-outbound.txt",
    "external-dispatch-inbound.txt",
    "external-dispatch-outbound.txt",
    "esl-capture-plain-callcenter-only.txt",
]
DECODERS = ["python", "cython"] if HAVE_CYTHON else ["python"]
# ESL_FUZZ_EXAMPLES=5000 for a longer local fuzzing session
FUZZ = settings(max_examples=int(os.environ.get("ESL_FUZZ_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=":"),
    min_size=1,
    max_size=20,
).filter(lambda n: n.lower() not in ("content-length", "_body"))
values = st.text(max_size=40) | st.sampled_from(["", "%20", "100%", "a+b", "x@y:z", "ARRAY::a|:b"])
arrays = st.lists(st.text(max_size=8).filter(lambda s: "|:" not in s), min_size=1, max_size=4)
headers = st.lists(st.tuples(names, values | arrays), min_size=1, max_size=25)  # FS events always have some
bodies = st.none() | st.text(min_size=1, max_size=60)


def _decode(decoder: str, data: bytes, chunks: list[int] | None = None) -> list:
    p = ClientProtocol(decoder=decoder)
    i = 0
    for n in chunks or []:
        p.receive_data(data[i:i + n])
        i += n
    p.receive_data(data[i:])
    p.receive_data(b"")
    out = []
    while (m := p.next_message()) is not CLOSED:
        out.append(m)
    return out


def _expected_plain(value) -> str:
    if isinstance(value, list):
        value = "ARRAY::" + "|:".join(value)
    if value == "":
        return ""
    # FreeSWITCH leaves valid %XX alone when encoding, so what arrives is decode(encode(v))
    return url_decode(url_encode(value).encode("ascii"))


@FUZZ
@given(headers, bodies, st.lists(st.integers(1, 50), max_size=10))
def test_plain_roundtrip_and_decoders_agree(hdrs, body, chunks):
    wire = write_event_plain(hdrs, body)
    results = [_decode(d, wire, chunks) for d in DECODERS]
    for got in results:
        assert len(got) == 1 and isinstance(got[0], Event)
        ev = got[0]
        assert ev.headers.pairs() == [(n, _expected_plain(v)) for n, v in hdrs]
        assert ev.body == (body or None)
    assert all(r == results[0] for r in results)


@FUZZ
@given(headers, bodies)
def test_json_roundtrip_and_decoders_agree(hdrs, body):
    wire = write_event_json(hdrs, body)
    results = [_decode(d, wire) for d in DECODERS]
    expect = [(n, "ARRAY::" + "|:".join(v) if isinstance(v, list) else v) for n, v in hdrs]
    for got in results:
        ev = got[0]
        assert ev.format == "json"
        assert ev.headers.pairs() == expect
        assert ev.body == (body or None)
        for n, v in expect:
            assert ev.get(n) == dict(reversed(expect)).get(n)
    assert all(r == results[0] for r in results)


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789-", min_size=1, max_size=12)
commands = st.one_of(
    st.builds(Api, words, st.text(alphabet="ab c{}=,&()'@:", max_size=30).map(str.strip)),
    st.builds(BgApi, words, st.text(alphabet="ab c{}=,&", max_size=30).map(str.strip), words),
    st.builds(Subscribe, st.sampled_from(["plain", "json"]), st.lists(words, min_size=1, max_size=4),
              st.lists(words, max_size=3)),
    st.builds(Filter, words, words),
    st.builds(SendEvent.custom, words, st.lists(st.tuples(names, st.text(alphabet="xyz @:%", max_size=9)),
                                                max_size=5), bodies),
    st.builds(SendMsg.execute, st.none() | words, words, st.none() | st.text(max_size=50),
              event_lock=st.booleans(), async_=st.booleans()),
)


@FUZZ
@given(st.lists(commands, min_size=1, max_size=5), st.integers(1, 30))
def test_commands_roundtrip_through_server_parser(cmds, chunk):
    wire = b"".join(c.encode() for c in cmds)
    server = ServerProtocol()
    got = []
    for i in range(0, len(wire), chunk):
        server.receive_data(wire[i:i + chunk])
        got.extend(server.commands())
    assert got == cmds


def _outcome(decoder: str, data: bytes, chunks: list[int], **limits):
    """(messages as comparable keys, error or None); asserts the memory bound on the way."""
    p = ClientProtocol(decoder=decoder, **limits)
    out = []
    i = 0
    try:
        for n in chunks + [len(data)]:
            p.receive_data(data[i:i + n])
            i += n
            out.extend(p.messages())
            assert p.buffered <= limits["max_header_size"] + limits["max_body_size"] + n + 2
        p.receive_data(b"")
        while (m := p.next_message()) is not CLOSED:
            out.append(m)
        return out, None
    except RemoteProtocolError as exc:
        with pytest.raises(RemoteProtocolError):
            p.next_message()
        return out, type(exc)


LIMITS = {"max_header_size": 4096, "max_body_size": 8192}


@pytest.fixture(scope="module")
def capture_bytes():
    return {name: (FIXTURES / name).read_bytes()[:20000] for name in CAPTURES}


@FUZZ
@given(
    st.sampled_from(CAPTURES),
    st.lists(st.tuples(st.integers(0, 19999), st.binary(max_size=4), st.integers(0, 3)), max_size=6),
    st.lists(st.integers(1, 3000), max_size=8),
)
def test_mutated_captures_never_crash_and_decoders_agree(capture_bytes, name, edits, chunks):
    data = bytearray(capture_bytes[name])
    for pos, ins, delete in edits:
        pos %= max(len(data), 1)
        data[pos:pos + delete] = ins
    data = bytes(data)
    results = [_outcome(d, data, chunks, **LIMITS) for d in DECODERS]
    assert all(r == results[0] for r in results)


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(1, 64), max_size=6))
def test_random_bytes_never_crash(data, chunks):
    framed = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(data) + data
    jframed = b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(data) + data
    for blob in (data, framed, jframed):
        results = [_outcome(d, blob, chunks, **LIMITS) for d in DECODERS]
        assert all(r == results[0] for r in results)


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(1, 64), max_size=6))
def test_server_reader_never_crashes(data, chunks):
    s = ServerProtocol(max_header_size=1024, max_body_size=1024)
    i = 0
    try:
        for n in chunks + [len(data)]:
            s.receive_data(data[i:i + n])
            i += n
            list(s.commands())
            assert s.buffered <= 2048 + n + 2
        s.receive_data(b"")
        while s.next_command() is not CLOSED:
            pass
    except RemoteProtocolError:
        pass


@pytest.mark.parametrize("decoder", DECODERS)
def test_endless_header_is_bounded(decoder):
    p = ClientProtocol(decoder=decoder, max_header_size=64 * 1024)
    chunk = b"A" * 4096
    with pytest.raises(RemoteProtocolError):
        for _ in range(1000):
            p.receive_data(chunk)
            p.next_message()
    assert p.buffered <= 64 * 1024 + 4096
