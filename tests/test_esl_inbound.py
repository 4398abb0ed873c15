"""The trio inbound client against the simulator over real TCP (127.0.0.1, port 0)."""

from __future__ import annotations

import pytest
import trio

from ccfast.esl.inbound import (AuthenticationFailed, CommandFailed, ConnectionLost,
                                InboundClient)
from ccfast.sim import AgentProfile, Timings, open_simulator

T = Timings.fast()


async def _client(nursery, sim, **kw) -> InboundClient:
    kw.setdefault("liveness_interval", None)
    kw.setdefault("backoff_initial", 0.01)
    c = InboundClient("127.0.0.1", sim.port, kw.pop("password", "ClueCon"), **kw)
    await nursery.start(c.run)
    return c


async def _event(c: InboundClient, name: str, pred=lambda e: True, timeout: float = 2.0):
    with trio.fail_after(timeout):
        async for ev in c.events:
            if getattr(ev, "name", None) == name and pred(ev):
                return ev


async def test_api_commands_and_error_strings():
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim)
        assert (await c.api("status")).startswith("UP ")
        u = (await c.api("create_uuid")).strip()
        assert len(u) == 36
        assert await c.api("foo") == "-ERR foo Command not found!\n"
        assert await c.api("uuid_bridge") == "-USAGE: <uuid> <other_uuid>\n"
        assert await c.api("uuid_kill", u) == "-ERR No such channel!\n"
        assert await c.api("uuid_getvar", f"{u} x") == "-ERR No such channel!\n"
        assert await c.api("uuid_record", f"{u} start /tmp/x.wav") == "-ERR Cannot locate session!\n"
        assert await c.api("uuid_exists", u) == "false"
        assert await c.api("uuid_bridge", f"{u} {u}") == "-ERR Invalid uuid\n"
        assert (await c.api("hupall", "NORMAL_CLEARING")).startswith("-ERR")
        with pytest.raises(CommandFailed, match=r"-ERR invalid session id \[" + u):
            await c.sendmsg(u, "playback", "x.wav")
        r = await c.command(__import__("ccfast.esl", fromlist=["Linger"]).Linger())
        assert r.reply_text == "-ERR not controlling a session"
        assert await c.api("show", "channels as json") == '{"row_count": 0}'
        n.cancel_scope.cancel()


async def test_bgapi_originate_channel_vars_and_background_job():
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim, events=["BACKGROUND_JOB", "CHANNEL_ANSWER"])
        body = await c.bgapi("originate", "{origination_uuid=agent-1,cc_queue=q@d,x='a b'}"
                             "sim/agent/a1 &park()", job_uuid="job-1")
        assert body == "+OK agent-1\n"
        ev = await _event(c, "CHANNEL_ANSWER")
        assert ev["Unique-ID"] == "agent-1" and ev["variable_cc_queue"] == "q@d"
        job = await _event(c, "BACKGROUND_JOB")
        assert job["Job-UUID"] == "job-1" and job.body == "+OK agent-1\n"
        assert await c.api("uuid_getvar", "agent-1 x") == "a b"
        assert await c.api("uuid_getvar", "agent-1 nope") == "_undef_"
        assert await c.api("uuid_setvar", "agent-1 y with space") == "+OK\n"
        assert await c.api("uuid_getvar", "agent-1 y") == "with space"
        assert await c.api("eval", "uuid:agent-1 ${variable_cc_queue}") == "q@d"
        assert await c.api("eval", "uuid:agent-1 ${cc_queue}") == "-ERR no reply\n"
        rows = __import__("json").loads(await c.api("show", "channels as json"))
        assert rows["row_count"] == 1 and rows["rows"][0]["uuid"] == "agent-1"
        assert await c.api("uuid_exists", "agent-1") == "true"
        assert await c.api("uuid_kill", "agent-1") == "+OK\n"
        await trio.sleep(0.02)
        assert await c.api("uuid_exists", "agent-1") == "false"
        n.cancel_scope.cancel()


