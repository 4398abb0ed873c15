"""Offers (reference §5) end to end: ccfast originates agent legs on the simulated box over inbound ESL.

What the box was asked to do (originate arguments, api commands and their times) and what the
agent legs ended up with (channel variables, hang-up causes) is read from the simulator; the core's
rows and the control port's ``callcenter::info`` events show the results.
"""

from __future__ import annotations

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
    profiles = {"busy": AgentProfile("deaf", outcome="NO_ANSWER")}
    async with open_callcenter(one_agent("sim/agent/deaf", q=q, max_no_answer="1"),
                               profiles={"deaf": profiles["busy"]}) as env:
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
