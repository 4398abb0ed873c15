"""The service end to end over real TCP against the simulator."""

from __future__ import annotations

import trio

from ccfast import strings as S
from ccfast.sim import AgentProfile, CallerSpec

from .e2e_harness import conf, open_callcenter

QUEUE = '<queue name="support@default"><param name="strategy" value="longest-idle-agent"/></queue>'
AGENT = '<agent name="1000@default" type="callback" contact="sim/agent/a1" status="Available"/>'
TIER = '<tier agent="1000@default" queue="support@default" level="1" position="1"/>'


async def test_one_call_is_offered_bridged_and_ended():
    profiles = {"a1": AgentProfile("a1", talk_time=0.2)}
    async with open_callcenter(conf(QUEUE, AGENT, TIER), profiles=profiles) as env:
        await env.bridged_call()
        agent = env.core.rows("agents")[0]
        assert agent["calls_answered"] == 1 and agent["state"] == S.STATE_WAITING
        assert env.core.rows("members") == []
        env.check_invariants()


async def _cc_events(env, count: int, timeout: float = 5.0) -> list:
    out = []
    with trio.fail_after(timeout):
        while len(out) < count:
            event = await env.control.events.get()
            if event.get("Event-Subclass") == S.EVENT_SUBCLASS:
                out.append(event)
    return out


async def test_events_of_one_call_come_in_mod_callcenter_order_with_its_headers():
    profiles = {"a1": AgentProfile("a1", talk_time=0.2)}
    async with open_callcenter(conf(QUEUE, AGENT, TIER), profiles=profiles) as env:
        await env.control.subscribe(["CUSTOM"], [S.EVENT_SUBCLASS])
        env.sim.spawn_caller(CallerSpec(queue="support@default", cid_name="Alice Smith"))
        events = await _cc_events(env, 10)
        actions = [(e.get("CC-Action"), e.get("CC-Agent-State") or e.get("CC-Cause")) for e in events]
        assert actions == [
            ("member-queue-start", None), ("members-count", None),
            ("agent-state-change", "Receiving"), ("agent-offering", None),
            ("bridge-agent-start", None), ("agent-state-change", "In a queue call"),
            ("members-count", None), ("bridge-agent-end", None),
            ("member-queue-end", "Terminated"), ("agent-state-change", "Waiting"),
        ]
        offering = events[3]
        cc_headers = [k for k in offering.headers.keys() if k.startswith("CC-")]
        assert cc_headers == ["CC-Queue", "CC-Action", "CC-Agent", "CC-Agent-Type", "CC-Agent-System",
                              "CC-Member-UUID", "CC-Member-Session-UUID", "CC-Member-CID-Name",
                              "CC-Member-CID-Number"]
        assert offering.get("CC-Member-CID-Name") == "Alice Smith"
        await env.quiesce()
        env.check_invariants()


async def test_no_answer_fails_over_to_the_next_agent():
    agents = AGENT.replace("sim/agent/a1", "sim/agent/deaf") + (
        '<agent name="1001@default" type="callback" contact="sim/agent/a2" status="Available"/>'
    )
    tiers = TIER + '<tier agent="1001@default" queue="support@default" level="1" position="2"/>'
    queue = QUEUE.replace("longest-idle-agent", "top-down")
    profiles = {
        "deaf": AgentProfile("deaf", outcome="USER_BUSY", fail_time=0.01),
        "a2": AgentProfile("a2", talk_time=0.1),
    }
    async with open_callcenter(conf(queue, agents, tiers), profiles=profiles) as env:
        await env.bridged_call()
        rows = {a["name"]: a for a in env.core.rows("agents")}
        assert rows["1001@default"]["calls_answered"] == 1
        assert rows["1000@default"]["calls_answered"] == 0
        env.check_invariants()


async def test_caller_hangup_while_agent_rings_cancels_the_leg_at_once():
    profiles = {"a1": AgentProfile("a1", outcome="no_answer")}
    async with open_callcenter(conf(QUEUE, AGENT, TIER), profiles=profiles) as env:
        await env.control.subscribe(["CUSTOM"], [S.EVENT_SUBCLASS])
        record = env.sim.spawn_caller(CallerSpec(queue="support@default", patience=0.3))
        with trio.fail_after(5):
            await record.done.wait()
        assert record.outcome == "abandoned"
        await env.quiesce()
        actions = [e.get("CC-Action") for e in await _cc_events(env, 8)]
        assert "bridge-agent-fail" in actions
        end = actions.index("member-queue-end")
        assert actions[end + 1] == "members-count"
        member = env.core.rows("members")[0]
        assert member["state"] == S.MEMBER_ABANDONED
        assert env.core.rows("agents")[0]["state"] == S.STATE_WAITING
        # check_invariants: no zombie agent leg left ringing in the simulator
        env.check_invariants()


