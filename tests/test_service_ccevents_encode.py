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
