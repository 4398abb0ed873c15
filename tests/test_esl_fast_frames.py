"""The Cython reader decodes non-event frames itself; it must equal the pure-Python reference.

command/reply, api/response, the outbound connect reply (ChannelData, lazily indexed),
disconnect/linger notices, auth/request, log/data, rude rejection and unknown frames.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccfast.esl import _readers
from ccfast.esl import _writers as W
from ccfast.esl._events import ChannelData, CommandReply
from ccfast.esl.errors import RemoteProtocolError

_fast = pytest.importorskip("ccfast.esl._fast")

FRAMES = [
    W.write_auth_request(),
    W.write_command_reply("+OK accepted"),
    W.write_command_reply("-ERR invalid"),
    W.write_bgapi_reply("7f4de4bc-17d7-11dd-b7a0-db4edd065621"),
    W.write_api_response("+OK\n"),
    W.write_api_response("-ERR No such channel!\n"),
    W.write_api_response("caf\u00e9 \u2603\n"),
    W.write_api_response(""),
    W.write_disconnect_notice(controlled_session_uuid="abc", disposition="disconnect"),
    W.write_linger_notice("abc", "sofia/internal/1000@x", 5),
    W.write_rude_rejection(),
    W.write_log_data("a log line\n", {"Log-Level": "7"}),
    W.write_connect_reply({"Event-Name": "CHANNEL_DATA", "Unique-ID": "u-1", "Caller-Caller-ID-Name": "J\u00f6rg 100%",
                           "variable_cc_queue": "support@default", "variable_empty": "",
                           "variable_sip_h": "a;b=c:d <e@f>"}),
    b"Content-Type: text/event-xml\nContent-Length: 5\n\n<x/>\n",
    b"Content-Type: command/reply\nReply-Text: +OK\nX-Odd:no-space\nX-Empty:\n\n",
]


def decode_all(reader_cls, data: bytes):
    reader = reader_cls()
    reader.feed(data)
    out = []
    while (msg := reader.next_message()) is not None:
        out.append(msg)
    return out


def test_every_frame_kind_equals_the_reference():
    data = b"".join(FRAMES)
    fast, ref = decode_all(_fast.MessageReader, data), decode_all(_readers.MessageReader, data)
    assert len(fast) == len(FRAMES)
    assert [type(m) for m in fast] == [type(m) for m in ref]
    assert fast == ref
    for f, r in zip(fast, ref):
        assert f.headers.pairs() == r.headers.pairs() if hasattr(r, "headers") else True


def test_connect_reply_is_a_lazy_index():
    (cd,) = decode_all(_fast.MessageReader, FRAMES[12])
    assert isinstance(cd, ChannelData)
    assert type(cd.headers).__name__ == "LazyHeaders"
    assert cd.get("Caller-Caller-ID-Name") == "J\u00f6rg 100%"
    assert cd.get("variable_empty") == ""
    assert cd.reply_text == "+OK\n"
    assert cd.name == "CHANNEL_DATA"


def test_command_reply_fields():
    (r,) = decode_all(_fast.MessageReader, FRAMES[3])
    assert isinstance(r, CommandReply) and r.ok
    assert r.job_uuid == "7f4de4bc-17d7-11dd-b7a0-db4edd065621"


@pytest.mark.parametrize("frame", [
    b"Content-Type: api/response\nContent-Length: 2\n\n\xff\xfe",
    b"Content-Type: command/reply\nEvent-Name: CHANNEL_DATA\nX: %FF%FE\n\n",
])
def test_invalid_utf8_raises_in_both(frame):
    for cls in (_fast.MessageReader, _readers.MessageReader):
        with pytest.raises(RemoteProtocolError):
            decode_all(cls, frame)


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True), _text, max_size=12),
       _text, st.sampled_from(["reply", "api", "connect"]))
def test_random_frames_equal_the_reference(headers, text, kind):
    headers.pop("Content-Length", None)
    headers.pop("Content-Type", None)
    if kind == "reply":
        frame = W.write_command_reply("+OK " + text, headers)
    elif kind == "api":
        frame = W.write_api_response(text)
    else:
        frame = W.write_connect_reply(dict(headers, **{"Event-Name": "CHANNEL_DATA"}))
    assert decode_all(_fast.MessageReader, frame) == decode_all(_readers.MessageReader, frame)
