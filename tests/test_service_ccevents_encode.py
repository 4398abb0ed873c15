"""encode_sendevent: the same bytes as ``SendEvent.custom``, built once; unsendable headers left out."""

from __future__ import annotations

from ccfast import strings as S
from ccfast.esl import SendEvent
from ccfast.service.ccevents import encode_sendevent, render
from ccfast.service.chanvars import ChannelVars


def test_same_bytes_as_sendevent_custom():
    rendered = render(S.ACTION_MEMBER_QUEUE_START, {"CC-Queue": "q@d", "CC-Action": S.ACTION_MEMBER_QUEUE_START,
                                                    "CC-Member-UUID": "m1", "Empty": ""},
                      {"Channel-Name": "sofia/x", "variable_caf\u00e9": "\u2603 yes", "Unique-ID": "u"})
    assert ("Unique-ID", "u") not in rendered and ("Channel-Name", "sofia/x") in rendered
    assert encode_sendevent(rendered).encode() == SendEvent.custom(S.EVENT_SUBCLASS, rendered).encode()


def test_a_value_with_a_line_break_is_left_out():
    rendered = [("CC-Queue", "q@d"), ("variable_multi", "a\nb"), ("Bad Name", "x"), ("CC-Action", "x")]
    data = encode_sendevent(rendered).encode()
    assert data == SendEvent.custom(S.EVENT_SUBCLASS, [("CC-Queue", "q@d"), ("CC-Action", "x")]).encode()


def test_snapshot_is_remembered_until_the_variables_change():
    from ccfast.service.ccevents import snapshot

    data = ChannelVars({"Channel-Name": "sofia/x", "variable_a": "1"})
    first = snapshot(data)
    assert snapshot(data) is first
    data.update_from({"variable_a": "2"})
    assert ("variable_a", "2") in snapshot(data) and snapshot(data) is not first


# -- encode_event: the direct path equals encode_sendevent(render(...)) -----------------------

import pytest

from ccfast.esl import _readers
from ccfast.esl import _writers as W
from ccfast.service.ccevents import encode_event

_fast = pytest.importorskip("ccfast.esl._fast")

CHANNEL = {
    "Event-Name": "CHANNEL_DATA", "Unique-ID": "u1", "Core-UUID": "core", "Channel-Name": "sofia/x/1000",
    "Caller-Caller-ID-Name": "Jos\u00e9 100%", "Caller-RDNIS": "5551234", "variable_empty": "",
    "variable_cr": "a\rb", "variable_pct": "50% off", "variable_dup": "first", "Content-Length-X": "ok",
    "variable_keep": "k", "Event-Sequence": "7", "variable_undef": "_undef_",
    "variable_cc_queue": "q@d",
}
CC = {"CC-Queue": "q@d", "CC-Action": "", "CC-Member-UUID": "m1", "CC-Member-Session-UUID": "u1",
      "CC-Count": 3, "CC-Bad": "x\ny", "Empty": "", "None": None}


def connect_data(reader_cls):
    frame = W.write_connect_reply(CHANNEL)
    frame = frame.replace(b"variable_keep:", b"variable_dup: second\nvariable_keep:", 1)  # a repeated name
    r = reader_cls()
    r.feed(frame)
    return ChannelVars(r.next_message().headers)


@pytest.mark.parametrize("reader_cls", [_fast.MessageReader, _readers.MessageReader])
@pytest.mark.parametrize("action", [S.ACTION_MEMBER_QUEUE_START, S.ACTION_MEMBER_QUEUE_END,
                                    S.ACTION_AGENT_OFFERING, S.ACTION_BRIDGE_AGENT_START, S.ACTION_MEMBERS_COUNT])
