"""ESL sans-IO protocol: command encoding, server-side parsing, writers, errors, url codec."""

from __future__ import annotations

import pytest

from ccfast.esl import (
    CLOSED,
    HAVE_CYTHON,
    LONG_ARG,
    NEED_DATA,
    Api,
    ApiResponse,
    Auth,
    AuthRequest,
    BgApi,
    ChannelData,
    ClientProtocol,
    CommandReply,
    Connect,
    DisconnectNotice,
    DivertEvents,
    Event,
    Exit,
    Filter,
    FilterDelete,
    Headers,
    LocalProtocolError,
    Linger,
    Log,
    LogData,
    MyEvents,
    NixEvent,
    NoEvents,
    NoLinger,
    NoLog,
    RawCommand,
    RemoteProtocolError,
    Resume,
    RudeRejection,
    SendEvent,
    SendMsg,
    ServerProtocol,
    Subscribe,
    UnknownFrame,
    UserAuth,
    url_decode,
    url_encode,
    write_api_response,
    write_bgapi_reply,
    write_command_reply,
    write_connect_reply,
    write_disconnect_notice,
    write_event_json,
    write_event_plain,
    write_linger_notice,
    write_log_data,
    write_rude_rejection,
)

DECODERS = ["python", "cython"] if HAVE_CYTHON else ["python"]

# --------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    "cmd, wire",
    [
        (Auth("ClueCon"), b"auth ClueCon\n\n"),
        (UserAuth("1000@default", "pw"), b"userauth 1000@default:pw\n\n"),
        (Subscribe("plain", ["ALL"]), b"event plain ALL\n\n"),
        (
            Subscribe("json", ["CUSTOM", "CHANNEL_ANSWER"], ["callcenter::info", "sofia::register"]),
            b"event json CHANNEL_ANSWER CUSTOM callcenter::info sofia::register\n\n",
        ),
        (NixEvent(["CHANNEL_ANSWER"]), b"nixevent CHANNEL_ANSWER\n\n"),
        (NoEvents(), b"noevents\n\n"),
        (Filter("Event-Name", "BACKGROUND_JOB"), b"filter Event-Name BACKGROUND_JOB\n\n"),
        (Filter("variable_x", "a b"), b"filter variable_x a b\n\n"),
        (FilterDelete(), b"filter delete all\n\n"),
        (FilterDelete("Event-Name"), b"filter delete Event-Name\n\n"),
        (FilterDelete("Event-Name", "CUSTOM"), b"filter delete Event-Name CUSTOM\n\n"),
        (MyEvents(), b"myevents\n\n"),
        (MyEvents("abc", "json"), b"myevents abc json\n\n"),
        (DivertEvents(True), b"divert_events on\n\n"),
        (DivertEvents(False), b"divert_events off\n\n"),
        (Linger(), b"linger\n\n"),
        (Linger(5), b"linger 5\n\n"),
        (NoLinger(), b"nolinger\n\n"),
        (Resume(), b"resume\n\n"),
        (Connect(), b"connect\n\n"),
        (Exit(), b"exit\n\n"),
        (Log("debug"), b"log debug\n\n"),
        (NoLog(), b"nolog\n\n"),
        (Api("uuid_kill", "abc NORMAL_CLEARING"), b"api uuid_kill abc NORMAL_CLEARING\n\n"),
        (Api("status"), b"api status\n\n"),
        (BgApi("originate", "loopback/1 &park()", job_uuid="J1"), b"bgapi originate loopback/1 &park()\nJob-UUID: J1\n\n"),
        (
            SendEvent.custom("callcenter::info", {"CC-Queue": "support@default", "CC-Action": "x"}),
            b"sendevent CUSTOM\nEvent-Subclass: callcenter::info\nCC-Queue: support@default\nCC-Action: x\n\n",
        ),
        (
            SendEvent("NOTIFY", [("profile", "internal")], body="hello\n"),
            b"sendevent NOTIFY\nprofile: internal\nContent-Length: 6\n\nhello\n",
        ),
        (
            SendMsg.execute("u1", "playback", "local_stream://moh", event_lock=True),
            b"sendmsg u1\ncall-command: execute\nexecute-app-name: playback\n"
            b"execute-app-arg: local_stream://moh\nevent-lock: true\n\n",
        ),
        (
            SendMsg.execute(None, "playback", "x.wav", loops=3, async_=True),
            b"sendmsg\ncall-command: execute\nexecute-app-name: playback\nexecute-app-arg: x.wav\n"
            b"loops: 3\nasync: true\n\n",
        ),
        (SendMsg.hangup("u1", "NORMAL_CLEARING"), b"sendmsg u1\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING\n\n"),
        (RawCommand("getvar x"), b"getvar x\n\n"),
    ],
)
def test_command_encoding_and_parse_roundtrip(cmd, wire):
    assert cmd.encode() == wire
    server = ServerProtocol()
    server.receive_data(wire)
    assert server.next_command() == cmd
    assert server.next_command() is NEED_DATA


