"""Offers (reference §5) end to end: ccfast originates agent legs on the simulated box over inbound ESL.

What the box was asked to do (originate arguments, api commands and their times) and what the
agent legs ended up with (channel variables, hang-up causes) is read from the simulator; the core's
rows and the control port's ``callcenter::info`` events show the results.
"""

from __future__ import annotations

import time

import pytest
import trio

from ccfast import strings as S
from ccfast.sim import AgentProfile, CallerSpec

from .e2e_harness import Q, agent, conf, finish, open_callcenter, queue, tier

A = "1000@default"


def one_agent(contact: str = "sim/agent/a1", *, q: str | None = None, settings: str = "", **attrs) -> str:
    return conf(q or queue(), agent(A, contact, **attrs), tier(A), settings=settings)


async def answered_leg(env, timeout: float = 3.0):
    await env.wait_for(lambda: any(r.answered_at for r in env.legs()), timeout)
    return next(r for r in env.legs() if r.answered_at)


def agent_row(env, name: str = A) -> dict:
    return next(a for a in env.core.rows("agents") if a["name"] == name)


def tier_row(env, name: str = A) -> dict:
    return next(t for t in env.core.rows("tiers") if t["agent"] == name)


# -- the originate ------------------------------------------------------------------------------

async def test_agent_leg_carries_the_variables_of_8_4_and_the_member_caller_id():
    async with open_callcenter(one_agent(), profiles={"a1": AgentProfile("a1")}) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q, cid_name="Alice Smith", cid_number="5551000"))
        start = await env.wait_event(S.ACTION_BRIDGE_AGENT_START)
        member_uuid = start.get("CC-Member-UUID")
        leg = env.legs()[0]
        v = env.leg_vars(leg.uuid)
        joined = [r for r in env.core.rows("members")][0]["joined_epoch"]
        assert v["origination_uuid"] == leg.uuid
        assert v["cc_queue"] == Q and v["cc_queue_joined_epoch"] == str(joined)
        assert v["cc_member_uuid"] == member_uuid and v["cc_member_pre_answer_uuid"] == member_uuid
        assert v["cc_member_session_uuid"] == rec.member_uuid
        assert v["cc_agent"] == A and v["cc_agent_type"] == "callback" and v["cc_side"] == "agent"
        assert v["loopback_bowout"] == "false" and v["loopback_bowout_on_execute"] == "false"
        assert v["ignore_early_media"] == "true"
        assert v["origination_caller_id_name"] == "Alice Smith"
        assert v["origination_caller_id_number"] == "5551000"
        assert "cc_export_vars" not in v
        ch = env.channel(leg.uuid)
        assert ch.profile["Caller-ID-Name"] == "Alice Smith"
        await env.wait_for(lambda: ch.vars.get("cc_agent_bridged") == "true")
        # cleared after answer so a later hupall/cancel by member uuid leaves it alone (§5.5 step 1)
        assert "cc_member_pre_answer_uuid" not in ch.vars
        assert rec.agent_uuid == leg.uuid  # the -a leg we named is the one bridged
        await finish(env)


async def test_effective_caller_id_and_name_prefix_are_presented_to_the_agent():
    async with open_callcenter(one_agent(), profiles={"a1": AgentProfile("a1", talk_time=0.05)}) as env:
        rec = env.spawn(CallerSpec(queue=Q, variables={
            "effective_caller_id_name": "Front Desk", "effective_caller_id_number": "100",
            "cc_outbound_cid_name_prefix": "Support: "}))
        leg = await answered_leg(env)
        v = env.leg_vars(leg.uuid)
        assert v["origination_caller_id_name"] == "Support: Front Desk"
        assert v["origination_caller_id_number"] == "100"
        assert env.channel(leg.uuid).profile["Caller-ID-Name"] == "Support: Front Desk"
        with trio.fail_after(3):
            await rec.done.wait()
        await finish(env)


