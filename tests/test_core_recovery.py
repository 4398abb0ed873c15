"""Crash recovery / re-adoption at the core level (issue 5 §2): the rows of a core mid-traffic are
loaded into a new core with ``load_recovered``; callers whose channel comes back (same session
uuid) resume their original row and position; the others are Abandoned and discarded; no agent is
left in a state nothing will end."""

from __future__ import annotations

import pytest

from ccfast import strings as S
from ccfast._core import Core
from ccfast.params import QueueParams
from tests.test_core_fixtures import T, agent, agents_of, member, row, tier, tier_row

Q = QueueParams(name="q", discard_abandoned_after=60)  # abandoned-resume-allowed is false


def consistent(core: Core, now: int) -> None:
    nc = core.next_change(now)
    assert core._selfcheck() == []
    assert nc == core._scan_next_change(now)


def busy_core(q: QueueParams = Q, reserve: bool = False) -> Core:
    """A core mid-traffic: m0 bridged to a, m1 ringing b, m2 and m3 waiting, a third agent c in
    another queue with an external call."""
    core = Core(S.SINGLE_BOX, reserve, 7)
    core.queue_set(q)
    core.queue_set(QueueParams(name="other"))
    core.load_rows("agents", [agent("a", last_bridge_end=T - 300), agent("b", last_bridge_end=T - 200),
                              agent("c", external_calls_count=1)])
    core.load_rows("tiers", [tier("q", "a"), tier("q", "b"), tier("other", "a"), tier("other", "c")])
    for i, uuid in enumerate(["m0", "m1", "m2", "m3"]):
        core.member_join("q", uuid, f"chan-{uuid}", f"55{i}", "Caller", T - 40 + 10 * i, 0, T - 40 + 10 * i)
    offers = core.dispatch(T)
    assert [(o.member_uuid, o.agent) for o in offers] == [("m0", "a"), ("m1", "b")]
    core.offer_answered(offers[0].offer_id, "leg-a", T + 1)
    core.offer_bridged(offers[0].offer_id, T + 1)
    return core


def crash(core: Core) -> dict:
    return {t: core.rows(t) for t in ("agents", "tiers", "members")}


def restart(rows: dict, now: int, q: QueueParams = Q, **kw) -> Core:
    core = Core(S.SINGLE_BOX, False, 7)
    core.queue_set(q)
    core.queue_set(QueueParams(name="other"))
    core.load_recovered(rows, now, **kw)
    return core


def test_recovery_returns_every_agent_and_tier_to_a_definite_state_and_abandons_members():
    old = busy_core()
    rows = crash(old)
    assert {r["name"]: r["state"] for r in rows["agents"]} == {
        "a": S.STATE_IN_A_QUEUE_CALL, "b": S.STATE_RECEIVING, "c": S.STATE_WAITING}
    core = Core(S.SINGLE_BOX, False, 7)
    core.queue_set(Q)
    core.queue_set(QueueParams(name="other"))
    counts = core.load_recovered(rows, T + 5)
    assert counts == {"agents_reset": 3, "tiers_reset": 3, "readopt": 3, "abandoned": 4}
    agents = {r["name"]: r for r in core.rows("agents")}
    assert {n: (r["state"], r["uuid"], r["external_calls_count"]) for n, r in agents.items()} == {
        "a": (S.STATE_WAITING, "", 0), "b": (S.STATE_WAITING, "", 0), "c": (S.STATE_WAITING, "", 0)}
    assert {(r["queue"], r["agent"]): r["state"] for r in core.rows("tiers")} == {
        ("q", "a"): S.TIER_READY, ("q", "b"): S.TIER_READY, ("other", "a"): S.TIER_READY,
        ("other", "c"): S.TIER_READY}
    members = {r["uuid"]: r for r in core.rows("members")}
    assert {u: (r["state"], r["session_uuid"], r["abandoned_epoch"]) for u, r in members.items()} == {
        "m0": (S.MEMBER_ABANDONED, "", 0),  # bridged at the crash: §1.5 exactly
        "m1": (S.MEMBER_ABANDONED, "", T + 5), "m2": (S.MEMBER_ABANDONED, "", T + 5),
        "m3": (S.MEMBER_ABANDONED, "", T + 5)}
    # m1 was Trying (ringing b) and has a channel: re-adoptable like m2, m3; m0 (bridged) is not
    assert core.readopt_sessions(T + 5) == {"chan-m1": "m1", "chan-m2": "m2", "chan-m3": "m3"}
    # the journal carries the reset to the database; no events
    j = core.drain_journal()
    assert ("agents", "update", ("b",), {"state": S.STATE_WAITING}) in j
    assert ("agents", "update", ("a",), {"state": S.STATE_WAITING, "uuid": ""}) in j
    assert ("members", "update", ("m2",), {"state": S.MEMBER_ABANDONED, "session_uuid": "",
                                           "abandoned_epoch": T + 5}) in j
    assert ("members", "update", ("m0",), {"state": S.MEMBER_ABANDONED, "session_uuid": ""}) in j
    assert core.drain_events() == []
    consistent(core, T + 5)