def test_bgapi_generates_job_uuid_before_sending():
    a, b = BgApi("status"), BgApi("status")
    assert a.job_uuid and b.job_uuid and a.job_uuid != b.job_uuid
    assert f"Job-UUID: {a.job_uuid}\n".encode() in a.encode()
    parsed = ServerProtocol()
    parsed.receive_data(b"bgapi status\n\n")
    assert parsed.next_command() == BgApi("status", job_uuid=None)


def test_api_splits_command_and_args():
    assert Api("uuid_bridge a b") == Api("uuid_bridge", "a b")
    assert Api("uuid_bridge a b").line == "uuid_bridge a b"


def test_sendmsg_long_or_multiline_arg_goes_in_body():
    arg = "x" * (LONG_ARG + 1)
    cmd = SendMsg.execute("u", "set", arg)
    wire = cmd.encode()
    assert b"execute-app-arg" not in wire
    assert b"content-type: text/plain\nContent-Length: %d\n\n" % len(arg) in wire
    assert wire.endswith(arg.encode())
    server = ServerProtocol()
    server.receive_data(wire)
    got = server.next_command()
    assert got == cmd and got.app_arg == arg
    multi = SendMsg.execute("u", "set", "a\nb")
    assert multi.app_arg == "a\nb" and multi.body == b"a\nb"


def test_subscribe_puts_custom_last():
    assert Subscribe("plain", ["CUSTOM", "A"], ["s::x"]).encode() == b"event plain A CUSTOM s::x\n\n"
    assert Subscribe("plain", ["A"], ["s::x"]).events == ("A", "CUSTOM")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Api("status\nexit"),
        lambda: Api("uuid_kill", "a\nb"),
        lambda: BgApi("originate", "x\r"),
        lambda: Auth("Clue Con"),
        lambda: Auth("pw\n"),
        lambda: SendEvent.custom("cc::info", {"CC-Queue": "a\nb"}),
        lambda: SendEvent("CUSTOM", {"Content-Length": "3"}),
        lambda: SendEvent("CUSTOM", {"Bad Name": "x"}),
        lambda: SendMsg("u\n", ()),
        lambda: Subscribe("yaml", ["ALL"]),
        lambda: Subscribe("plain", []),
        lambda: Filter("Event-Name", "x\ny"),
        lambda: Linger(-1),
        lambda: RawCommand("a\nb"),
        lambda: write_command_reply("+OK\nInjected: 1"),
        lambda: write_event_plain([(":BadName", "x")]),  # a name may hold a colon, not start with one
    ],
)
def test_local_misuse_raises(make):
    with pytest.raises(LocalProtocolError):
        make()


