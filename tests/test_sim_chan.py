"""The typed channel (``ccfast.sim._chan``) and its C event path give the same bytes as the
reference Python channel (``PyChannel``, ``PySwitch.fire_chan``).

Whole calls — a caller whose member channel answers and plays, an agent leg originated and
bridged, hangups, a caller hung up before its bridge — run through ``Switch`` and ``PySwitch``
under the same mock clock; every byte each kind of listener gets (plain, JSON, filtered like
ccfast's box link, a member socket with ``Event-Name`` filters) must be the same once uuids and
wall-clock times are normalised."""

from __future__ import annotations

import re

import pytest
import trio
import trio.testing

from ccfast.sim import AgentProfile, CallerSpec, ProfileTable
from ccfast.sim.channel import Channel, PyChannel
from ccfast.sim.server import EslConnection
from ccfast.sim.switch import ExecMsg, PySwitch, Switch, Timings

pytestmark = pytest.mark.skipif(Channel is PyChannel, reason="ccfast.sim._chan is not built")


class Rec:
    """A listener with EslConnection's checks (``wants``, ``wants_own``, ``passes_chan``: the C
    event path has copies of them for these), recording what it gets."""

    closed = False
    wants = EslConnection.wants
    wants_own = EslConnection.wants_own
    passes_chan = EslConnection.passes_chan
    _passes = EslConnection._passes

    def __init__(self, fmt: str, names, filters, own: bool = False) -> None:
        self.fmt, self.filters = fmt, filters
        self.all_events = names is None
        self.names = names or set()
        self.subclasses, self.all_custom = set(), False
        self.my_uuid = "own" if own else None
        self._fsplit = None
        self.sim = type("S", (), {"stats": {"events_filtered": 0}})()
        self.got: list[bytes] = []

    def push(self, data, event=False):
        self.got.append(data)

    def on_channel_gone(self, ch):
        pass


class OwnChecks(Rec):
    """The same listener with its checks overridden (the C path calls them)."""

    def wants(self, name, subclass, ch):
        return EslConnection.wants(self, name, subclass, ch)

    def wants_own(self, name, subclass):
        return EslConnection.wants_own(self, name, subclass)

    def passes_chan(self, name, ch, pre, post, with_vars):
        return EslConnection.passes_chan(self, name, ch, pre, post, with_vars)


_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME_HEADERS = re.compile(rb"((?:Event-Date-(?:Local|GMT)|Content-Length|variable_(?:m?duration|billm?sec|"
                           rb"end_u?epoch))\"?(?::|\":) ?\"?)[^\n\"]*")


def normalise(frames: list[bytes]) -> list[bytes]:
    seen: dict[bytes, bytes] = {}

    def uid(m):
        return seen.setdefault(m.group(0), b"U%d" % len(seen))

    out = []
    for f in frames:
        f = _UUID.sub(uid, f)
        f = re.sub(rb"\d{9,}", b"T", f)
        out.append(_TIME_HEADERS.sub(rb"\1X", f))
    return out