async def test_contact_is_expanded_against_the_member_and_keeps_its_per_leg_variables():
    contact = "[leg_timeout=5,agent_note=${cc_note},x_q=${cc_queue}]sim/agent/a1"
    async with open_callcenter(one_agent(contact), profiles={"a1": AgentProfile("a1", talk_time=0.05)}) as env:
        rec = env.spawn(CallerSpec(queue=Q, variables={"cc_note": "vip"}))
        leg = await answered_leg(env)
        assert leg.endpoint == "sim/agent/a1"
        v = env.leg_vars(leg.uuid)
        assert v["agent_note"] == "vip" and v["leg_timeout"] == "5" and v["x_q"] == Q
        assert env.channel(leg.uuid).vars["agent_note"] == "vip"
        with trio.fail_after(3):
            await rec.done.wait()
        await finish(env)


async def test_a_contact_global_block_overrides_ccfast_variables_without_duplicates():
    contact = "{originate_timeout=1,ignore_early_media=false}sim/agent/deaf"
    profiles = {"deaf": AgentProfile("deaf", outcome="no_answer")}
    async with open_callcenter(one_agent(contact, no_answer_delay_time="30"), profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        fail = await env.wait_event(S.ACTION_BRIDGE_AGENT_FAIL, timeout=3)
        assert fail.get("CC-Hangup-Cause") == "NO_ANSWER"
        arg = env.sim.switch.jobs[env.legs()[0].job_uuid].arg
        assert arg.count("originate_timeout=") == 1 and arg.count("ignore_early_media=") == 1
        assert env.leg_vars(env.legs()[0].uuid)["ignore_early_media"] == "false"
        env.hangup_caller(rec)
        await finish(env)


async def test_cc_export_vars_are_copied_to_the_agent_leg():
    member_vars = {
        "cc_export_vars": "crm_id,nolocal:lang,_nolocal_tier,missing",
        "crm_id": "A-17, gold member", "nolocal:lang": "fr", "_nolocal_tier": "2",
    }
    async with open_callcenter(one_agent(), profiles={"a1": AgentProfile("a1", talk_time=0.05)}) as env:
        rec = env.spawn(CallerSpec(queue=Q, variables=member_vars))
        leg = await answered_leg(env)
        v = env.leg_vars(leg.uuid)
        assert v["cc_export_vars"] == "crm_id,nolocal:lang,_nolocal_tier,missing"
        assert v["crm_id"] == "A-17, gold member"
        assert v["lang"] == "fr" and v["tier"] == "2"
        assert "missing" not in v and "nolocal:lang" not in v
        with trio.fail_after(3):
            await rec.done.wait()
        await finish(env)


async def test_agent_originate_timeout_ends_the_ring_with_no_answer():
    settings = '<param name="agent-originate-timeout" value="1"/>'
    profiles = {"deaf": AgentProfile("deaf", outcome="no_answer")}
    async with open_callcenter(one_agent("sim/agent/deaf", settings=settings, no_answer_delay_time="13"),
                               profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        offering = await env.wait_event(S.ACTION_AGENT_OFFERING)
        t0 = trio.current_time()
        fail = await env.wait_event(S.ACTION_BRIDGE_AGENT_FAIL, timeout=3)
        assert 0.8 <= trio.current_time() - t0 <= 1.6
        assert fail.get("CC-Hangup-Cause") == "NO_ANSWER"
        assert offering.get("CC-Agent") == A
        row = agent_row(env)
        assert row["no_answer_count"] == 1 and row["state"] == S.STATE_WAITING
        aborted = int(fail.get("CC-Agent-Aborted-Time"))
        assert row["ready_time"] == aborted + 13
        assert tier_row(env)["state"] == S.TIER_NO_ANSWER
        assert env.core.rows("members")[0]["state"] == S.MEMBER_WAITING
        env.hangup_caller(rec)
        await finish(env)


# -- failure causes (§5.7) -----------------------------------------------------------------------

CAUSES = [
    # contact, profile, expected cause, delay column (None: fixed 5 s), counts as no answer
    ("sim/agent/busy", AgentProfile("busy", outcome="USER_BUSY"), "USER_BUSY", "busy_delay_time", False),
    ("sim/agent/cong", AgentProfile("cong", outcome="NORMAL_CIRCUIT_CONGESTION"), "NORMAL_CIRCUIT_CONGESTION",
     "busy_delay_time", False),
    ("sim/agent/rej", AgentProfile("rej", outcome="CALL_REJECTED"), "CALL_REJECTED", "reject_delay_time", False),
    ("user/nobody", None, "USER_NOT_REGISTERED", None, False),
    ("[leg_timeout=1]sim/agent/deaf", AgentProfile("deaf", outcome="no_answer"), "ALLOTTED_TIMEOUT",
     "no_answer_delay_time", True),
    ("error/SUBSCRIBER_ABSENT", None, "SUBSCRIBER_ABSENT", "no_answer_delay_time", True),
]


@pytest.mark.parametrize("contact,profile,cause,delay_column,no_answer", CAUSES,
                         ids=[c[2] for c in CAUSES])
async def test_each_originate_failure_cause_gives_the_core_result(contact, profile, cause, delay_column, no_answer):
    delays = {"busy_delay_time": "11", "reject_delay_time": "12", "no_answer_delay_time": "13"}
    profiles = {profile.name: profile} if profile else {}
    async with open_callcenter(one_agent(contact, **delays), profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        fail = await env.wait_event(S.ACTION_BRIDGE_AGENT_FAIL, timeout=3)
        assert fail.get("CC-Hangup-Cause") == cause
        aborted = int(fail.get("CC-Agent-Aborted-Time"))
        row = agent_row(env)
        delay = int(delays[delay_column]) if delay_column else 5
        assert row["ready_time"] == aborted + delay
        assert row["no_answer_count"] == (1 if no_answer else 0)
        assert tier_row(env)["state"] == (S.TIER_NO_ANSWER if no_answer else S.TIER_READY)
        assert row["state"] == S.STATE_WAITING and row["status"] == S.STATUS_AVAILABLE
        member = env.core.rows("members")[0]
        assert member["state"] == S.MEMBER_WAITING and member["serving_agent"] == ""
        env.hangup_caller(rec)
        await finish(env)


async def test_max_no_answer_sets_the_queue_agent_no_answer_status():
    q = queue(("agent-no-answer-status", "Logged Out"))
    profiles = {"deaf": AgentProfile("deaf", outcome="NO_ANSWER")}  # fails at once with NO_ANSWER
    async with open_callcenter(one_agent("sim/agent/deaf", q=q, max_no_answer="1"), profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        await env.wait_event(S.ACTION_BRIDGE_AGENT_FAIL, timeout=3)
        maxed = await env.wait_event(S.ACTION_AGENT_MAX_NO_ANSWER)
        status = await env.wait_event(S.ACTION_AGENT_STATUS_CHANGE)
        assert maxed.get("CC-Agent-No-Answer-Status") == "Logged Out"
        assert status.get("CC-Agent-Status") == "Logged Out"
        acts = env.actions()
        assert acts.index(S.ACTION_AGENT_MAX_NO_ANSWER) < acts.index(S.ACTION_AGENT_STATUS_CHANGE) \
            < acts.index(S.ACTION_BRIDGE_AGENT_FAIL)
        assert agent_row(env)["status"] == S.STATUS_LOGGED_OUT
        env.hangup_caller(rec)
        await finish(env)


async def test_on_demand_agent_is_idle_after_a_call():
    profiles = {"a1": AgentProfile("a1", talk_time=0.05)}
    async with open_callcenter(one_agent(status="Available (On Demand)"), profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        with trio.fail_after(3):
            await rec.done.wait()
        await env.wait_event(S.ACTION_AGENT_STATE_CHANGE, CC_Agent_State=S.STATE_IDLE)
        assert rec.outcome == "bridged"
        row = agent_row(env)
        assert row["state"] == S.STATE_IDLE and row["calls_answered"] == 1
        # an Idle agent is not offered the next caller
        second = env.spawn(CallerSpec(queue=Q, cid_number="5552000"))
        await trio.sleep(0.2)
        assert len(env.legs()) == 1 and second.outcome == "active"
        env.hangup_caller(second)
        await finish(env)


# -- uuid-standby (§5.4) ---------------------------------------------------------------------------

async def standby_channel(env, name: str = "standby") -> str:
    """An agent phone already up and parked on the box (as a uuid-standby agent has)."""
    uuid = "5b0c1e5e-0000-4000-8000-000000000001"
    done = trio.Event()
    env.sim.switch.originate(f"{{origination_uuid={uuid},park_after_bridge=true}}sim/agent/{name} &park()",
                             "standby-job", lambda _text: done.set())
    with trio.fail_after(2):
        await done.wait()
    return uuid


async def test_uuid_standby_agent_is_bridged_in_place_with_the_agent_variables():
    conf_xml = conf(queue(), agent(A, "", agent_type="uuid-standby"), tier(A))
    async with open_callcenter(conf_xml, profiles={"standby": AgentProfile("standby")}) as env:
        await env.watch_events()
        uuid = await standby_channel(env)
        assert await env.cc(f"agent set uuid {A} {uuid}") == "+OK\n"
        rec = env.spawn(CallerSpec(queue=Q, variables={"cc_export_vars": "crm_id,absent", "crm_id": "42"}))
        start = await env.wait_event(S.ACTION_BRIDGE_AGENT_START)
        await env.wait_for(lambda: rec.bridged_at is not None)
        assert rec.agent_uuid == uuid
        assert [c for c in env.api_log if c[1] == "originate"] == []
        ch = env.channel(uuid)
        assert ch.vars["cc_side"] == "agent" and ch.vars["cc_queue"] == Q and ch.vars["cc_agent"] == A
        assert ch.vars["cc_agent_type"] == "uuid-standby"
        assert ch.vars["cc_member_uuid"] == start.get("CC-Member-UUID")
        assert ch.vars["cc_member_session_uuid"] == rec.member_uuid
        assert ch.vars["crm_id"] == "42" and "absent" not in ch.vars and "cc_export_vars" not in ch.vars
        assert start.get("CC-Agent-Called-Time") == "0"
        # the caller hangs up: the agent's channel stays (park_after_bridge) and the offer ends
        env.hangup_caller(rec)
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END, CC_Cause="Terminated")
        assert end.get("CC-Hangup-Cause") == "NONE"
        await env.wait_for(lambda: not env.service.offers)
        assert ch.alive
        row = agent_row(env)
        assert row["uuid"] == uuid and row["state"] == S.STATE_WAITING and row["calls_answered"] == 1
        env.hangup(uuid)
        await finish(env)


async def test_uuid_standby_agent_without_its_channel_is_logged_out():
    conf_xml = conf(queue(), agent(A, "", agent_type="uuid-standby"), tier(A))
    async with open_callcenter(conf_xml) as env:
        await env.watch_events()
        assert await env.cc(f"agent set uuid {A} 5b0c1e5e-dead-4000-8000-000000000002") == "+OK\n"
        rec = env.spawn(CallerSpec(queue=Q))
        fail = await env.wait_event(S.ACTION_BRIDGE_AGENT_FAIL)
        status = await env.wait_event(S.ACTION_AGENT_STATUS_CHANGE)
        assert status.get("CC-Agent-Status") == S.STATUS_LOGGED_OUT
        assert fail.get("CC-Hangup-Cause") == "NONE"
        row = agent_row(env)
        assert row["status"] == S.STATUS_LOGGED_OUT and row["uuid"] == ""
        assert row["state"] == S.STATE_WAITING and rec.outcome == "active"
        env.hangup_caller(rec)
        await finish(env)


# -- ring strategies -------------------------------------------------------------------------------

async def test_ring_progressively_adds_one_leg_per_delay_and_the_first_answer_wins():
    q = queue(("ring-progressively-delay", "1"), strategy="ring-progressively")
    agents = (agent("1@default", "sim/agent/p1") + agent("2@default", "sim/agent/p2")
              + agent("3@default", "sim/agent/p3"))
    tiers = tier("1@default", 1, 1) + tier("2@default", 1, 2) + tier("3@default", 1, 3)
    profiles = {
        "p1": AgentProfile("p1", outcome="no_answer"),
        "p2": AgentProfile("p2", outcome="no_answer"),
        "p3": AgentProfile("p3", ring_time=0.1, talk_time=0.05),
    }
    async with open_callcenter(conf(q, agents, tiers), profiles=profiles) as env:
        rec = env.spawn(CallerSpec(queue=Q))
        with trio.fail_after(4):
            await rec.done.wait()
        assert rec.outcome == "bridged"
        legs = env.legs()
        assert [leg.endpoint for leg in legs] == ["sim/agent/p1", "sim/agent/p2", "sim/agent/p3"]
        seconds = [int(env.epoch(leg.created)) for leg in legs]
        assert seconds[0] < seconds[1] < seconds[2]  # one new leg per second of delay
        p1, p2, p3 = legs
        # the earlier legs kept ringing until the winner answered, then lost the race
        assert p1.ended_at >= p3.answered_at and p2.ended_at >= p3.answered_at
        assert p1.cause == p2.cause == "LOSE_RACE" and rec.agent_uuid == p3.uuid
        ch = env.channel(rec.member_uuid)
        assert int(ch.vars["cc_last_originated_call"]) == seconds[2]
        rows = {a["name"]: a for a in env.core.rows("agents")}
        assert [rows[f"{n}@default"]["no_answer_count"] for n in (1, 2, 3)] == [0, 0, 0]
        await finish(env)


async def test_caller_hangup_while_ring_all_legs_ring_cancels_every_leg_at_once():
    q = queue(strategy="ring-all")
    agents = "".join(agent(f"{n}@default", f"sim/agent/r{n}") for n in (1, 2, 3))
    tiers = "".join(tier(f"{n}@default", 1, n) for n in (1, 2, 3))
    profiles = {f"r{n}": AgentProfile(f"r{n}", outcome="no_answer") for n in (1, 2, 3)}
    async with open_callcenter(conf(q, agents, tiers), profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        await env.wait_for(lambda: len(env.legs()) == 3 and all(l.ended_at is None for l in env.legs()))
        await trio.sleep(0.05)
        t0 = trio.current_time()
        env.hangup_caller(rec)
        await env.wait_for(lambda: all(l.ended_at is not None for l in env.legs()), timeout=1)
        assert max(l.ended_at for l in env.legs()) - t0 < 0.2
        assert {l.cause for l in env.legs()} == {"ORIGINATOR_CANCEL"}
        await env.wait_for(lambda: len(env.find_events(S.ACTION_BRIDGE_AGENT_FAIL)) == 3)
        assert {e.get("CC-Hangup-Cause") for e in env.find_events(S.ACTION_BRIDGE_AGENT_FAIL)} == {
            "ORIGINATOR_CANCEL"}
        assert all(a["no_answer_count"] == 0 and a["ready_time"] == 0 for a in env.core.rows("agents"))
        await finish(env)


# -- answer, announcement, recording, bridge -------------------------------------------------------

async def test_outbound_announce_is_played_to_the_agent_before_the_bridge():
    async with open_callcenter(one_agent(), profiles={"a1": AgentProfile("a1", talk_time=0.05)}) as env:
        rec = env.spawn(CallerSpec(queue=Q, variables={"cc_outbound_announce": "ARRAY::/s/one.wav::/s/two.wav"}))
        with trio.fail_after(3):
            await rec.done.wait()
        assert rec.outcome == "bridged"
        leg = env.legs()[0]
        casts = env.api_calls("uuid_broadcast")
        assert [a for _, a in casts] == [f"{leg.uuid} /s/one.wav aleg", f"{leg.uuid} /s/two.wav aleg"]
        bridge_at = env.api_calls("uuid_bridge")[0][0]
        # each file plays 0.1 s in the simulator, one after the other, and only then the bridge
        assert casts[1][0] - casts[0][0] >= 0.09 and bridge_at - casts[1][0] >= 0.09
        await finish(env)


async def test_record_template_is_expanded_and_recording_started_on_the_member():
    # uuid_record does not expand its path: channel variables, config globals and API calls
    # must all be resolved before it is sent (integration notes §8)
    q = queue(("record-template", "$${recordings_dir}/${strftime(%Y)}/${caller_id_number}-${uuid}.wav"))
    async with open_callcenter(one_agent(q=q), profiles={"a1": AgentProfile("a1", talk_time=0.05)}) as env:
        env.sim.switch.global_vars["recordings_dir"] = "/var/rec"
        rec = env.spawn(CallerSpec(queue=Q, cid_number="5551234"))
        with trio.fail_after(3):
            await rec.done.wait()
        path = f"/var/rec/{time.strftime('%Y')}/5551234-{rec.member_uuid}.wav"
        ch = env.channel(rec.member_uuid)
        assert ch.vars["cc_record_filename"] == path
        assert env.api_calls("uuid_record") and env.api_calls("uuid_record")[0][1] == f"{rec.member_uuid} start {path}"
        assert ch.vars["sim_record_path"] == path
        assert env.api_calls("uuid_record")[0][0] <= env.api_calls("uuid_bridge")[0][0]
        await finish(env)


async def test_agent_hanging_up_during_the_bridge_attempt_sends_the_member_back_to_waiting():
    # the announcement to the agent (0.5 s of silence) is the window in which the agent hangs up
    profiles = {"a1": AgentProfile("a1", talk_time=0.05)}
    async with open_callcenter(one_agent(), profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q, variables={"cc_outbound_announce": "silence_stream://500"}))
        first = await answered_leg(env)
        await trio.sleep(0.05)
        env.hangup(first.uuid)
        end = await env.wait_event(S.ACTION_BRIDGE_AGENT_END)
        assert end.get("CC-Agent-Bridged") == "false" and end.get("CC-Agent-UUID") == first.uuid
        # the member is offered again and bridged to a new leg of the agent
        with trio.fail_after(3):
            await rec.done.wait()
        assert rec.outcome == "bridged" and rec.agent_uuid != first.uuid
        assert len(env.legs()) == 2 and len(env.api_calls("uuid_bridge")) == 1
        await env.wait_event(S.ACTION_MEMBER_QUEUE_END, CC_Cause="Terminated")
        assert not env.find_events(S.ACTION_MEMBER_QUEUE_END, CC_Cause="Cancel")
        assert agent_row(env)["calls_answered"] == 1
        await finish(env)


# -- cancelling and breaking -----------------------------------------------------------------------

async def test_status_change_while_ringing_cancels_the_offer_without_penalty():
    profiles = {"deaf": AgentProfile("deaf", outcome="no_answer")}
    async with open_callcenter(one_agent("sim/agent/deaf", no_answer_delay_time="13"), profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        await env.wait_for(lambda: env.legs() and env.legs()[0].uuid in env.sim.switch.channels)
        assert await env.cc(f"agent set status {A} 'On Break'") == "+OK\n"
        fail = await env.wait_event(S.ACTION_BRIDGE_AGENT_FAIL, timeout=1)
        assert fail.get("CC-Hangup-Cause") == "ORIGINATOR_CANCEL"
        assert env.legs()[0].cause == "ORIGINATOR_CANCEL"
        row = agent_row(env)
        assert row["no_answer_count"] == 0 and row["ready_time"] == 0 and row["status"] == S.STATUS_ON_BREAK
        assert tier_row(env)["state"] == S.TIER_READY
        assert env.core.rows("members")[0]["state"] == S.MEMBER_WAITING and rec.outcome == "active"
        env.hangup_caller(rec)
        await finish(env)


async def test_callcenter_break_stops_watching_the_agent_channel_while_the_call_goes_on():
    profiles = {"a1": AgentProfile("a1")}  # talks until someone hangs up
    async with open_callcenter(one_agent(), profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q))
        await env.wait_event(S.ACTION_AGENT_STATE_CHANGE, CC_Agent_State=S.STATE_IN_A_QUEUE_CALL)
        leg = env.legs()[0]
        assert not env.find_events(S.ACTION_BRIDGE_AGENT_END)
        await env.control.api("callcenter_break", f"agent {leg.uuid}")
        await env.wait_event(S.ACTION_MEMBER_QUEUE_END, CC_Cause="Terminated", timeout=1)
        end = env.find_events(S.ACTION_BRIDGE_AGENT_END)[0]
        assert end.get("CC-Agent-Bridged") == "true"
        await env.wait_for(lambda: agent_row(env)["state"] == S.STATE_WAITING)
        assert env.core.rows("members") == []
        # the call itself continues
        assert env.channel(leg.uuid).alive and env.channel(rec.member_uuid).alive
        assert env.channel(rec.member_uuid).bridged is env.channel(leg.uuid)
        assert not env.service.offers
        env.hangup(leg.uuid)
        await finish(env)


async def test_callcenter_break_of_an_unknown_channel_is_an_error():
    async with open_callcenter(one_agent()) as env:
        out = await env.control.api("callcenter_break", "agent 5b0c1e5e-dead-4000-8000-00000000000f")
        assert out == "-ERR Session not found for uuid 5b0c1e5e-dead-4000-8000-00000000000f\n"
        assert await env.control.api("callcenter_break", "agent") == "-ERR Usage: callcenter_break agent <uuid>\n"


async def test_after_a_failed_bridge_the_member_waits_as_before_and_exit_keys_work_again():
    profiles = {"a1": AgentProfile("a1", ring_time=0.4, talk_time=0.05)}
    async with open_callcenter(one_agent(), profiles=profiles) as env:
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q, variables={"cc_outbound_announce": "silence_stream://400",
                                                       "cc_exit_keys": "9"}))
        first = await answered_leg(env)
        env.hangup(first.uuid)
        await env.wait_event(S.ACTION_BRIDGE_AGENT_END, CC_Agent_Bridged="false")
        await env.wait_for(lambda: len(env.legs()) == 2)  # offered again; this leg rings 0.4 s
        ch = env.channel(rec.member_uuid)
        assert "cc_agent_found" not in ch.vars
        env.sim.switch.send_dtmf(ch, "9")
        end = await env.wait_event(S.ACTION_MEMBER_QUEUE_END, timeout=1)
        assert end.get("CC-Cancel-Reason") == S.CANCEL_EXIT_WITH_KEY
        await env.wait_for(lambda: env.legs()[1].ended_at is not None, timeout=1)
        assert env.legs()[1].cause == "ORIGINATOR_CANCEL" and env.legs()[1].answered_at is None
        await finish(env)


async def test_caller_hanging_up_while_the_agent_hears_the_announcement_abandons_the_bridge():
    profiles = {"a1": AgentProfile("a1")}
    async with open_callcenter(one_agent(), profiles=profiles) as env:
        # the announcement is long enough that the hang-up lands inside it even on a loaded machine
        await env.watch_events()
        rec = env.spawn(CallerSpec(queue=Q, variables={
            "cc_outbound_announce": "silence_stream://1500",
            "cc_bridge_failed_outbound_announce": "/s/caller-left.wav"}))
        leg = await answered_leg(env)
        # hang up once ccfast knows the agent answered: its announcement to the agent has started
        await env.wait_for(lambda: env.api_calls("uuid_broadcast"), timeout=3)
        env.hangup_caller(rec)
        cancel = await env.wait_event(S.ACTION_MEMBER_QUEUE_END)
        # an agent had answered: the member leaves with reason NONE (§3.5)
        assert cancel.get("CC-Cause") == "Cancel" and cancel.get("CC-Cancel-Reason") == S.CANCEL_NONE
        end = await env.wait_event(S.ACTION_BRIDGE_AGENT_END, timeout=5)
        assert end.get("CC-Agent-Bridged") == "false"
        await env.wait_for(lambda: leg.ended_at is not None, timeout=5)
        assert leg.cause == "ORIGINATOR_CANCEL"
        casts = [a for _, a in env.api_calls("uuid_broadcast")]
        assert casts == [f"{leg.uuid} silence_stream://1500 aleg", f"{leg.uuid} /s/caller-left.wav aleg"]
        assert env.api_calls("uuid_bridge") == []
        assert env.channel(leg.uuid).vars.get("cc_agent_bridged") == "false"
        member = env.core.rows("members")[0]
        assert member["state"] == S.MEMBER_ABANDONED
        assert agent_row(env)["calls_answered"] == 0 and agent_row(env)["state"] == S.STATE_WAITING
        await finish(env)


async def test_wrap_up_time_holds_the_agent_then_the_next_caller_is_offered_without_polling():
    profiles = {"a1": AgentProfile("a1", talk_time=0.05)}
    async with open_callcenter(one_agent(wrap_up_time="1"), profiles=profiles) as env:
        await env.watch_events()
        first = env.spawn(CallerSpec(queue=Q))
        with trio.fail_after(3):
            await first.done.wait()
        second = env.spawn(CallerSpec(queue=Q, cid_number="5552000"))
        with trio.fail_after(4):
            await second.done.wait()
        assert first.outcome == second.outcome == "bridged"
        ends = env.find_events(S.ACTION_BRIDGE_AGENT_END)
        starts = env.find_events(S.ACTION_BRIDGE_AGENT_START)
        assert len(starts) == 2
        # offered at the first second after last_bridge_end + wrap_up_time (§4.5)
        assert int(starts[1].get("CC-Agent-Answered-Time")) >= int(ends[0].get("CC-Bridge-Terminated-Time")) + 2
        row = agent_row(env)
        assert row["calls_answered"] == 2 and row["last_bridge_end"] >= row["last_bridge_start"]
        passes = env.service.dispatcher.passes
        await trio.sleep(0.5)
        assert env.service.dispatcher.passes - passes <= 1  # asleep while nothing can change
        await finish(env)


async def test_a_caller_waiting_through_the_wrap_up_is_offered_when_it_ends():
    # the first call ends inside a step of the box link (an inline pass puts the agent in
    # wrap-up): the dispatch loop, asleep with no deadline while the agent talked, must get
    # the wrap-up's end as its new deadline
    profiles = {"a1": AgentProfile("a1", talk_time=0.05)}
    async with open_callcenter(one_agent(wrap_up_time="1"), profiles=profiles) as env:
        await env.watch_events()
        first = env.spawn(CallerSpec(queue=Q))
        second = env.spawn(CallerSpec(queue=Q, cid_number="5552000"))
        with trio.fail_after(5):
            await first.done.wait()
            await second.done.wait()
        assert first.outcome == second.outcome == "bridged"
        assert len(env.find_events(S.ACTION_BRIDGE_AGENT_START)) == 2
        await finish(env)