@pytest.mark.parametrize("contact,expect", [
    ("loopback/agent_busy/cc", "-ERR USER_BUSY\n"),
    ("loopback/agent_reject/cc", "-ERR CALL_REJECTED\n"),
    ("loopback/nowhere/cc", "-ERR NO_ROUTE_DESTINATION\n"),
    ("user/9999", "-ERR USER_NOT_REGISTERED\n"),
    ("[leg_timeout=0.05]loopback/agent_noanswer/cc", "-ERR ALLOTTED_TIMEOUT\n"),
    ("{originate_timeout=0.05}loopback/agent_noanswer/cc", "-ERR NO_ANSWER\n"),
    ("loopback/agent_busy/cc,loopback/agent_reject/cc", "-ERR USER_BUSY\n"),
    ("loopback/agent_busy/cc|sim/agent/ok", "+OK"),
])
async def test_originate_outcomes(contact, expect):
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim)
        body = await c.bgapi("originate", f"{contact} &park()", timeout=2)
        assert body.startswith(expect)
        n.cancel_scope.cancel()


async def test_ring_all_losers_get_lose_race_and_kill_gives_cause():
    profiles = {"slow": AgentProfile("slow", ring_time=0.2), "fast": AgentProfile("fast", ring_time=0.01)}
    async with open_simulator(timings=T, profiles=profiles) as sim, trio.open_nursery() as n:
        c = await _client(n, sim, events=["CHANNEL_HANGUP"])
        body = await c.bgapi("originate", "[origination_uuid=s1]sim/agent/slow,"
                             "[origination_uuid=f1]sim/agent/fast &park()")
        assert body == "+OK f1\n"
        ev = await _event(c, "CHANNEL_HANGUP", lambda e: e["Unique-ID"] == "s1")
        assert ev["Hangup-Cause"] == "LOSE_RACE"
        async with trio.open_nursery() as n2:
            res = []

            async def ring():
                res.append(await c.bgapi("originate", "{origination_uuid=r1}loopback/agent_noanswer/cc &park()"))
            n2.start_soon(ring)
            await trio.sleep(0.02)
            assert await c.api("uuid_kill", "r1 ORIGINATOR_CANCEL") == "+OK\n"
        assert res == ["-ERR ORIGINATOR_CANCEL\n"]
        n.cancel_scope.cancel()


async def test_sendevent_filter_nixevent_noevents():
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim, events=["CHANNEL_CREATE"], subclasses=["callcenter::info"])
        eid = await c.sendevent("CUSTOM", {"CC-Action": "agent-offering", "CC-Queue": "q@d"},
                                subclass="callcenter::info")
        ev = await _event(c, "CUSTOM")
        assert ev["Event-UUID"] == eid and ev["CC-Queue"] == "q@d"
        assert [k for k, _ in ev.headers.pairs()][:2] == ["Event-Subclass", "Command"]
        assert await c.filter("CC-Queue", "other") == "+OK filter added. [CC-Queue]=[other]"
        await c.sendevent("CUSTOM", {"CC-Queue": "q@d"}, subclass="callcenter::info")
        await c.sendevent("CUSTOM", {"CC-Queue": "other", "CC-Action": "x"}, subclass="callcenter::info")
        ev = await _event(c, "CUSTOM")
        assert ev["CC-Queue"] == "other"
        await c.filter_delete()
        assert await c.nixevent(["CUSTOM"], ["callcenter::info"]) == "+OK events nixed"
        assert await c.noevents() == "+OK no longer listening for events"
        await c.sendevent("CUSTOM", {"CC-Queue": "q@d"}, subclass="callcenter::info")
        await trio.sleep(0.02)
        assert len(c.events) == 0
        n.cancel_scope.cancel()


async def test_wrong_password_acl_and_userauth():
    async with open_simulator(timings=T, users={"ccfast@default": "pw"}) as sim, trio.open_nursery() as n:
        c = InboundClient("127.0.0.1", sim.port, "wrong", liveness_interval=None)
        with pytest.raises(AuthenticationFailed, match="-ERR invalid"), trio.fail_after(10):
            await c.run()
        assert c.state == "closed"
        u = InboundClient("127.0.0.1", sim.port, "pw", user="ccfast@default", liveness_interval=None)
        await n.start(u.run)
        assert u.is_up
        sim.acl = ["10.0.0.0/8"]
        r = InboundClient("127.0.0.1", sim.port, "ClueCon", liveness_interval=None)
        with pytest.raises(AuthenticationFailed, match="rejected"), trio.fail_after(10):
            await r.run()
        n.cancel_scope.cancel()