def test_caller_whose_channel_comes_back_resumes_its_position_and_join_time():
    core = restart(crash(busy_core()), T + 5)
    core.drain_journal()
    # m3 comes back first, then m2; both resume their own rows although resume is not allowed
    j3 = core.member_join("q", "new-uuid-3", "chan-m3", "553", "Caller", T + 6, 0, T + 6)
    j2 = core.member_join("q", "new-uuid-2", "chan-m2", "552", "Caller", T + 7, 0, T + 7)
    assert (j3.member_uuid, j3.resumed, j3.joined_epoch) == ("m3", True, T - 10)
    assert (j2.member_uuid, j2.resumed, j2.joined_epoch) == ("m2", True, T - 20)
    r2 = row(core, "members", "m2")
    assert (r2["state"], r2["session_uuid"], r2["abandoned_epoch"], r2["rejoined_epoch"], r2["joined_epoch"]) == (
        S.MEMBER_WAITING, "chan-m2", 0, 0, T - 20)
    assert [r["uuid"] for r in core.rows("members")] == ["m0", "m1", "m2", "m3"]  # creation order kept
    assert ("members", "update", ("m2",), {"session_uuid": "chan-m2", "state": S.MEMBER_WAITING,
                                           "serving_agent": "", "serving_system": "", "abandoned_epoch": 0,
                                           "instance_id": S.SINGLE_BOX}) in core.drain_journal()
    assert [a for a, _ in core.drain_events()] == [S.ACTION_MEMBER_QUEUE_RESUME, S.ACTION_MEMBERS_COUNT] * 2
    assert core.member_count("q") == 2
    # one agent: m2 (joined earlier) goes first although m3 came back first -- original order
    core.agent_set("status", "b", S.STATUS_ON_BREAK, T + 8)
    assert [(o.member_uuid, o.agent) for o in core.dispatch(T + 8)] == [("m2", "a")]
    consistent(core, T + 8)
    assert "chan-m2" not in core.readopt_sessions(T + 8)


def test_readopted_member_keeps_its_max_wait_clock():
    q = QueueParams(name="q", discard_abandoned_after=60, max_wait_time=45)
    core = restart(crash(busy_core(q)), T + 5, q)
    core.member_join("q", "x", "chan-m2", "552", "Caller", T + 6, 0, T + 6)  # joined T - 20
    assert core.member_timeouts(T + 24) == []
    assert [t.member_uuid for t in core.member_timeouts(T + 25)] == ["m2"]  # T - 20 + 45


def test_member_whose_channel_never_comes_back_is_discarded_after_the_window():
    core = restart(crash(busy_core()), T + 5)
    core.drain_journal()
    assert core.discard_abandoned(T + 21) == ["m0"]  # bridged at the crash: from its joined_epoch
    assert core.next_change(T + 21) == T + 66
    assert core.discard_abandoned(T + 65) == []
    assert sorted(core.discard_abandoned(T + 66)) == ["m1", "m2", "m3"]
    assert core.readopt_sessions(T + 66) == {}
    # too late: the same channel now gets a fresh row
    j = core.member_join("q", "late", "chan-m2", "552", "Caller", T + 67, 0, T + 67)
    assert (j.member_uuid, j.resumed) == ("late", False)
    consistent(core, T + 67)


def test_bridged_member_row_is_discarded_from_its_join_time_as_with_mod_callcenter():
    core = restart(crash(busy_core()), T + 5)
    assert core.discard_abandoned(T + 20) == []
    assert core.discard_abandoned(T + 21) == ["m0"]  # abandoned_epoch 0: joined T - 40, + 60 + 1


def test_shorter_window_expires_readoption_but_not_the_discard():
    core = restart(crash(busy_core()), T + 5, readopt_window=10)
    assert core.readopt_sessions(T + 15) == {"chan-m1": "m1", "chan-m2": "m2", "chan-m3": "m3"}
    assert core.readopt_sessions(T + 16) == {}
    j = core.member_join("q", "fresh", "chan-m3", "553", "Caller", T + 16, 0, T + 16)
    assert j.resumed is False
    assert sorted(core.discard_abandoned(T + 66)) == ["m0", "m1", "m2", "m3"]


def test_longer_window_delays_the_discard():
    core = restart(crash(busy_core()), T + 5, readopt_window=100)
    assert core.discard_abandoned(T + 66) == ["m0"]
    consistent(core, T + 66)
    assert core.next_change(T + 66) == T + 106
    j = core.member_join("q", "x", "chan-m1", "551", "Caller", T + 105, 0, T + 105)
    assert (j.member_uuid, j.resumed) == ("m1", True)
    assert sorted(core.discard_abandoned(T + 106)) == ["m2", "m3"]