def test_send_after_close_exit_or_eof_raises():
    p = ClientProtocol()
    assert p.send(Auth("x")) == b"auth x\n\n"
    p.send(Exit())
    with pytest.raises(LocalProtocolError):
        p.send(Api("status"))
    p2 = ClientProtocol()
    p2.close()
    with pytest.raises(LocalProtocolError):
        p2.send(Api("status"))
    p3 = ClientProtocol()
    p3.receive_data(b"")
    assert p3.next_message() is CLOSED
    with pytest.raises(LocalProtocolError):
        p3.send(Api("status"))
    with pytest.raises(LocalProtocolError):
        ClientProtocol().send("api status")  # type: ignore[arg-type]
    s = ServerProtocol()
    s.close()
    with pytest.raises(LocalProtocolError):
        s.send(AuthRequest())


def test_server_parses_unknown_and_headers():
    s = ServerProtocol()
    s.receive_data(b"getvar foo\n\nsendevent CUSTOM\nEvent-Subclass: a::b\nContent-Length: 3\n\nxyzexit\n\n")
    cmds = list(s.commands())
    assert cmds[0] == RawCommand("getvar foo") and cmds[0].name == "getvar"
    assert cmds[1] == SendEvent.custom("a::b", (), b"xyz")
    assert cmds[2] == Exit()
    s.receive_data(b"")
    assert s.next_command() is CLOSED


# --------------------------------------------------------------------------- writers


def test_writers_layout():
    assert write_command_reply("+OK accepted") == b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
    assert write_bgapi_reply("J") == (
        b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: J\nJob-UUID: J\n\n"
    )
    assert write_api_response("+OK\n") == b"Content-Type: api/response\nContent-Length: 4\n\n+OK\n"
    assert write_api_response("") == b"Content-Type: api/response\nContent-Length: 14\n\n-ERR no reply\n"
    assert write_disconnect_notice() == (
        b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
        b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    )
    assert write_linger_notice("U", "loopback/x-b").startswith(
        b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: U\nContent-Disposition: linger\n"
    )
    assert write_rude_rejection("no\n") == b"Content-Type: text/rude-rejection\nContent-Length: 3\n\nno\n"


def test_event_plain_writer_encoding():
    wire = write_event_plain(
        [("Event-Name", "CUSTOM"), ("A", "x@y: z+1"), ("Empty", ""), ("Arr", ["a", "b"]), ("P", "%20 ok")],
        body="+OK x\n",
    )
    inner = (
        b"Event-Name: CUSTOM\nA: x%40y%3A%20z%2B1\nEmpty: _undef_\nArr: ARRAY%3A%3Aa%7C%3Ab\n"
        b"P: %20%20ok\nContent-Length: 6\n\n+OK x\n"
    )
    assert wire == b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner


def test_event_json_writer_matches_cjson():
    wire = write_event_json([("Event-Name", "X"), ("Q", 'a"b\\c/\x01é'), ("Arr", ["a", "b"])], body="ok\n")
    inner = '{"Event-Name":"X","Q":"a\\"b\\\\c/\\u0001é","Arr":["a","b"],"Content-Length":"3","_body":"ok\\n"}'
    assert wire.endswith(inner.encode())


def test_connect_reply_writer():
    wire = write_connect_reply([("Event-Name", "CHANNEL_DATA"), ("variable_cc_queue", "support@default")])
    assert wire == (
        b"Event-Name: CHANNEL_DATA\nvariable_cc_queue: support%40default\n"
        b"Content-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\nControl: full\n\n"
    )


# --------------------------------------------------------------------------- url codec


def test_url_encode_escape_set():
    unsafe = "\r\n \"#%&+:;<=>?@[\\]^`{|}"
    for ch in unsafe:
        if ch == "%":
            continue
        assert url_encode(ch) == "%%%02X" % ord(ch)
    for ch in "/-.(),'!$*~_azAZ09":
        assert url_encode(ch) == ch
    assert url_encode("\x01\x7f") == "%01%7F"
    assert url_encode("é") == "%C3%A9"
    assert url_encode("100%") == "100%25"
    assert url_encode("%(1000") == "%25(1000"
    assert url_encode("pre%20encoded") == "pre%20encoded"  # a valid %XX goes out unchanged
    assert url_encode("%2b") == "%252b"  # only upper-case hex counts as already encoded