async def test_max_wait_time_sends_the_caller_back_to_the_dialplan():
    queue = QUEUE.replace("</queue>", '<param name="max-wait-time" value="1"/></queue>')
    async with open_callcenter(conf(queue)) as env:
        await env.control.subscribe(["CUSTOM"], [S.EVENT_SUBCLASS])
        record = env.sim.spawn_caller(CallerSpec(queue="support@default"))
        events = await _cc_events(env, 4, timeout=5)
        end = events[2]
        assert end.get("CC-Action") == "member-queue-end"
        assert end.get("CC-Cause") == "Cancel" and end.get("CC-Cancel-Reason") == "TIMEOUT"
        with trio.fail_after(5):
            await record.done.wait()
        assert record.continued_in_dialplan
        await env.quiesce()
        env.check_invariants()


async def test_exit_key_leaves_the_queue():
    async with open_callcenter(conf(QUEUE)) as env:
        await env.control.subscribe(["CUSTOM"], [S.EVENT_SUBCLASS])
        env.sim.spawn_caller(CallerSpec(queue="support@default", variables={"cc_exit_keys": "9"},
                                        dtmf=[(0.2, "9")]))
        events = await _cc_events(env, 3)
        assert events[2].get("CC-Cancel-Reason") == "EXIT_WITH_KEY"


async def test_ring_all_first_answer_wins_and_the_others_are_cancelled():
    queue = QUEUE.replace("longest-idle-agent", "ring-all")
    agents = "".join(
        f'<agent name="{n}@default" type="callback" contact="sim/agent/r{n}" status="Available"/>' for n in (1, 2, 3)
    )
    tiers = "".join(f'<tier agent="{n}@default" queue="support@default" level="1" position="{n}"/>' for n in (1, 2, 3))
    profiles = {
        "r1": AgentProfile("r1", ring_time=2.0, talk_time=0.1),
        "r2": AgentProfile("r2", ring_time=0.05, talk_time=0.2),
        "r3": AgentProfile("r3", outcome="no_answer"),
    }
    async with open_callcenter(conf(queue, agents, tiers), profiles=profiles) as env:
        await env.bridged_call()
        rows = {a["name"]: a for a in env.core.rows("agents")}
        assert [rows[f"{n}@default"]["calls_answered"] for n in (1, 2, 3)] == [0, 1, 0]
        env.check_invariants()


async def test_control_port_answers_callcenter_config_like_fs_cli():
    async with open_callcenter(conf(QUEUE, AGENT, TIER)) as env:
        out = await env.cc("queue list")
        assert out.startswith("name|strategy|moh_sound|")
        assert "support@default|longest-idle-agent|" in out and out.endswith("+OK\n")
        assert await env.cc("agent set status 1000@default 'On Break'") == "+OK\n"
        assert await env.cc("agent get status 1000@default") == "On Break"
        assert await env.cc("agent set status nobody Available") == "-ERR Agent not found!\n"
        assert await env.control.api("no_such_command") == "-ERR no_such_command Command not found!\n"


async def test_events_are_fired_into_freeswitch_for_its_own_subscribers():
    """FusionPBX-style consumers subscribed on FreeSWITCH itself keep working (sendevent)."""
    from ccfast.esl.inbound import InboundClient

    profiles = {"a1": AgentProfile("a1", talk_time=0.1)}
    async with open_callcenter(conf(QUEUE, AGENT, TIER), profiles=profiles) as env:
        watcher = InboundClient("127.0.0.1", env.sim.port, "ClueCon", events=["CUSTOM"],
                                subclasses=[S.EVENT_SUBCLASS], reconnect=False, liveness_interval=None)
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            env.sim.spawn_caller(CallerSpec(queue="support@default"))
            seen = []
            with trio.fail_after(5):
                while len(seen) < 10:
                    event = await watcher.events.get()
                    if event.get("Event-Subclass") == S.EVENT_SUBCLASS:
                        seen.append(event)
            assert [e.get("CC-Action") for e in seen][:4] == [
                "member-queue-start", "members-count", "agent-state-change", "agent-offering"]
            # never routed to a channel: no Unique-ID in what ccfast sends (integration notes §7.2)
            assert all(e.get("Command") == "sendevent CUSTOM" for e in seen)
            nursery.cancel_scope.cancel()
        await env.quiesce()
        env.check_invariants()


