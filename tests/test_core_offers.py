"""Offer results (§5.2, §5.5-§5.10): rows, counters, delays, events and journal."""

from __future__ import annotations

import pytest

from ccfast import strings as S
from ccfast.params import QueueParams
from tests.test_core_fixtures import T, actions, agent, agents_of, make, member, row, tier, tier_row

SB = S.SINGLE_BOX


def offered(queue_params=None, **agent_kw):
    """Queue q (+ other queue r where the agent also sits), one member m, agent a offered at T."""
    q = queue_params or QueueParams(name="q")
    core = make([q, QueueParams(name="r")], [agent("a", **agent_kw)], [tier("q", "a"), tier("r", "a")],
                [member("q", "m", T - 30)])
    core.drain_journal()
    core.drain_events()
    offers = core.dispatch(T)
    assert agents_of(offers) == ["a"]
    return core, offers[0]


# -- §5.9 row changes and events of a normal Callback offer ------------------------------------
def test_normal_offer_claim_and_offer_rows_and_events():
    core, o = offered()
    assert core.drain_journal() == [
        ("members", "update", ("m",), {"serving_agent": "a", "serving_system": SB, "state": S.MEMBER_TRYING}),
        ("agents", "update", ("a",), {"state": S.STATE_RECEIVING, "last_offered_call": T}),
        ("tiers", "update", ("q", "a"), {"state": S.TIER_OFFERING}),
        ("tiers", "update", ("r", "a"), {"state": S.TIER_STANDBY}),
    ]
    assert core.drain_events() == [
        (S.ACTION_AGENT_STATE_CHANGE, {"CC-Agent": "a", "CC-Action": S.ACTION_AGENT_STATE_CHANGE,
                                       "CC-Agent-State": S.STATE_RECEIVING}),
        (S.ACTION_AGENT_OFFERING, {
            "CC-Queue": "q", "CC-Action": S.ACTION_AGENT_OFFERING, "CC-Agent": "a", "CC-Agent-Type": S.TYPE_CALLBACK,
            "CC-Agent-System": SB, "CC-Member-UUID": "m", "CC-Member-Session-UUID": "sess-m",
            "CC-Member-CID-Name": "Caller", "CC-Member-CID-Number": "5551000"}),
    ]
    assert (o.queue, o.member_uuid, o.member_session_uuid, o.agent, o.agent_type, o.agent_contact, o.strategy,
            o.level, o.position, o.cid_number, o.cid_name, o.joined_epoch) == (
        "q", "m", "sess-m", "a", S.TYPE_CALLBACK, "user/a", S.LONGEST_IDLE_AGENT, 1, 1, "5551000", "Caller", T - 30)