def test_url_decode():
    assert url_decode(b"a%20b%2b+c") == "a b++c"  # %2b -> "+", a literal "+" stays
    assert url_decode(b"100%") == "100%"
    assert url_decode(b"%zz%4") == "%zz%4"
    with pytest.raises(RemoteProtocolError):
        url_decode(b"%FF")


# --------------------------------------------------------------------------- client reader


@pytest.mark.parametrize("decoder", DECODERS)
def test_client_frame_types(decoder):
    p = ClientProtocol(decoder=decoder)
    assert p.next_message() is NEED_DATA
    p.receive_data(
        b"Content-Type: auth/request\n\n"
        + write_command_reply("+OK accepted")
        + write_api_response("-ERR foo Command not found!\n")
        + write_event_plain([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", "J")], "+OK u\n")
        + write_event_json([("Event-Name", "CUSTOM"), ("Event-Subclass", "a::b")])
        + write_log_data("line\n", [("Log-Level", "7")])
        + write_disconnect_notice(controlled_session_uuid="U", disposition="disconnect")
        + write_rude_rejection()
        + b"Content-Type: text/event-xml\nContent-Length: 3\n\n<x>"
        + write_connect_reply([("Event-Name", "CHANNEL_DATA"), ("Unique-ID", "U")])
    )
    msgs = list(p.messages())
    kinds = [type(m) for m in msgs]
    assert kinds == [
        AuthRequest, CommandReply, ApiResponse, Event, Event, LogData, DisconnectNotice,
        RudeRejection, UnknownFrame, ChannelData,
    ]
    assert msgs[1].ok and not msgs[2].ok
    assert msgs[3].job_uuid == "J" and msgs[3].body == "+OK u\n"
    assert msgs[4].format == "json" and msgs[4].subclass == "a::b" and msgs[4].body is None
    assert msgs[5].body == "line\n" and msgs[5].headers["Log-Level"] == "7"
    assert msgs[6].disposition == "disconnect" and msgs[6].controlled_session_uuid == "U"
    assert msgs[8].content_type == "text/event-xml" and msgs[8].body == b"<x>"
    assert msgs[9].unique_id == "U" and msgs[9].reply_text == "+OK\n"
    assert p.next_message() is NEED_DATA
    p.receive_data(b"")
    assert p.next_message() is CLOSED


@pytest.mark.parametrize("decoder", DECODERS)
def test_undef_repeated_and_arrays(decoder):
    p = ClientProtocol(decoder=decoder)
    inner = b"Event-Name: X\nA: _undef_\nB: 1\nB: 2\nArr: ARRAY%3A%3Aa%7C%3Ab%20c\n\n"
    p.receive_data(b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner)
    ev = p.next_message()
    assert ev["A"] == "" and ev.get("B") == "1" and ev.get_all("B") == ["1", "2"]
    assert ev.get_array("Arr") == ["a", "b c"] and ev.get_array("B") == ["1"]
    assert ev.get_array("missing") is None and ev.get("missing", 0) == 0
    assert len(ev.headers.pairs()) == 5 and len(ev.headers) == 4
    assert list(ev.headers) == ["Event-Name", "A", "B", "Arr"]
    assert ev.headers == Headers(ev.headers.pairs())


def _feed_all(decoder: str, data: bytes, **kw) -> list:
    p = ClientProtocol(decoder=decoder, **kw)
    p.receive_data(data)
    p.receive_data(b"")
    out = []
    while (m := p.next_message()) is not CLOSED:
        out.append(m)
    return out


def _plain(inner: bytes) -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner


def _json(inner: bytes) -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(inner) + inner


BAD = {
    "negative length": b"Content-Type: api/response\nContent-Length: -5\n\n",
    "non-numeric length": b"Content-Type: api/response\nContent-Length: 12a\n\n",
    "huge length": b"Content-Type: api/response\nContent-Length: 99999999999\n\n",
    "truncated body": b"Content-Type: api/response\nContent-Length: 10\n\n+OK",
    "truncated header": b"Content-Type: command/reply\nReply-Te",
    "garbage line": b"Content-Type: command/reply\nthis is not a header\n\n",
    "empty name": b": value\n\n",
    "invalid utf8 outer": b"Content-Type: command/reply\nReply-Text: \xff\xfe\n\n",
    "invalid utf8 plain value": _plain(b"Event-Name: %FF\n\n"),
    "overlong utf8 plain value": _plain(b"Event-Name: %C0%AF\n\n"),
    "raw invalid utf8 plain": _plain(b"Event-Name: \xc3(\n\n"),
    "garbage plain line": _plain(b"Event-Name: X\nno colon here\n\n"),
    "inner length mismatch": _plain(b"Event-Name: X\nContent-Length: 9\n\nabc"),
    "inner length not a number": _plain(b"Event-Name: X\nContent-Length: x\n\nabc"),
    "plain without blank line": _plain(b"Event-Name: X"),
    "plain trailing bytes": _plain(b"Event-Name: X\n\nzzz"),
    "empty plain event": _plain(b""),
    "bad json": _json(b'{"a":'),
    "json not object": _json(b"[]"),
    "json number value": _json(b'{"a":1}'),
    "json nested object": _json(b'{"a":{"b":"c"}}'),
    "json invalid utf8": _json(b'{"a":"\xff"}'),
    "json bad escape": _json(b'{"a":"\\x"}'),
    "json control char": _json(b'{"a":"\x01"}'),
    "json trailing garbage": _json(b'{"a":"b"}x'),
    "invalid body utf8": b"Content-Type: api/response\nContent-Length: 2\n\n\xc3(",
}


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_input_raises_remote_error(decoder, case):
    p = ClientProtocol(decoder=decoder)
    p.receive_data(BAD[case])
    p.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        while p.next_message() is not CLOSED:
            pass
    with pytest.raises(RemoteProtocolError):  # the reader stays broken
        p.next_message()


@pytest.mark.parametrize("decoder", DECODERS)
def test_oversized_header_block_is_refused_without_buffering_forever(decoder):
    p = ClientProtocol(decoder=decoder, max_header_size=1024)
    with pytest.raises(RemoteProtocolError):
        for _ in range(100):
            p.receive_data(b"X-Junk: " + b"a" * 100 + b"\n")
            p.next_message()
    assert p.buffered < 2048


@pytest.mark.parametrize("decoder", DECODERS)
def test_body_limit(decoder):
    p = ClientProtocol(decoder=decoder, max_body_size=100)
    p.receive_data(b"Content-Type: api/response\nContent-Length: 101\n\n")
    with pytest.raises(RemoteProtocolError):
        p.next_message()


def test_server_reader_errors():
    for bad in (b"sendevent X\nContent-Length: x\n\n", b"api status\nno colon\n\n"):
        s = ServerProtocol()
        s.receive_data(bad)
        with pytest.raises(RemoteProtocolError):
            s.next_command()
    s = ServerProtocol()
    s.receive_data(b"api sta")
    assert s.next_command() is NEED_DATA
    s.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        s.next_command()


@pytest.mark.parametrize("decoder", ["python", "cython"])
def test_header_names_may_contain_a_colon(decoder):
    """FreeSWITCH writes ``variable_nolocal:lang: fr``: the separator is the first ": "."""
    from ccfast.esl import ClientProtocol, write_connect_reply, write_event_plain

    pairs = [("Event-Name", "CHANNEL_DATA"), ("Unique-ID", "u1"), ("variable_nolocal:lang", "fr"),
             ("variable_x", "a: b")]
    for frame in (write_event_plain(pairs), write_connect_reply(pairs)):
        proto = ClientProtocol(decoder=decoder)
        proto.receive_data(frame)
        message = proto.next_message()
        assert message.get("variable_nolocal:lang") == "fr"
        assert message.get("variable_x") == "a: b"
    proto = ClientProtocol(decoder=decoder)
    body = b"Event-Name: X\nName:value\n\n"
    proto.receive_data(b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body)
    assert proto.next_message().get("Name") == "value"  # no space after the colon
