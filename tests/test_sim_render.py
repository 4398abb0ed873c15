"""The simulator's rendering shortcuts give the same bytes and header values as its blocks.

``Channel.state_plain``/``vars_plain``, ``ChanEvent.plain_frame`` and ``chan_header`` (filters
decided before an event is built) must agree with the generic ``Block``/``SimEvent`` path that
the JSON format and ``eval`` still use."""

from __future__ import annotations

from ccfast.sim.events import NEED_ENVELOPE, Block, ChanEvent, Host, SimEvent, chan_header
from ccfast.sim.switch import C_HANGUP, C_STATE, Switch, Timings


def _pair(sw: Switch):
    a = sw.new_channel("11111111-2222-4333-8444-555555555555", "loopback/ext-a", direction="outbound",
                       destination="ext", context="cc", cid_name="Alice Smith", cid_number="5551000",
                       source="mod_loopback", hit_dialplan=False)
    b = sw.new_channel("66666666-7777-4888-9999-000000000000", "sofia/agent b", direction="inbound",
                       destination="1000", context="default", cid_name="Agent & Co", cid_number="",
                       source="mod_sofia", hit_dialplan=True)
    a.set_vars([("direction", "outbound"), ("note", "a b%c"), ("empty_later", "x"), ("cc_side", "member")])
    b.set_vars([("cc_side", "agent"), ("uuid", b.uuid)])
    return a, b


def _states(a, b):
    """A walk through the states an event can show (answered, bridged, hung up...)."""
    yield
    a.set_state("CS_EXECUTE", 4)
    a.call_state = "RINGING"
    yield
    a.answered_us, a.answer_state, a.call_state = 1_700_000_000_000_001, "answered", "ACTIVE"
    a.touch_profile()
    a.set_var("empty_later", None)
    yield
    a.other, a.other_type, b.other, b.other_type = b, "originatee", a, "originator"
    a.transfer_source = "1700000000:abc:uuid_br:" + b.uuid
    a.touch_profile()
    b.touch_profile()
    a._other_block = b._other_block = None
    yield
    a.hangup_cause, a.answer_state, a.state_number = "NORMAL_CLEARING", "hangup", 10
    a.hangup_us = 1_700_000_000_500_000
    a.touch_profile()
    yield


def _generic_frame(ev: ChanEvent) -> bytes:
    return SimEvent.plain_frame(SimEvent(ev.name, ev.blocks, body=None))


def test_state_and_vars_plain_match_their_blocks():
    sw = Switch(timings=Timings.fast(), seed=1)
    a, b = _pair(sw)
    for _ in _states(a, b):
        for ch in (a, b):
            assert ch.state_plain() == ch.state_block().plain()
            assert ch.vars_plain() == ch.vars_block().plain()
            for name, value in ch.state_block().items:
                assert ch.state_value(name) == value
            assert ch.state_value("Hangup-Cause") == (ch.hangup_cause or None)
            assert ch.state_value("variable_cc_side") is None
            for prefix, other in (("Caller-", False), ("Other-Leg-", True), ("Channel-", False)):
                assert ch._profile_plain(prefix, other) == Block(ch._profile_items(prefix, other)).plain()


def test_chan_event_frame_and_lookups_match_the_generic_path():
    sw = Switch(timings=Timings.fast(), seed=1)
    host: Host = sw.host
    a, b = _pair(sw)
    names = ["Event-Name", "Unique-ID", "Channel-State", "Hangup-Cause", "Answer-State", "variable_cc_side",
             "variable_note", "variable_empty_later", "Caller-Context", "Caller-Caller-ID-Name",
             "Other-Leg-Unique-ID", "Other-Type", "Application", "Bridge-A-Unique-ID", "Channel-Read-Codec-Name",
             "Nope", "Event-Sequence", "Core-UUID"]
    for _ in _states(a, b):
        for pre, post, with_vars in ((None, None, True), ([("Hangup-Cause", "X"), ("Unique-ID", "pre")], None, True),
                                     (None, [("Application", "park"), ("variable_cc_side", "post")], False)):
            ev = ChanEvent("CHANNEL_STATE", a, host.envelope_block("CHANNEL_STATE", C_STATE), pre, post, with_vars)
            lazy = {n: chan_header(n, ev.name, a, pre, post, with_vars) for n in names}
            got = {n: ev.get(n) for n in names}
            frame = ev.plain_frame()
            assert frame == _generic_frame(ev)
            built = {n: ev.get(n) for n in names}    # blocks assembled now
            assert got == built
            for n in names:
                if lazy[n] is NEED_ENVELOPE:
                    assert n in ("Event-Sequence", "Core-UUID")
                else:
                    assert lazy[n] == built[n], n