def test_normal_offer_answer_bridge_and_hangup():
    core, o = offered(last_bridge_end=T - 500, talk_time=7, calls_answered=2, no_answer_count=1)
    core.drain_journal()
    core.drain_events()
    ans = core.offer_answered(o.offer_id, "leg-1", T + 3)
    assert ans.won and ans.cancel == []
    core.offer_bridged(o.offer_id, T + 4)
    assert core.drain_journal() == [
        ("members", "update", ("m",), {"state": S.MEMBER_ANSWERED, "bridge_epoch": T + 4}),
        ("agents", "update", ("a",), {"uuid": "leg-1", "last_bridge_start": T + 4, "calls_answered": 3,
                                      "no_answer_count": 0}),
        ("tiers", "update", ("q", "a"), {"state": S.TIER_ACTIVE_INBOUND}),
        ("agents", "update", ("a",), {"state": S.STATE_IN_A_QUEUE_CALL}),
    ]
    ev = core.drain_events()
    assert actions(ev) == [S.ACTION_BRIDGE_AGENT_START, S.ACTION_AGENT_STATE_CHANGE]
    assert ev[0][1] == {
        "CC-Queue": "q", "CC-Action": S.ACTION_BRIDGE_AGENT_START, "CC-Agent": "a", "CC-Agent-System": SB,
        "CC-Agent-UUID": "leg-1", "CC-Agent-Called-Time": str(T), "CC-Agent-Answered-Time": str(T + 3),
        "CC-Member-Joined-Time": str(T - 30), "CC-Member-UUID": "m", "CC-Member-Session-UUID": "sess-m",
        "CC-Member-CID-Name": "Caller", "CC-Member-CID-Number": "5551000"}
    core.member_answered_exit("m")
    assert core.queue_counters("q") == (1, 0)
    core.drain_events()
    core.offer_ended(o.offer_id, T + 64)
    assert core.drain_journal() == [
        ("agents", "update", ("a",), {"uuid": "", "last_bridge_end": T + 64, "talk_time": 7 + 60}),
        ("members", "delete", ("m",), {}),
        ("tiers", "update", ("q", "a"), {"state": S.TIER_READY}),
        ("tiers", "update", ("r", "a"), {"state": S.TIER_READY}),
        ("agents", "update", ("a",), {"state": S.STATE_WAITING}),
    ]
    ev = core.drain_events()
    assert actions(ev) == [S.ACTION_BRIDGE_AGENT_END, S.ACTION_MEMBER_QUEUE_END, S.ACTION_AGENT_STATE_CHANGE]
    assert list(ev[0][1]) == [
        "CC-Queue", "CC-Action", "CC-Hangup-Cause", "CC-Agent", "CC-Agent-System", "CC-Agent-UUID",
        "CC-Agent-Bridged", "CC-Agent-Called-Time", "CC-Agent-Answered-Time", "CC-Member-Joined-Time",
        "CC-Bridge-Terminated-Time", "CC-Member-UUID", "CC-Member-Session-UUID", "CC-Member-CID-Name",
        "CC-Member-CID-Number"]
    assert ev[0][1]["CC-Hangup-Cause"] == S.HANGUP_SUCCESS and ev[0][1]["CC-Agent-Bridged"] == "true"
    assert ev[1][1]["CC-Cause"] == S.CAUSE_TERMINATED and ev[1][1]["CC-Member-Leaving-Time"] == str(T + 64)
    assert row(core, "agents", "a")["state"] == S.STATE_WAITING


def test_no_answer_rows_and_events():
    core, o = offered(no_answer_delay_time=7)
    core.drain_journal()
    core.drain_events()
    core.offer_failed(o.offer_id, S.HANGUP_NO_ANSWER, T + 20)
    assert core.drain_journal() == [
        ("members", "update", ("m",), {"serving_agent": "", "serving_system": "", "state": S.MEMBER_WAITING}),
        ("agents", "update", ("a",), {"no_answer_count": 1}),
        ("agents", "update", ("a",), {"ready_time": T + 27, "instance_id": SB}),
        ("tiers", "update", ("q", "a"), {"state": S.TIER_NO_ANSWER}),
        ("tiers", "update", ("r", "a"), {"state": S.TIER_READY}),
        ("agents", "update", ("a",), {"state": S.STATE_WAITING}),
    ]
    ev = core.drain_events()
    assert actions(ev) == [S.ACTION_BRIDGE_AGENT_FAIL, S.ACTION_AGENT_STATE_CHANGE]
    assert ev[0][1] == {
        "CC-Queue": "q", "CC-Action": S.ACTION_BRIDGE_AGENT_FAIL, "CC-Hangup-Cause": S.HANGUP_NO_ANSWER,
        "CC-Agent": "a", "CC-Agent-System": SB, "CC-Agent-Called-Time": str(T),
        "CC-Agent-Aborted-Time": str(T + 20), "CC-Member-UUID": "m", "CC-Member-Session-UUID": "sess-m",
        "CC-Member-CID-Name": "Caller", "CC-Member-CID-Number": "5551000", "CC-Member-Joined-Time": str(T - 30)}
    # the member is offered again once the agent's delay is over (No Answer tiers are offerable)
    assert core.dispatch(T + 26) == []
    assert agents_of(core.dispatch(T + 27)) == ["a"]