async def test_reconnect_resubscribes_calls_hook_and_fails_pending():
    hooks = []
    states = []

    async def hook(cl):
        hooks.append(await cl.api("status"))

    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim, subclasses=["callcenter::info"], on_reconnect=hook,
                          on_state=states.append)
        sim.faults.reply_delay = 0.0
        conn = sim.inbound_connections()[0]
        conn.faults.reply_delay = 0.2   # keep the next api pending
        errors = []

        async def pending():
            try:
                await c.api("status")
            except ConnectionLost as exc:
                errors.append(exc)
        n.start_soon(pending)
        await trio.sleep(0.05)
        assert sim.drop_connections() == 1
        with trio.fail_after(2):
            await c.wait_down()
            await c.wait_up()
        await trio.sleep(0.05)
        assert len(errors) == 1
        assert c.reconnects == 1 and len(hooks) == 1 and hooks[0].startswith("UP")
        assert "down" in states and states[-1] == "up"
        await c.sendevent("CUSTOM", {"A": "b"}, subclass="callcenter::info")
        ev = await _event(c, "CUSTOM")      # the subscription was replayed
        assert ev["A"] == "b"
        n.cancel_scope.cancel()


async def test_calls_while_down_fail_and_backoff_retries_until_server_returns():
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim, backoff_initial=0.02, backoff_max=0.05)
        sim.refuse_connections = True
        sim.drop_connections()
        await c.wait_down()
        with pytest.raises(ConnectionLost):
            await c.api("status")
        await trio.sleep(0.15)
        assert not c.is_up
        sim.refuse_connections = False
        with trio.fail_after(2):
            await c.wait_up()
        assert (await c.api("status")).startswith("UP")
        n.cancel_scope.cancel()


async def test_overflow_drops_oldest_and_counts():
    overflowed = []
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim, subclasses=["t::x"], queue_size=5, on_overflow=overflowed.append)
        for i in range(20):
            await c.sendevent("CUSTOM", {"N": str(i)}, subclass="t::x")
        await c.api("status")   # all events before this reply are read
        await trio.sleep(0.02)
        assert c.events.dropped == 15 and len(c.events) == 5 and overflowed
        got = [c.events.get_nowait()["N"] for _ in range(5)]
        assert got == ["15", "16", "17", "18", "19"]
        n.cancel_scope.cancel()


async def test_slow_consumer_does_not_make_simulator_drop_us():
    async with open_simulator(timings=T, max_lag=50) as sim, trio.open_nursery() as n:
        c = await _client(n, sim, subclasses=["t::x"], queue_size=10)
        for i in range(200):
            await c.sendevent("CUSTOM", {"N": str(i)}, subclass="t::x")
        assert c.is_up and sim.stats["listeners_dropped"] == 0
        n.cancel_scope.cancel()


async def test_dead_peer_detected_by_liveness_probe():
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim, liveness_interval=0.05, liveness_timeout=0.05)
        sim.inbound_connections()[0].faults.stall_reading(True)
        with trio.fail_after(2):
            await c.wait_down()
        assert "liveness" in (c.last_error or "")
        with trio.fail_after(2):
            await c.wait_up()
        assert c.reconnects == 1
        n.cancel_scope.cancel()


async def test_exit_closes_with_goodbye():
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim)
        await c.exit()
        await trio.sleep(0.02)
        assert c.state == "closed"
        n.cancel_scope.cancel()


def test_api_nowait_fast_path_writes_the_same_bytes_as_api():
    from ccfast.esl._commands import Api
    from ccfast.esl._link import Encoded
    from ccfast.esl.inbound import InboundClient

    posted = []
    client = InboundClient("127.0.0.1", 1, "x")
    client.post = lambda cmd, on_reply=None: posted.append(cmd)
    for line in ("uuid_setvar abc cc_agent_found true", "status", "uuid_setvar_multi u a=1;b=caf\u00e9"):
        client.api_nowait(line)
        assert isinstance(posted[-1], Encoded) and posted[-1].encode() == Api(line).encode()
    client.api_nowait("uuid_kill", "abc")  # command + args: the checked path
    assert posted[-1] == Api("uuid_kill", "abc")
    import pytest
    from ccfast.esl.errors import LocalProtocolError
    with pytest.raises(LocalProtocolError):
        client.api_nowait("uuid_kill abc\nexit")
    with pytest.raises(LocalProtocolError):
        client.api_nowait(" leading space")


