"""The outbound server/session against simulated `socket` callers over real TCP."""

from __future__ import annotations

import trio

from ccfast.esl import DisconnectNotice
from ccfast.esl.inbound import InboundClient
from ccfast.esl.outbound import OutboundSession, serve_outbound
from ccfast.sim import AgentProfile, CallerSpec, Timings, open_simulator

T = Timings.fast()


async def _names(s: OutboundSession, until: str, timeout: float = 2.0) -> list[str]:
    out = []
    with trio.fail_after(timeout):
        async for ev in s.events:
            name = "notice:" + (ev.disposition or "") if isinstance(ev, DisconnectNotice) else ev.name
            out.append(name)
            if name == until:
                return out
    return out


async def _run(handler, spec: CallerSpec, *, timeout: float = 3.0, **simkw):
    """One caller against ``handler``; returns (CallRecord, sim)."""
    async with open_simulator(timings=T, **simkw) as sim, trio.open_nursery() as n:
        port = await n.start(serve_outbound, handler, "127.0.0.1", 0)
        sim.dial_to = ("127.0.0.1", port)
        rec = sim.spawn_caller(spec)
        with trio.fail_after(timeout):
            await rec.done.wait()
        await trio.sleep(0.01)
        n.cancel_scope.cancel()
    return rec, sim


async def test_connect_data_events_and_dialplan_continuation_after_resume():
    seen = {}

    async def handler(s: OutboundSession):
        cd = await s.connect()
        seen["queue"] = s.variable("cc_queue")
        seen["score"] = s.variable("cc_base_score")
        seen["cid"] = cd["Caller-Caller-ID-Number"]
        seen["state"] = (cd["Channel-State"], cd["Answer-State"])
        assert await s.myevents() == "+OK Events Enabled"
        assert await s.linger() == "+OK will linger"
        assert await s.resume() == "+OK"
        await s.execute("answer", event_lock=True)
        await s.execute("playback", "local_stream://moh", event_lock=True)
        seen["events"] = await _names(s, "CHANNEL_EXECUTE")
        seen["events"] += await _names(s, "CHANNEL_EXECUTE")
        # closing with `resume` interrupts MOH and the dialplan goes on after `socket`

    spec = CallerSpec(queue="sales@default", cid_number="5552000",
                      variables={"cc_base_score": "10", "cc_export_vars": "a,b"},
                      after_socket=[("set", "reached_after_socket=true"),
                                    ("hangup", "NORMAL_UNSPECIFIED")])
    rec, sim = await _run(handler, spec)
    assert seen["queue"] == "sales@default" and seen["score"] == "10" and seen["cid"] == "5552000"
    assert seen["state"] == ("CS_EXECUTE", "ringing")
    assert seen["events"] == ["CHANNEL_PARK", "CHANNEL_EXECUTE", "CHANNEL_ANSWER",
                              "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_EXECUTE"]
    assert rec.resumed and rec.continued_in_dialplan
    assert rec.hangup_cause == "NORMAL_UNSPECIFIED" and rec.answered_at is not None


async def test_close_without_resume_waits_for_the_running_app():
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        ready = trio.Event()

        async def handler(s: OutboundSession):
            await s.connect()
            await s.execute("answer", event_lock=True)
            await s.execute("playback", "local_stream://moh", event_lock=True)
            await trio.sleep(0.03)
            ready.set()     # handler returns: the server closes the socket, no resume

        port = await n.start(serve_outbound, handler, "127.0.0.1", 0)
        sim.dial_to = ("127.0.0.1", port)
        rec = sim.spawn_caller(CallerSpec())
        await ready.wait()
        await trio.sleep(0.05)
        assert rec.ended_at is None and not rec.continued_in_dialplan   # still in MOH
        c = InboundClient("127.0.0.1", sim.port, "ClueCon", liveness_interval=None)
        await n.start(c.run)
        assert await c.api("uuid_break", rec.member_uuid) == "+OK\n"
        with trio.fail_after(2):
            await rec.done.wait()
        assert rec.continued_in_dialplan and rec.hangup_cause == "NORMAL_CLEARING"
        n.cancel_scope.cancel()


async def test_bridge_agent_hangs_up_first_linger_notice_then_exit():
    notices = []

    async def handler(s: OutboundSession):
        await s.connect()
        await s.myevents()
        await s.linger()
        await s.execute("answer", event_lock=True)
        await s.execute("playback", "local_stream://moh", event_lock=True)
        # `api` blocks the socket until the originate finishes (bgapi results would need a
        # BACKGROUND_JOB subscription, which `myevents` does not give)
        out = await s.api("originate", "{origination_uuid=ag-1}sim/agent/quick &park()")
        assert out == "+OK ag-1\n"
        assert await s.api("uuid_bridge", f"{s.uuid} ag-1") == "+OK ag-1\n"
        names = await _names(s, "notice:linger")
        notices.append(names)
        await s.exit()
        notices.append(s.disconnect_notice.disposition)

    prof = {"quick": AgentProfile("quick", talk_time=0.03)}
    rec, sim = await _run(handler, CallerSpec(), profiles=prof)
    names = notices[0]
    assert "CHANNEL_BRIDGE" in names and names.index("CHANNEL_BRIDGE") < names.index("CHANNEL_UNBRIDGE")
    tail = names[names.index("CHANNEL_UNBRIDGE"):]
    assert tail == ["CHANNEL_UNBRIDGE", "CHANNEL_STATE", "CHANNEL_HANGUP", "CHANNEL_STATE",
                    "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE", "notice:linger"]
    assert names[-1] == "notice:linger" and "CHANNEL_HANGUP_COMPLETE" in names
    assert notices[1] == "disconnect"
    assert rec.agent_uuid == "ag-1" and rec.bridged_at is not None and rec.continued_in_dialplan
    assert sim.switch.legs["ag-1"].cause == "NORMAL_CLEARING"


