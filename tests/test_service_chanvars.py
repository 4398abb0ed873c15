"""ChannelVars: the member's connect data (lazy) plus the variables its events changed."""

from __future__ import annotations

import pytest

from ccfast.esl import _readers
from ccfast.esl import _writers as W
from ccfast.service.chanvars import ChannelVars

_fast = pytest.importorskip("ccfast.esl._fast")

CONNECT = {"Event-Name": "CHANNEL_DATA", "Unique-ID": "u1", "Caller-Caller-ID-Number": "1000",
           "variable_cc_queue": "support@default", "variable_cc_exit_keys": "#", "variable_a": "x y",
           "variable_b": "1"}


def decode(reader_cls, frame: bytes):
    r = reader_cls()
    r.feed(frame)
    return r.next_message()


def event(reader_cls, headers: dict):
    return decode(reader_cls, W.write_event_plain(dict({"Event-Name": "CHANNEL_EXECUTE_COMPLETE"}, **headers)))


@pytest.fixture(params=["cython", "python"])
def reader(request):
    return _fast.MessageReader if request.param == "cython" else _readers.MessageReader


def test_events_update_only_what_changed(reader):
    data = ChannelVars(decode(reader, W.write_connect_reply(CONNECT)).headers)
    assert data.get("variable_cc_queue") == "support@default"
    assert data["Caller-Caller-ID-Number"] == "1000"
    data.update_from(event(reader, {"Unique-ID": "u1", "variable_cc_queue": "support@default",
                                    "variable_cc_exit_keys": "12", "variable_new": "n%1",
                                    "Caller-Caller-ID-Number": "2000"}).headers)
    assert data.overlay == {"variable_cc_exit_keys": "12", "variable_new": "n%1"}
    assert data.get("variable_cc_exit_keys") == "12"
    assert data["variable_new"] == "n%1"
    assert data.get("variable_a") == "x y"  # absent from the event: kept
    assert data["Caller-Caller-ID-Number"] == "1000"  # only variables follow the events
    assert dict(data.items())["variable_cc_exit_keys"] == "12"
    assert "variable_new" in data and "variable_zzz" not in data
    # back to the connect-time value: leaves the overlay, value still right
    data.update_from(event(reader, {"variable_cc_exit_keys": "#"}).headers)
    assert data.overlay == {"variable_new": "n%1"}
    assert data["variable_cc_exit_keys"] == "#"
    with pytest.raises(KeyError):
        data["nope"]


def test_changed_since_compares_raw_values():
    base = decode(_fast.MessageReader, W.write_connect_reply(CONNECT)).headers
    ev = event(_fast.MessageReader, {"variable_b": "1", "variable_a": "x  y", "variable_c": "", "Other": "z"}).headers
    assert ev.changed_since(base, "variable_") == [("variable_a", "x  y"), ("variable_c", "")]
    assert ev.changed_since(dict(base.items()), "variable_") == [("variable_a", "x  y"), ("variable_c", "")]


def _event_with_pairs(reader_cls, pairs: list[tuple[str, str]]):
    """A plain event whose body may repeat a header name (a dict cannot)."""
    body = "".join(f"{name}: {value}\n" for name, value in pairs).encode() + b"\n"
    frame = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body
    return decode(reader_cls, frame)


def test_a_repeated_variable_counts_with_its_first_value(reader):
    data = ChannelVars(decode(reader, W.write_connect_reply(CONNECT)).headers)
    head = [("Event-Name", "CHANNEL_EXECUTE_COMPLETE"), ("Unique-ID", "u1")]
    # first value unchanged, the repeat differs: nothing changed
    data.update_from(_event_with_pairs(reader, head + [("variable_b", "1"), ("variable_b", "2")]).headers)
    assert data.overlay == {}
    # first value differs: it wins over the repeat; a new name repeated keeps its first value
    data.update_from(_event_with_pairs(reader, head + [("variable_b", "3"), ("variable_new", "n1"),
                                                       ("variable_b", "1"), ("variable_new", "n2")]).headers)
    assert data.overlay == {"variable_b": "3", "variable_new": "n1"}
    assert data["variable_b"] == "3"