def test_fire_chan_filters_before_building():
    """A listener whose filters drop an event does not make the switch date and render it; the
    event still takes its sequence number."""
    sw = Switch(timings=Timings.fast(), seed=1)
    a, b = _pair(sw)

    class L:
        fmt = "plain"
        closed = False
        filters = [("variable_cc_side", "agent", None), ("Event-Name", "BACKGROUND_JOB", None)]
        _fsplit = None

        def __init__(self):
            self.got = []
            self.sim = type("S", (), {"stats": {"events_filtered": 0}})()

        def wants(self, name, sub, ch):
            return True

        def wants_own(self, name, sub):
            return False

        def push(self, data, event=False):
            self.got.append(data)

        from ccfast.sim.server import EslConnection
        passes_chan = EslConnection.passes_chan
        _passes = EslConnection._passes

    l = L()
    sw.listeners.append(l)
    seq0 = sw.host.seq
    sw.fire_chan("CHANNEL_HANGUP", a, C_HANGUP)       # member side: filtered out
    sw.fire_chan("CHANNEL_HANGUP", b, C_HANGUP)       # agent side: taken
    assert sw.host.seq == seq0 + 2
    assert l.sim.stats["events_filtered"] == 1
    assert len(l.got) == 1 and b"Unique-ID: " + b.uuid.encode() in l.got[0]
    assert b"Event-Sequence: %d\n" % (seq0 + 2) in l.got[0]


async def test_a_finished_call_leaves_no_reference_cycle(nursery):
    """Member, caller and agent channels are freed by reference counting once the call is over
    (the bench runs with the cyclic collector off), rendered events and all."""
    import gc
    import weakref

    import trio

    from ccfast.sim import AgentProfile, CallerSpec, ProfileTable

    sw = Switch(timings=Timings.fast(), seed=1,
                profiles=ProfileTable(default=AgentProfile("bench", talk_time=0.01)))
    got = []

    class Listener:          # takes every event, plain: every block gets built and rendered
        fmt = "plain"
        closed = False
        filters = []
        _fsplit = None

        def wants(self, name, sub, ch):
            return True

        def wants_own(self, name, sub):
            return False

        def push(self, data, event=False):
            got.append(data)

    sw.listeners.append(Listener())
    nursery.start_soon(sw.sched.run)
    was = gc.isenabled()
    gc.disable()
    try:
        rec = sw.spawn_caller(CallerSpec(queue="q@default"))
        refs = [weakref.ref(sw.channels[rec.member_uuid]), weakref.ref(sw.channels[rec.caller_uuid])]
        agent = "7f1c2d3e-4b5a-4c6d-8e7f-8091a2b3c4d5"
        results = []
        sw.originate("{origination_uuid=%s,cc_side=agent}sim/agent/a1 &park()" % agent, "job-1", results.append)
        refs.append(weakref.ref(sw.channels[agent]))
        with trio.fail_after(2):
            while not results:
                await trio.sleep(0.002)
            sw.uuid_bridge(sw.get(rec.member_uuid), sw.get(agent))
            await rec.done.wait()
            await sw.legs[agent].done.wait()
            while sw.channels:
                await trio.sleep(0.002)
        await trio.sleep(0.02)      # steps already due (propagation) run and let go
        assert results == ["+OK %s\n" % agent] and rec.bridged_at is not None
        assert any(b"Event-Name: CHANNEL_BRIDGE" in x for x in got)
        assert [r() for r in refs] == [None, None, None]
    finally:
        if was:
            gc.enable()


async def test_costbench_drives_whole_calls():
    """``python -m ccfast.sim.costbench`` (the simulator's own CPU per call, for A/B work) runs
    complete calls: every channel ends, and the listeners shaped like ccfast's get events."""
    from ccfast.sim import costbench

    per_call, rendered = await costbench.calls(40)
    assert per_call > 0 and rendered > 10_000     # connect-less: ~8 events of 4-7 KB per call
    costs = await costbench.commands(50)
    assert set(costs) == {"sendevent", "api"} and all(v > 0 for v in costs.values())
