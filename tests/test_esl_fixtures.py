"""The ESL protocol against the bytes captured from a real FreeSWITCH (shared/fixtures).

Both decoders (pure-Python reference and Cython) must decode every capture to equal messages,
whatever the chunking; re-encoding the decoded messages with the writers must give back the
captured bytes exactly; the ``*-sent.txt`` captures (client -> server) parse into commands that
re-encode to the same bytes.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from ccfast.esl import (
    CLOSED,
    HAVE_CYTHON,
    ApiResponse,
    AuthRequest,
    BgApi,
    ChannelData,
    ClientProtocol,
    CommandReply,
    Connect,
    DisconnectNotice,
    Event,
    Exit,
    Linger,
    MyEvents,
    RawCommand,
    SendEvent,
    SendMsg,
    ServerProtocol,
    Subscribe,
    write_message,
)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "freeswitch-esl"
if not FIXTURES.is_dir():  # helpers run in /work/main; the shared tree is beside it
    FIXTURES = Path("/work/shared/fixtures/freeswitch-esl")

RECEIVED = {
    "esl-capture-plain.txt": 143,
    "esl-capture-json.txt": 143,
    "esl-capture-outbound.txt": 26,
    "esl-capture-plain-callcenter-only.txt": 10,
    "external-dispatch-inbound.txt": 38,
    "external-dispatch-outbound.txt": 30,
}
SENT = [
    "esl-capture-plain-sent.txt",
    "esl-capture-json-sent.txt",
    "external-dispatch-inbound-sent.txt",
    "external-dispatch-outbound-sent.txt",
]
DECODERS = ["python", "cython"] if HAVE_CYTHON else ["python"]


def test_cython_decoder_is_built():
    # the speed targets depend on it; a missing build must not pass silently
    assert HAVE_CYTHON


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode_all(data: bytes, decoder: str, chunk: int | None = None) -> list:
    proto = ClientProtocol(decoder=decoder)
    out = []
    step = chunk or len(data)
    for i in range(0, len(data), step):
        proto.receive_data(data[i:i + step])
        out.extend(proto.messages())
    proto.receive_data(b"")
    out.extend(proto.messages())
    assert proto.next_message() is CLOSED
    return out


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", sorted(RECEIVED))
def test_capture_frame_counts(name, decoder):
    msgs = decode_all(_read(name), decoder)
    assert len(msgs) == RECEIVED[name]


@pytest.mark.parametrize("name", sorted(RECEIVED))
def test_decoders_agree_on_every_capture(name):
    data = _read(name)
    ref = decode_all(data, "python")
    for decoder in DECODERS:
        got = decode_all(data, decoder, chunk=997)
        assert got == ref
        for a, b in zip(ref, got):
            if isinstance(a, Event):
                assert a.format == b.format
                assert a.headers.pairs() == b.headers.pairs()
                assert a.body == b.body
                assert dict(a.headers.items()) == dict(b.headers.items())
                assert a.name == b.name and a.subclass == b.subclass


@pytest.mark.parametrize("decoder", DECODERS)
def test_random_chunk_boundaries(decoder):
    data = _read("external-dispatch-outbound.txt") + b""
    ref = decode_all(data, "python")
    rnd = random.Random(7)
    for _ in range(5):
        proto = ClientProtocol(decoder=decoder)
        got = []
        i = 0
        while i < len(data):
            n = rnd.choice([1, 2, 3, 50, 700, 4096])
            proto.receive_data(data[i:i + n])
            got.extend(proto.messages())
            i += n
        assert got == ref


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", sorted(RECEIVED))
def test_reencoding_is_byte_exact(name, decoder):
    data = _read(name)
    out = b"".join(
        write_message(m, m.format if isinstance(m, Event) else None) for m in decode_all(data, decoder)
    )
    assert out == data


def test_plain_and_json_captures_describe_the_same_call():
    plain = [m for m in decode_all(_read("esl-capture-plain.txt"), "python") if isinstance(m, Event)]
    js = [m for m in decode_all(_read("esl-capture-json.txt"), "python") if isinstance(m, Event)]
    # another run of the same scenario: same event mix, order differs a little (threads)
    assert Counter((e.name, e.subclass) for e in plain) == Counter((e.name, e.subclass) for e in js)
    assert plain[0].format == "plain" and js[0].format == "json"
    cc_p = [e for e in plain if e.subclass == "callcenter::info"]
    cc_j = [e for e in js if e.subclass == "callcenter::info"]
    assert [e["CC-Action"] for e in cc_p] == [e["CC-Action"] for e in cc_j]
    for p, j in zip(cc_p, cc_j):  # values that do not depend on the run
        assert p.get("CC-Queue") == j.get("CC-Queue")
    jobs = [(e.body is None) for e in plain if e.name == "BACKGROUND_JOB"]
    assert jobs == [(e.body is None) for e in js if e.name == "BACKGROUND_JOB"] == [False]


@pytest.mark.parametrize("decoder", DECODERS)
def test_plain_values_are_decoded_per_line(decoder):
    events = [m for m in decode_all(_read("esl-capture-plain.txt"), decoder) if isinstance(m, Event)]
    first = events[0]
    assert first.name == "API"
    assert first["FreeSWITCH-IPv6"] == "fd00::2"
    assert first["Event-Date-GMT"].endswith(" GMT") and "%" not in first["Event-Date-GMT"]
    arrays = [e for e in events if "variable_DP_MATCH" in e]
    assert arrays
    assert arrays[0].get("variable_DP_MATCH").startswith("ARRAY::")
    assert arrays[0].get_array("variable_DP_MATCH") == ["queue_support", "support"]
    codec = next(e for e in events if e.name == "CODEC" and len(e.get_all("Channel-Write-Codec-Name")) == 2)
    assert codec.get_all("Channel-Write-Codec-Name") == ["L16", "L16"]
    assert "Channel-Write-codec-bit-rate" in codec  # names keep their case
    cc = [e for e in events if e.subclass == "callcenter::info"]
    assert len(cc) == 10


@pytest.mark.parametrize("decoder", DECODERS)
def test_json_arrays_and_body(decoder):
    events = [m for m in decode_all(_read("esl-capture-json.txt"), decoder) if isinstance(m, Event)]
    arr = next(e for e in events if "variable_DP_MATCH" in e)
    assert arr.get_array("variable_DP_MATCH") in (["queue_support", "support"], ["agent_answer_3", "3"])
    job = next(e for e in events if e.name == "BACKGROUND_JOB")
    assert job.body.startswith("+OK ") and job.body.endswith("\n")
    assert "Content-Length" not in job.headers  # belongs to the body, not to the event
    assert "_body" not in job.headers


@pytest.mark.parametrize("decoder", DECODERS)
def test_callcenter_only_sequence(decoder):
    events = decode_all(_read("esl-capture-plain-callcenter-only.txt"), decoder)
    actions = [e["CC-Action"] for e in events]
    assert actions == [
        "member-queue-start",
        "members-count",
        "agent-state-change",
        "agent-offering",
        "bridge-agent-start",
        "agent-state-change",
        "members-count",
        "bridge-agent-end",
        "member-queue-end",
        "agent-state-change",
    ]
    assert events[2]["CC-Agent-State"] == "Receiving"
    assert all(e.name == "CUSTOM" and e.subclass == "callcenter::info" for e in events)


@pytest.mark.parametrize("decoder", DECODERS)
def test_outbound_connect_reply_and_notices(decoder):
    msgs = decode_all(_read("external-dispatch-outbound.txt"), decoder)
    cd = msgs[0]
    assert isinstance(cd, ChannelData) and isinstance(cd, Event)
    assert cd.name == "CHANNEL_DATA"
    assert cd.reply_text == "+OK\n" and cd.ok
    assert cd.socket_mode == "async" and cd.control == "full"
    assert cd["variable_cc_queue"] == "support@default"
    assert cd["variable_cc_member_note"] == "joined via ext_queue"
    assert cd["variable_current_application_data"] == "127.0.0.1:8040 async full"
    assert cd["Channel-State"] == "CS_EXECUTE" and cd["Answer-State"] == "ringing"
    replies = [m for m in msgs if isinstance(m, CommandReply)]
    assert replies[0].reply_text == "+OK Events Enabled"
    assert replies[-1].reply_text == "+OK bye"
    notices = [m for m in msgs if isinstance(m, DisconnectNotice)]
    assert [n.disposition for n in notices] == ["linger", "disconnect"]
    assert notices[0].linger_time == -1 and notices[0].body == ""
    assert notices[1].body == "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    assert notices[0].controlled_session_uuid == cd["Unique-ID"]


@pytest.mark.parametrize("decoder", DECODERS)
def test_inbound_dispatch_capture(decoder):
    msgs = decode_all(_read("external-dispatch-inbound.txt"), decoder)
    assert isinstance(msgs[0], AuthRequest)
    assert msgs[1].reply_text == "+OK accepted"
    sent = list(_commands("external-dispatch-inbound-sent.txt"))
    bgapi = next(c for c in sent if isinstance(c, BgApi))
    reply = next(m for m in msgs if isinstance(m, CommandReply) and m.job_uuid)
    assert reply.job_uuid == bgapi.job_uuid
    assert reply.reply_text == f"+OK Job-UUID: {bgapi.job_uuid}"
    job = next(m for m in msgs if isinstance(m, Event) and m.job_uuid == bgapi.job_uuid)
    assert job.name == "BACKGROUND_JOB"
    agent_uuid = bgapi.args.split("origination_uuid=")[1].split(",")[0]
    assert job.body == f"+OK {agent_uuid}\n"
    apis = [m for m in msgs if isinstance(m, ApiResponse)]
    assert apis[0].body == f"+OK {agent_uuid}\n"
    # the echoed sendevent carries the command line as a header and our headers, decoded
    echo = next(m for m in msgs if isinstance(m, Event) and m.get("CC-Action") == "agent-offering")
    assert echo["Command"] == "sendevent CUSTOM"
    assert echo["CC-Queue"] == "support@default"
    assert echo["CC-Member-CID-Name"] == "Alice Smith"
    assert isinstance(msgs[-1], DisconnectNotice) and msgs[-1].disposition is None


def _commands(name: str):
    proto = ServerProtocol()
    proto.receive_data(_read(name))
    proto.receive_data(b"")
    cmds = list(proto.commands())
    assert proto.next_command() is CLOSED
    return cmds


@pytest.mark.parametrize("name", SENT)
def test_sent_captures_parse_and_reencode(name):
    data = _read(name)
    cmds = _commands(name)
    assert not any(isinstance(c, RawCommand) for c in cmds)
    assert b"".join(c.encode() for c in cmds) == data


def test_outbound_sent_commands_are_typed():
    cmds = _commands("external-dispatch-outbound-sent.txt")
    assert cmds[0] == Connect()
    assert cmds[1] == MyEvents()
    assert cmds[2] == Subscribe("plain", ("PLAYBACK_START", "PLAYBACK_STOP"))
    assert cmds[3] == Linger()
    answer, moh = cmds[4], cmds[5]
    assert isinstance(answer, SendMsg) and answer.uuid is None
    assert answer.call_command == "execute" and answer.app_name == "answer" and answer.event_lock
    assert moh.app_name == "playback" and moh.app_arg == "local_stream://moh"
    assert cmds[6] == Exit()
    assert answer == SendMsg.execute(None, "answer", event_lock=True)


def test_inbound_sent_commands_are_typed():
    cmds = _commands("external-dispatch-inbound-sent.txt")
    sub = cmds[1]
    assert isinstance(sub, Subscribe)
    assert sub.events[0] == "BACKGROUND_JOB" and sub.events[-1] == "CUSTOM"
    assert sub.subclasses == ("callcenter::info",)
    ev = cmds[2]
    assert isinstance(ev, SendEvent) and ev.name == "CUSTOM" and ev.subclass == "callcenter::info"
    assert ("CC-Action", "member-queue-start") in ev.headers
    assert ev == SendEvent.custom("callcenter::info", ev.headers[1:])