def _fixture_cc_headers() -> list[tuple[str, list[str]]]:
    """(CC-Action, CC-* header names in order) of the 10 events of a real mod_callcenter call."""
    from pathlib import Path

    from ccfast.esl import ClientProtocol

    root = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "freeswitch-esl"
    if not root.is_dir():
        root = Path("/work/shared/fixtures/freeswitch-esl")
    proto = ClientProtocol()
    proto.receive_data((root / "esl-capture-plain-callcenter-only.txt").read_bytes())
    return [(m.get("CC-Action"), [k for k in m.headers.keys() if k.startswith("CC-")]) for m in proto.messages()]


async def test_every_event_of_a_call_has_the_header_names_and_order_of_real_mod_callcenter():
    expected = _fixture_cc_headers()
    profiles = {"a1": AgentProfile("a1", talk_time=0.1)}
    async with open_callcenter(conf(QUEUE, AGENT, TIER), profiles=profiles) as env:
        await env.control.subscribe(["CUSTOM"], [S.EVENT_SUBCLASS])
        env.sim.spawn_caller(CallerSpec(queue="support@default", cid_name="e2e_caller", cid_number="5551000"))
        events = await _cc_events(env, len(expected))
        got = [(e.get("CC-Action"), [k for k in e.headers.keys() if k.startswith("CC-")]) for e in events]
        assert got == expected
        await env.quiesce()
        env.check_invariants()


async def test_queue_presence_is_fired_on_join_and_exit():
    """PRESENCE_IN for the queue (§6.3): Active (n waiting) on join, Idle when it empties."""
    from ccfast.esl.inbound import InboundClient

    queue = QUEUE.replace("</queue>", '<param name="max-wait-time" value="1"/></queue>')
    async with open_callcenter(conf(queue)) as env:
        watcher = InboundClient("127.0.0.1", env.sim.port, "ClueCon", events=["PRESENCE_IN"],
                                reconnect=False, liveness_interval=None)
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            env.sim.spawn_caller(CallerSpec(queue="support@default"))
            seen = []
            with trio.fail_after(5):
                while len(seen) < 2:
                    event = await watcher.events.get()
                    if event.get("Event-Name") == "PRESENCE_IN" and event.get("proto") == "callcenter":
                        seen.append(event)
            assert [e.get("force-status") for e in seen] == ["Active (1 waiting)", "Idle"]
            assert all(e.get("login") == "support@default" for e in seen)
            assert [e.get("answer-state") for e in seen] == ["confirmed", "terminated"]
            nursery.cancel_scope.cancel()
        await env.quiesce()
        env.check_invariants()


async def test_presence_probe_for_a_queue_is_answered():
    """PRESENCE_PROBE to callcenter+<queue>@… gets the queue's PRESENCE_IN (§6.3); a probe for
    another protocol or an unknown queue gets nothing."""
    from ccfast.esl.inbound import InboundClient

    async with open_callcenter(conf(QUEUE)) as env:
        phone = InboundClient("127.0.0.1", env.sim.port, "ClueCon", events=["PRESENCE_IN"],
                              reconnect=False, liveness_interval=None)
        async with trio.open_nursery() as nursery:
            await nursery.start(phone.run)
            for to in ("sip+1000@default", "callcenter+nope@default", "CallCenter+support@default"):
                await phone.sendevent("PRESENCE_PROBE", [("proto", "sip"), ("from", "1000@default"), ("to", to)])
            seen = []
            with trio.move_on_after(1.0):
                while True:
                    event = await phone.events.get()
                    if event.get("Event-Name") == "PRESENCE_IN" and event.get("proto") == "callcenter":
                        seen.append(event)
            assert [(e.get("login"), e.get("force-status"), e.get("answer-state")) for e in seen] == [
                ("support@default", "Idle", "terminated")]
            nursery.cancel_scope.cancel()
        env.check_invariants()