# -- §5.7 causes -------------------------------------------------------------------------------
@pytest.mark.parametrize("cause, delay, tier_state, counted", [
    (S.HANGUP_LOSE_RACE, 0, S.TIER_READY, False),
    (S.HANGUP_ORIGINATOR_CANCEL, 0, S.TIER_READY, False),
    (S.HANGUP_USER_BUSY, 11, S.TIER_READY, False),
    (S.HANGUP_NORMAL_CIRCUIT_CONGESTION, 11, S.TIER_READY, False),
    (S.HANGUP_CALL_REJECTED, 13, S.TIER_READY, False),
    (S.HANGUP_USER_NOT_REGISTERED, 5, S.TIER_READY, False),
    (S.HANGUP_NO_ANSWER, 17, S.TIER_NO_ANSWER, True),
    (S.HANGUP_ALLOTTED_TIMEOUT, 17, S.TIER_NO_ANSWER, True),
    ("SUBSCRIBER_ABSENT", 17, S.TIER_NO_ANSWER, True),
])
def test_failure_delays(cause, delay, tier_state, counted):
    core, o = offered(busy_delay_time=11, reject_delay_time=13, no_answer_delay_time=17)
    core.offer_failed(o.offer_id, cause, T + 2)
    a = row(core, "agents", "a")
    assert a["ready_time"] == (T + 2 + delay if delay else 0)
    assert a["no_answer_count"] == (1 if counted else 0)
    assert tier_row(core, "q", "a")["state"] == tier_state
    if delay:
        assert core.next_change(T + 2) == T + 2 + delay


def test_max_no_answer_sets_the_queue_status_through_the_status_path():
    q = QueueParams(name="q", agent_no_answer_status=S.STATUS_ON_BREAK)
    core, o = offered(q, max_no_answer=2, no_answer_count=1)
    core.drain_events()
    core.offer_failed(o.offer_id, S.HANGUP_NO_ANSWER, T + 5)
    ev = core.drain_events()
    assert actions(ev) == [S.ACTION_AGENT_MAX_NO_ANSWER, S.ACTION_AGENT_STATUS_CHANGE, S.ACTION_BRIDGE_AGENT_FAIL,
                           S.ACTION_AGENT_STATE_CHANGE]
    assert ev[0][1] == {"CC-Agent": "a", "CC-Action": S.ACTION_AGENT_MAX_NO_ANSWER,
                        "CC-Agent-No-Answer-Count": "2",  # the threshold, not the counter (W18)
                        "CC-Agent-No-Answer-Status": S.STATUS_ON_BREAK, "CC-Member-UUID": "m",
                        "CC-Member-Session-UUID": "sess-m"}
    a = row(core, "agents", "a")
    assert (a["status"], a["no_answer_count"], a["last_status_change"]) == (S.STATUS_ON_BREAK, 2, T + 5)


def test_max_no_answer_to_available_resets_the_counters():
    q = QueueParams(name="q", agent_no_answer_status="available")  # valid, written canonically
    core, o = offered(q, max_no_answer=1, status=S.STATUS_AVAILABLE_ON_DEMAND, calls_answered=4, talk_time=9)
    core.offer_failed(o.offer_id, S.HANGUP_NO_ANSWER, T + 5)
    a = row(core, "agents", "a")
    assert (a["status"], a["no_answer_count"], a["calls_answered"], a["talk_time"]) == (
        S.STATUS_AVAILABLE, 0, 0, 0)


def test_no_max_no_answer_below_threshold():
    core, o = offered(max_no_answer=3, no_answer_count=1)
    core.offer_failed(o.offer_id, S.HANGUP_NO_ANSWER, T + 5)
    assert S.ACTION_AGENT_MAX_NO_ANSWER not in actions(core.drain_events())
    assert row(core, "agents", "a")["status"] == S.STATUS_AVAILABLE