async def test_caller_abandons_after_patience_without_linger_gets_disconnect():
    got = []

    async def handler(s: OutboundSession):
        await s.connect()
        await s.myevents()
        await s.execute("answer")
        with trio.fail_after(2):
            await s.closed.wait()
        got.append(s.disconnect_notice)

    rec, _ = await _run(handler, CallerSpec(patience=0.05))
    await trio.sleep(0)
    assert rec.abandoned and rec.outcome == "abandoned"
    assert got and got[0] is not None and got[0].disposition == "disconnect"


async def test_dtmf_reaches_the_session():
    digits = []

    async def handler(s: OutboundSession):
        await s.connect()
        await s.myevents()
        with trio.fail_after(2):
            async for ev in s.events:
                if getattr(ev, "name", "") == "DTMF":
                    digits.append(ev["DTMF-Digit"])
                    if len(digits) == 2:
                        break
        await s.api("uuid_kill", s.uuid)

    rec, _ = await _run(handler, CallerSpec(dtmf=[(0.02, "1#")]))
    assert digits == ["1", "#"] and rec.dtmf_sent == ["1#"]


async def test_event_lock_queues_and_no_lock_nests():
    order = {}

    async def handler(s: OutboundSession):
        await s.connect()
        await s.myevents()
        await s.execute("answer", event_lock=True)
        await s.execute("playback", "silence_stream://60", event_lock=True)
        await s.execute("set", "x=1")
        evs = []
        with trio.fail_after(2):
            async for ev in s.events:
                if ev.name == "CHANNEL_EXECUTE_COMPLETE":
                    evs.append(ev["Application"])
                    if ev["Application"] == "set":
                        break
        order["locked"] = evs
        await s.execute("playback", "silence_stream://60")
        await s.execute("set", "y=1")
        evs = []
        with trio.fail_after(2):
            async for ev in s.events:
                if ev.name == "CHANNEL_EXECUTE_COMPLETE":
                    evs.append(ev["Application"])
                    if ev["Application"] == "playback":
                        break
        order["nested"] = evs
        await s.api("uuid_kill", s.uuid)

    await _run(handler, CallerSpec())
    assert order["locked"] == ["answer", "playback", "set"]
    assert order["nested"] == ["set", "playback"]


async def test_no_listener_dialplan_goes_on_and_silent_dispatcher_strands_caller():
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        sim.dial_to = ("127.0.0.1", 1)   # nothing listens
        rec = sim.spawn_caller(CallerSpec())
        with trio.fail_after(2):
            await rec.done.wait()
        assert rec.socket_failed and rec.continued_in_dialplan

        async def silent(s: OutboundSession):
            await trio.sleep_forever()

        port = await n.start(serve_outbound, silent, "127.0.0.1", 0)
        sim.dial_to = ("127.0.0.1", port)
        sim.switch.t.first_command_timeout = 0.05  # override
        rec2 = sim.spawn_caller(CallerSpec())
        await trio.sleep(0.2)
        assert rec2.stuck and rec2.ended_at is None   # parked in the socket app, in silence
        n.cancel_scope.cancel()


async def test_sendevent_unique_id_rule():
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = InboundClient("127.0.0.1", sim.port, "ClueCon", subclasses=["t::x"],
                          liveness_interval=None)
        await n.start(c.run)
        state = trio.Event()
        uuid = []

        async def handler(s: OutboundSession):
            await s.connect()
            uuid.append(s.uuid)
            await trio.sleep(0.03)          # parked, idle
            state.set()
            await trio.sleep_forever()

        port = await n.start(serve_outbound, handler, "127.0.0.1", 0)
        sim.dial_to = ("127.0.0.1", port)
        sim.spawn_caller(CallerSpec())
        await state.wait()
        await c.sendevent("CUSTOM", {"Unique-ID": uuid[0], "K": "v"}, subclass="t::x")
        with trio.fail_after(2):
            ev = await c.events.get()
        assert ev["K"] == "v" and ev["Channel-Name"].endswith("-b")   # snapshot merged in
        assert ev["variable_cc_queue"] == "support@default"
        await c.sendmsg(uuid[0], "playback", "local_stream://moh")
        await trio.sleep(0.02)
        await c.sendevent("CUSTOM", {"Unique-ID": uuid[0], "K": "lost"}, subclass="t::x")
        await c.sendevent("CUSTOM", {"K": "broadcast"}, subclass="t::x")
        with trio.fail_after(2):
            ev = await c.events.get()
        assert ev["K"] == "broadcast"    # the one aimed at the channel in MOH was dropped
        n.cancel_scope.cancel()