def test_encode_event_equals_the_rendered_path(reader_cls, action):
    data = connect_data(reader_cls)
    overlays = [
        {},
        {"variable_keep": "changed", "variable_new": "n%1", "variable_pct": "", "Unique-ID": "u2",
         "variable_nl": "a\nb", "variable_dup": "third"},
        {"variable_empty": "now set", "Content-Length": "5"},
    ]
    for overlay in overlays:
        data.overlay.clear()
        data.overlay.update(overlay)
        data._memo = None
        for channel in (data, None):
            expected = encode_sendevent(render(action, CC, channel, None)).encode()
            assert encode_event(action, CC, channel).encode() == expected, (overlay, channel is None)


def test_encode_presence_equals_sendevent_presence_in():
    from ccfast.service.ccevents import encode_presence, presence_headers

    for queue, waiting in (("support@default", 0), ("q", 12)):
        assert encode_presence(queue, waiting).encode() == SendEvent("PRESENCE_IN", presence_headers(queue, waiting)).encode()
    with pytest.raises(ValueError):
        encode_presence("bad\nqueue", 1)


def test_snapshot_lines_of_a_real_connect_reply_equal_the_rendered_path():
    """Cython lines over FreeSWITCH's own CHANNEL_DATA (~150 headers, %-encoded values) with random
    overlays (changed, emptied, new, skipped, unsendable values) == the reference rendering."""
    import random
    from pathlib import Path

    from ccfast.esl import ClientProtocol
    from ccfast.service.ccevents import _NOT_FORWARDED

    fixtures = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "freeswitch-esl"
    if not fixtures.is_dir():
        fixtures = Path("/work/shared/fixtures/freeswitch-esl")
    proto = ClientProtocol(decoder="cython")
    proto.receive_data((fixtures / "external-dispatch-outbound.txt").read_bytes())
    headers = proto.next_message().headers
    assert len(headers) > 100 and hasattr(headers, "sendevent_lines")
    names = list(dict(headers.items()))
    rng = random.Random(7)
    values = ["", "x", "50% off", "caf\u00e9", "a\nb", "a\rb", "with space", "_undef_"]
    for _ in range(200):
        data = ChannelVars(headers)
        for name in rng.sample(names, rng.randint(0, 6)) + [f"variable_new{rng.randint(0, 3)}"]:
            data.overlay[name] = rng.choice(values)
        expected = encode_sendevent(render(S.ACTION_MEMBER_QUEUE_END, {"CC-Queue": "q"}, data, None)).encode()
        got = encode_event(S.ACTION_MEMBER_QUEUE_END, {"CC-Queue": "q"}, data).encode()
        assert got == expected
        assert headers.sendevent_lines(_NOT_FORWARDED, data.overlay) == headers._sendevent_lines_py(
            _NOT_FORWARDED, data.overlay)


@pytest.mark.parametrize("reader_cls", [_fast.MessageReader, _readers.MessageReader])
def test_encode_event_fast_path_equals_the_rendered_path(reader_cls):
    """Known header names take the one-comprehension path; a line break or CR anywhere falls back."""
    data = connect_data(reader_cls)
    cases = [
        {"CC-Queue": "q@d", "CC-Action": S.ACTION_AGENT_OFFERING, "CC-Count": 3, "CC-Empty": "", "CC-None": None},
        {"CC-Queue": "q@d", "CC-Action": S.ACTION_AGENT_OFFERING, "CC-Count": "a\rb"},
        {"CC-Queue": "q@d", "CC-Action": S.ACTION_AGENT_OFFERING, "CC-Count": "a\nb"},
        {"CC-Queue": "q\u00e9@d", "CC-Action": S.ACTION_BRIDGE_AGENT_START, "CC-Member-DNIS": "x"},
    ]
    for headers in cases * 2:  # the second round: every name already known
        for action in (S.ACTION_AGENT_OFFERING, S.ACTION_BRIDGE_AGENT_START, S.ACTION_MEMBER_QUEUE_START):
            expected = encode_sendevent(render(action, headers, data, None)).encode()
            assert encode_event(action, headers, data).encode() == expected, (action, headers)