# -- On Demand -------------------------------------------------------------------------------
def test_on_demand_agent_goes_idle_after_a_bridged_call():
    core, o = offered(status=S.STATUS_AVAILABLE_ON_DEMAND)
    core.offer_answered(o.offer_id, "leg", T + 1)
    core.offer_bridged(o.offer_id, T + 1)
    core.offer_ended(o.offer_id, T + 9)
    assert row(core, "agents", "a")["state"] == S.STATE_IDLE
    core.load_rows("members", [member("q", "m2", T)])
    assert core.dispatch(T + 20) == []


def test_on_demand_agent_stays_waiting_after_a_failed_offer():
    core, o = offered(status=S.STATUS_AVAILABLE_ON_DEMAND)
    core.offer_failed(o.offer_id, S.HANGUP_NO_ANSWER, T + 1)
    assert row(core, "agents", "a")["state"] == S.STATE_WAITING


# -- W7: ring-all answer race ----------------------------------------------------------------
def test_w7_a_leg_answering_after_the_race_is_lost_is_cancelled_not_idle():
    agents = [agent("a"), agent("b", status=S.STATUS_AVAILABLE_ON_DEMAND)]
    core = make([("q", S.RING_ALL)], agents, [tier("q", "a"), tier("q", "b")], [member("q", "m", T - 5)])
    oa, ob = core.dispatch(T)
    assert core.offer_answered(oa.offer_id, "leg-a", T + 1).won
    lost = core.offer_answered(ob.offer_id, "leg-b", T + 1)
    assert not lost.won and lost.cancel == []
    b = row(core, "agents", "b")
    assert b["state"] == S.STATE_WAITING  # mod_callcenter: left connected, and Idle for On Demand
    assert tier_row(core, "q", "b")["state"] == S.TIER_READY
    assert core.agent_offer("b") is None


# -- W8 and bridge failures -------------------------------------------------------------------
def test_bridge_failed_agent_gone_puts_the_member_back_to_waiting_with_serving_cleared():
    core, o = offered()
    core.offer_answered(o.offer_id, "leg", T + 1)
    core.offer_bridge_failed(o.offer_id, False, T + 2)
    m = row(core, "members", "m")
    assert (m["state"], m["serving_agent"], m["serving_system"]) == (S.MEMBER_WAITING, "", "")
    assert S.ACTION_BRIDGE_AGENT_END in actions(core.drain_events())
    assert agents_of(core.dispatch(T + 3)) == ["a"]


def test_w8_ring_all_member_is_dispatched_again_after_the_agent_leg_vanished():
    core = make([("q", S.RING_ALL)], [agent("a"), agent("b")], [tier("q", "a"), tier("q", "b")],
                [member("q", "m", T - 5)])
    oa, ob = core.dispatch(T)
    ans = core.offer_answered(oa.offer_id, "leg-a", T + 1)
    core.offer_failed(ob.offer_id, ans.cancel[0].cause, T + 1)
    core.offer_bridge_failed(oa.offer_id, False, T + 2)
    m = row(core, "members", "m")
    assert (m["state"], m["serving_agent"]) == (S.MEMBER_WAITING, S.RING_ALL)  # module keeps serving_agent=a
    assert sorted(agents_of(core.dispatch(T + 2))) == ["a", "b"]
    m = row(core, "members", "m")
    assert (m["state"], m["serving_agent"]) == (S.MEMBER_TRYING, S.RING_ALL)


def test_bridge_failed_member_gone_abandons_the_row():
    core, o = offered()
    core.offer_answered(o.offer_id, "leg", T + 1)
    core.offer_bridge_failed(o.offer_id, True, T + 2)
    m = row(core, "members", "m")
    assert (m["state"], m["session_uuid"], m["abandoned_epoch"]) == (S.MEMBER_ABANDONED, "", T + 2)
    assert row(core, "agents", "a")["state"] == S.STATE_WAITING