async def _calls(sw: Switch, kind) -> dict[str, list[bytes]]:
    box = kind("plain", {"BACKGROUND_JOB", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
                        "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_BRIDGE"},
              [("variable_cc_side", "agent", None), ("Event-Name", "BACKGROUND_JOB", None)])
    plain, js = kind("plain", None, []), kind("json", None, [])
    sw.listeners += [box, plain, js]
    members = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sw.sched.run)
        for i in range(3):
            rec = sw.spawn_caller(CallerSpec(queue="q@default"))
            m = sw.channels[rec.member_uuid]
            mem = kind("plain", set(), [("Event-Name", n, None) for n in ("CHANNEL_HANGUP", "CHANNEL_BRIDGE",
                                                                        "CHANNEL_EXECUTE_COMPLETE")], own=True)
            members.append(mem)
            m.listeners.append(mem)
            m.in_socket = True
            m.set_vars([("cc_queue", "q@default"), ("cc_member_uuid", rec.member_uuid), ("cc_side", "member"),
                        ("note", "a b%c&d")])
            sw.run_app_now(m, ExecMsg("answer"))
            sw.run_app_now(m, ExecMsg("playback", "local_stream://moh"))
            m.set_var("note", None)
            if i == 2:      # hung up before any agent
                await trio.sleep(0.01)
                sw.hangup(m.loopback_peer, "NORMAL_CLEARING")
                await rec.done.wait()
                continue
            agent = "%08x-0000-4000-8000-%012x" % (i, i)
            results = []
            sw.originate("{origination_uuid=%s,cc_side=agent,cc_member_session_uuid=%s,cc_agent=a1,"
                         "ignore_early_media=true,originate_timeout=10}sim/agent/a1 &park()"
                         % (agent, rec.member_uuid), "job-%d" % i, results.append)
            while not results:
                await trio.sleep(0.001)
            sw.uuid_bridge(sw.get(rec.member_uuid), sw.get(agent))
            await rec.done.wait()
            await sw.legs[agent].done.wait()
        while sw.channels:
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    out = {"box": box.got, "plain": plain.got, "json": js.got}
    for k, mem in enumerate(members):
        out[f"member{k}"] = mem.got
    return out


def _run(cls, kind=Rec) -> dict[str, list[bytes]]:
    sw = cls(timings=Timings.fast(), seed=1, profiles=ProfileTable(default=AgentProfile("t", talk_time=0.05)))
    got = trio.run(_calls, sw, kind, clock=trio.testing.MockClock(autojump_threshold=0))
    return got


@pytest.mark.parametrize("kind", [Rec, OwnChecks])
def test_typed_channel_sends_the_reference_bytes(kind):
    fast, ref = _run(Switch, kind), _run(PySwitch, kind)
    assert Switch.channel_type is Channel and PySwitch.channel_type is PyChannel
    assert fast.keys() == ref.keys()
    for k in ref:
        assert len(ref[k]) > 0, k
        assert normalise(fast[k]) == normalise(ref[k]), k
    assert sum(map(len, ref["plain"])) > 50_000     # whole snapshots, not just a few lines


def test_typed_channel_blocks_match_the_reference():
    """Lookups and blocks (JSON, eval, filters on other headers) agree between the two types."""
    kw = dict(direction="inbound", destination="1000", context="default", cid_name="Agent & Co",
              cid_number="", source="mod_sofia", session_id=3, hit_dialplan=True)
    pair = []
    for cls in (Channel, PyChannel):
        c = cls("66666666-7777-4888-9999-000000000000", "sofia/agent b", **kw)
        o = cls("11111111-2222-4333-8444-555555555555", "loopback/x-a", **kw)
        c.created_us = o.created_us = 1_700_000_000_000_000
        c.set_vars([("cc_side", "agent"), ("x", "1 2")])
        c.set_var("x", None)
        c.set_state("CS_EXECUTE", 4)
        c.answered_us, c.answer_state = 1_700_000_000_000_100, "answered"
        c.other, c.other_type, c.transfer_source = o, "originator", "1700000000:abc:uuid_br:x"
        c.touch_profile()
        pair.append(c)
    fast, ref = pair
    assert fast.state_plain() == ref.state_plain()
    assert fast.vars_plain() == ref.vars_plain()
    for prefix, other in (("Caller-", False), ("Other-Leg-", True), ("Channel-", False)):
        assert fast._profile_plain(prefix, other) == ref._profile_plain(prefix, other)
    assert fast.other_block().plain() == ref.other_block().plain() == fast.other_plain()
    assert [b.items for b in fast.snapshot_blocks()] == [b.items for b in ref.snapshot_blocks()]
    for n in ("Channel-State", "Hangup-Cause", "Caller-Unique-ID", "Other-Type", "variable_cc_side"):
        assert fast.header_value(n) == ref.header_value(n)
    assert fast.alive and fast.answered and fast.current_app() is None