async def test_on_event_gets_events_from_the_reader_and_after_read_follows_each_chunk():
    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim, events=["BACKGROUND_JOB", "CHANNEL_ANSWER"])
        got, chunks = [], []
        c.on_event = got.append
        c.after_read = lambda: chunks.append(len(got))
        body = await c.bgapi("originate", "{origination_uuid=agent-9}sim/agent/a &park()")
        assert body.startswith("+OK")
        with trio.fail_after(2):
            while not any(e.get("Event-Name") == "BACKGROUND_JOB" for e in got):
                await trio.sleep(0.01)
        assert len(c.events) == 0 and c.events.received >= len(got) > 0
        assert chunks  # the hook ran after the chunks
        c.on_event = lambda e: 1 / 0  # a failing handler is logged; the link stays up
        await c.bgapi("originate", "{origination_uuid=agent-10}sim/agent/a &park()")
        assert c.is_up
        n.cancel_scope.cancel()


async def test_a_serving_hub_reads_the_link_and_a_stopped_hub_hands_it_back():
    from ccfast.esl.hub import OutboundHub

    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        ticks = []
        hub = OutboundHub(lambda conn: None, after_tick=lambda: ticks.append(1))
        async with trio.open_nursery() as hub_nursery:
            await hub_nursery.start(hub.serve, "127.0.0.1", 0)
            c = InboundClient("127.0.0.1", sim.port, "ClueCon", liveness_interval=None, backoff_initial=0.01,
                              events=["BACKGROUND_JOB"])
            c.reactor = hub
            await n.start(c.run)
            assert (await c.api("status")).startswith("UP ")  # the next read moves the link to the hub
            assert c._link._reactor_wake is not None and hub._watched
            before = len(ticks)
            assert (await c.api("status")).startswith("UP ")
            assert len(ticks) > before  # the reply came in through the hub's wake-up
            body = await c.bgapi("originate", "{origination_uuid=agent-h}sim/agent/a &park()")
            assert body.startswith("+OK agent-h")
            ev = await _event(c, "BACKGROUND_JOB")
            assert ev.job_uuid
            # the link drops while the hub reads it: the client reconnects (and the hub reads again)
            assert sim.drop_connections() == 1
            with trio.fail_after(2):
                await c.wait_down()
                await c.wait_up()
            assert (await c.api("status")).startswith("UP ")
            assert (await c.api("status")).startswith("UP ")
            assert c._link._reactor_wake is not None and len(hub._watched) == 1
            hub_nursery.cancel_scope.cancel()
        # the hub stopped: the same link is read by its own task again
        assert not hub.serving and not hub._watched
        with trio.fail_after(2):
            assert (await c.api("status")).startswith("UP ")
        assert c._link._reactor_wake is None and c.reconnects == 1
        n.cancel_scope.cancel()


async def test_post_many_queues_whole_frames_with_a_reply_slot_each_in_order():
    from ccfast.esl._link import Encoded

    async with open_simulator(timings=T) as sim, trio.open_nursery() as n:
        c = await _client(n, sim, subclasses=["callcenter::info"])
        frames = [Encoded.frame("sendevent CUSTOM", [("Event-Subclass", "callcenter::info"), ("N", str(i))]).data
                  for i in range(3)]
        replies = []
        c.post_many(frames, replies.append)
        assert (await c.api("status")).startswith("UP ")  # the api's reply comes after the three
        assert len(replies) == 3 and all(r.reply_text.startswith("+OK") for r in replies)
        got = [(await _event(c, "CUSTOM"))["N"] for _ in range(3)]
        assert got == ["0", "1", "2"]
        n.cancel_scope.cancel()
    with pytest.raises(ConnectionLost):
        c.post_many(frames, replies.append)