def test_member_gone_when_the_offer_starts():
    core, o = offered()
    core.drain_events()
    core.offer_member_gone(o.offer_id, T + 1)
    m = row(core, "members", "m")
    assert (m["state"], m["abandoned_epoch"]) == (S.MEMBER_ABANDONED, T + 1)
    assert actions(core.drain_events()) == [S.ACTION_AGENT_STATE_CHANGE]  # no bridge-agent-fail
    assert tier_row(core, "q", "a")["state"] == S.TIER_READY


# -- §5.10 and member cancel -------------------------------------------------------------------
@pytest.mark.parametrize("status", [S.STATUS_ON_BREAK, S.STATUS_LOGGED_OUT, S.STATUS_AVAILABLE_ON_DEMAND])
def test_status_change_cancels_the_ringing_leg(status):
    core, o = offered()
    cancels = core.agent_set("status", "a", status, T + 1)
    assert [(c.offer_id, c.agent, c.cause) for c in cancels] == [(o.offer_id, "a", S.HANGUP_ORIGINATOR_CANCEL)]
    core.offer_failed(o.offer_id, S.HANGUP_ORIGINATOR_CANCEL, T + 1)
    m = row(core, "members", "m")
    assert (m["state"], m["serving_agent"]) == (S.MEMBER_WAITING, "")


def test_status_available_does_not_cancel():
    core, o = offered()
    assert core.agent_set("status", "a", S.STATUS_AVAILABLE, T + 1) == []


def test_member_cancel_abandons_and_cancels_ringing_legs():
    core = make([("q", S.RING_ALL)], [agent("a"), agent("b")], [tier("q", "a"), tier("q", "b")])
    core.member_join("q", "m", "chan-m", "5551000", "", T - 3, 0, T)
    offers = core.dispatch(T)
    core.drain_events()
    cancels = core.member_cancel("m", S.CANCEL_BREAK_OUT, T + 4)
    assert sorted((c.agent, c.cause) for c in cancels) == [("a", S.HANGUP_ORIGINATOR_CANCEL),
                                                           ("b", S.HANGUP_ORIGINATOR_CANCEL)]
    ev = core.drain_events()
    assert ev == [
        (S.ACTION_MEMBER_QUEUE_END, {
            "CC-Queue": "q", "CC-Action": S.ACTION_MEMBER_QUEUE_END, "CC-Member-Leaving-Time": str(T + 4),
            "CC-Member-Joined-Time": str(T), "CC-Cause": S.CAUSE_CANCEL, "CC-Cancel-Reason": S.CANCEL_BREAK_OUT,
            "CC-Member-UUID": "m", "CC-Member-Session-UUID": "chan-m", "CC-Member-CID-Number": "5551000"}),
        (S.ACTION_MEMBERS_COUNT, {"CC-Queue": "q", "CC-Action": S.ACTION_MEMBERS_COUNT, "CC-Count": "0",
                                  "CC-Selection": "Single-Queue"}),
    ]
    assert core.queue_counters("q") == (0, 1)
    for o in offers:
        core.offer_failed(o.offer_id, S.HANGUP_ORIGINATOR_CANCEL, T + 4)
    assert {r["name"]: r["state"] for r in core.rows("agents")} == {"a": S.STATE_WAITING, "b": S.STATE_WAITING}


def test_results_for_an_unknown_or_finished_offer_are_refused():
    core, o = offered()
    core.offer_failed(o.offer_id, S.HANGUP_NO_ANSWER, T + 1)
    from ccfast._core import CoreError
    with pytest.raises(CoreError, match="not live"):
        core.offer_failed(o.offer_id, S.HANGUP_NO_ANSWER, T + 1)
    with pytest.raises(CoreError, match="not live"):
        core.offer_answered(999, "x", T)