def test_forgotten_channel_is_not_readopted_and_is_discarded_on_time():
    core = restart(crash(busy_core()), T + 5, readopt_window=300)
    assert core.readopt_forget("chan-m2") is True
    assert core.readopt_forget("chan-m2") is False
    assert "m2" in core.discard_abandoned(T + 66)
    j = core.member_join("q", "y", "chan-m3", "553", "Caller", T + 70, 0, T + 70)
    assert j.resumed  # the others still wait
    consistent(core, T + 70)


def test_same_channel_in_another_queue_is_a_fresh_join():
    core = restart(crash(busy_core()), T + 5)
    j = core.member_join("other", "o1", "chan-m2", "552", "Caller", T + 6, 0, T + 6)
    assert (j.member_uuid, j.resumed) == ("o1", False)
    assert "chan-m2" not in core.readopt_sessions(T + 6)
    assert row(core, "members", "m2")["state"] == S.MEMBER_ABANDONED


def test_resume_allowed_queue_can_resume_a_recovered_row_by_caller_id():
    q = QueueParams(name="q", discard_abandoned_after=60, abandoned_resume_allowed=True)
    core = restart(crash(busy_core(q)), T + 5, q)
    j = core.member_join("q", "z", "a-new-channel", "552", "Caller", T + 6, 0, T + 6)
    assert (j.member_uuid, j.resumed) == ("m2", True)  # abandoned_epoch is set now, so it is resumable
    assert "chan-m2" not in core.readopt_sessions(T + 6)


def test_ring_all_member_is_readopted_with_its_marker_and_dispatched():
    q = QueueParams(name="q", strategy=S.RING_ALL, discard_abandoned_after=60)
    old = Core(S.SINGLE_BOX, False, 7)
    old.queue_set(q)
    old.load_rows("agents", [agent("a", status=S.STATUS_ON_BREAK)])
    old.load_rows("tiers", [tier("q", "a")])
    old.member_join("q", "m1", "chan-1", "1", "n", T, 0, T)
    old.dispatch(T)
    assert row(old, "members", "m1")["state"] == S.MEMBER_TRYING
    core = Core(S.SINGLE_BOX, False, 7)
    core.queue_set(q)
    core.load_recovered(crash(old), T + 5)
    core.member_join("q", "x", "chan-1", "1", "n", T + 6, 0, T + 6)
    core.agent_set("status", "a", S.STATUS_AVAILABLE, T + 6)
    assert agents_of(core.dispatch(T + 6)) == ["a"]
    assert (row(core, "members", "m1")["state"], row(core, "members", "m1")["serving_agent"]) == (
        S.MEMBER_TRYING, S.RING_ALL)


def test_agent_recovery_details():
    rows = {
        "agents": [
            agent("r", state=S.STATE_RESERVED), agent("i", state=S.STATE_IDLE),
            agent("s", type=S.TYPE_UUID_STANDBY, uuid="standby-chan", state=S.STATE_IN_A_QUEUE_CALL),
            agent("x", instance_id="elsewhere", state=S.STATE_RECEIVING),
            agent("rl", state="receiving"),
        ],
        "tiers": [tier("q", "r", state=S.TIER_STANDBY), tier("q", "i", state=S.TIER_NO_ANSWER),
                  tier("q", "s", state=S.TIER_ACTIVE_INBOUND), tier("q", "x", state=S.TIER_OFFERING)],
        "members": [member("q", "other-box", T, instance_id="box2")],
    }
    core = restart(rows, T)
    states = {r["name"]: (r["state"], r["uuid"]) for r in core.rows("agents")}
    assert states == {"r": (S.STATE_WAITING, ""), "i": (S.STATE_IDLE, ""), "s": (S.STATE_WAITING, "standby-chan"),
                      "x": (S.STATE_RECEIVING, ""), "rl": (S.STATE_WAITING, "")}
    assert {r["agent"]: r["state"] for r in core.rows("tiers")} == {
        "r": S.TIER_READY, "i": S.TIER_NO_ANSWER, "s": S.TIER_READY, "x": S.TIER_OFFERING}
    assert row(core, "members", "other-box")["state"] == S.MEMBER_WAITING  # another instance's row
    # a cluster node does not reset shared agents
    core2 = restart(rows, T, reset_agents=False)
    assert row(core2, "agents", "r")["state"] == S.STATE_RESERVED
    assert tier_row(core2, "q", "r")["state"] == S.TIER_STANDBY


def test_no_agent_is_stuck_after_recovery():
    core = restart(crash(busy_core()), T + 5)
    core.member_join("q", "n1", "c1", "1", "n", T + 6, 0, T + 6)
    core.member_join("q", "n2", "c2", "2", "n", T + 6, 0, T + 6)
    assert sorted(agents_of(core.dispatch(T + 6))) == ["a", "b"]
    consistent(core, T + 6)


def test_bad_input():
    with pytest.raises(ValueError):
        Core().load_recovered({"nope": []}, T)
    with pytest.raises(ValueError):
        Core().load_recovered({}, T, readopt_window=-1)
