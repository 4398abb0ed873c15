"""Core additions for several ccfast nodes (docs/cluster.md): offer_withdrawn, agent_hold,
agent_apply / tier_apply, queue_suspend. Each step also checks the incremental state against a
recomputation (``_selfcheck``) and next_change against a scan."""

from __future__ import annotations

import pytest

from ccfast import strings as S
from ccfast._core import Core, CoreError
from ccfast.params import QueueParams
from tests.test_core_fixtures import T, actions, agent, agents_of, join, make, member, row, tier, tier_row


def consistent(core: Core, now: int) -> None:
    nc = core.next_change(now)
    assert core._selfcheck() == []
    assert nc == core._scan_next_change(now)


def snapshot(core: Core) -> dict:
    return {t: core.rows(t) for t in ("agents", "tiers", "members")}


# -- offer_withdrawn ----------------------------------------------------------------------------
def test_withdrawn_offer_of_a_held_agent_restores_every_row_silently():
    core = make([("q", S.LONGEST_IDLE_AGENT), "other"],
                [agent("a", last_bridge_end=T - 100, last_offered_call=T - 500),
                 agent("b", last_bridge_end=T - 50)],
                [tier("q", "a"), tier("q", "b"), tier("other", "a")], [member("q", "m1", T - 10)])
    before = snapshot(core)
    [o] = core.dispatch(T)
    assert o.agent == "a"
    assert tier_row(core, "other", "a")["state"] == S.TIER_STANDBY
    core.drain_journal()
    core.drain_events()
    core.agent_hold("a", True)
    core.offer_withdrawn(o.offer_id, T)
    assert snapshot(core) == before
    assert core.drain_events() == []
    assert core.drain_journal() == [("members", "update", ("m1",),
                                     {"state": S.MEMBER_WAITING, "serving_agent": "", "serving_system": ""})]
    assert core.live_offers() == [] and core.agent_offer("a") is None
    consistent(core, T)
    # the member is offered to the next candidate at once; the held agent is skipped
    assert agents_of(core.dispatch(T)) == ["b"]
    consistent(core, T)


def test_withdrawn_offer_not_held_journals_the_restoration_and_compensates_the_state_event():
    core = make(["q", "other"], [agent("a", last_offered_call=T - 500)],
                [tier("q", "a"), tier("other", "a")], [member("q", "m1", T - 10)])
    [o] = core.dispatch(T)
    core.drain_journal()
    assert actions(core.drain_events()) == [S.ACTION_AGENT_STATE_CHANGE, S.ACTION_AGENT_OFFERING]
    core.offer_withdrawn(o.offer_id, T, held_elsewhere=False)
    j = core.drain_journal()
    assert ("agents", "update", ("a",), {"state": S.STATE_WAITING, "last_offered_call": T - 500}) in j
    assert ("tiers", "update", ("q", "a"), {"state": S.TIER_READY}) in j
    assert ("tiers", "update", ("other", "a"), {"state": S.TIER_READY}) in j
    assert core.drain_events() == [(S.ACTION_AGENT_STATE_CHANGE, {
        "CC-Agent": "a", "CC-Action": S.ACTION_AGENT_STATE_CHANGE, "CC-Agent-State": S.STATE_WAITING})]
    # not held: the same agent is offered again (the service holds it when another node does)
    assert agents_of(core.dispatch(T + 1)) == ["a"]


def test_withdrawn_offer_has_no_penalty_and_keeps_no_answer_and_manual_standby_exactly():
    core = make(["q", "x", "y"], [agent("a", no_answer_delay_time=30, max_no_answer=1, state="waiting")],
                [tier("q", "a", state=S.TIER_NO_ANSWER), tier("x", "a"), tier("y", "a", state=S.TIER_STANDBY)],
                [member("q", "m1", T - 10)])
    before = snapshot(core)
    [o] = core.dispatch(T)
    assert tier_row(core, "x", "a")["state"] == S.TIER_STANDBY
    core.agent_hold("a", True)
    core.offer_withdrawn(o.offer_id, T)
    after = snapshot(core)
    assert after == before  # "No Answer" kept, manual Standby in y kept, state spelled as it was
    assert row(core, "agents", "a")["ready_time"] == 0 and row(core, "agents", "a")["no_answer_count"] == 0
    consistent(core, T)


def test_withdrawn_offer_with_reserve_agents_returns_to_the_state_before_the_reservation():
    core = make(["q"], [agent("a")], [tier("q", "a")], [member("q", "m1", T - 10)], reserve=True)
    [o] = core.dispatch(T)
    assert actions(core.drain_events())[:2] == [S.ACTION_AGENT_STATE_CHANGE, S.ACTION_AGENT_STATE_CHANGE]
    core.offer_withdrawn(o.offer_id, T, held_elsewhere=False)
    assert row(core, "agents", "a")["state"] == S.STATE_WAITING
    assert [h["CC-Agent-State"] for _, h in core.drain_events()] == [S.STATE_WAITING]


def test_withdrawn_ring_all_leg_leaves_the_member_and_the_other_legs_alone():
    core = make([("q", S.RING_ALL)], [agent("a"), agent("b")], [tier("q", "a"), tier("q", "b")],
                [member("q", "m1", T - 10, serving_agent=S.RING_ALL)])
    offers = core.dispatch(T)
    assert sorted(agents_of(offers)) == ["a", "b"]
    oa = next(o for o in offers if o.agent == "a")
    ob = next(o for o in offers if o.agent == "b")
    core.agent_hold("a", True)
    core.offer_withdrawn(oa.offer_id, T)
    m = row(core, "members", "m1")
    assert (m["state"], m["serving_agent"]) == (S.MEMBER_TRYING, S.RING_ALL)
    assert [o.offer_id for o in core.member_offers("m1")] == [ob.offer_id]
    assert core.offer_answered(ob.offer_id, "leg-b", T + 1).won
    consistent(core, T + 1)


def test_withdrawn_ring_progressively_offer_does_not_hold_the_member_behind_the_delay():
    q = QueueParams(name="q", strategy=S.RING_PROGRESSIVELY, ring_progressively_delay=10)
    core = make([q], [agent("a"), agent("b")], [tier("q", "a"), tier("q", "b", position=2)],
                [member("q", "m1", T - 10, serving_agent=S.RING_PROGRESSIVELY)])
    core.member_join("q", "m2", "chan-2", "1", "n", T, 0, T)  # a channel: ring-progressively variables
    core.member_cancel("m1", S.CANCEL_BREAK_OUT, T)
    [o] = core.dispatch(T)
    assert (o.member_uuid, o.agent) == ("m2", "a")
    assert core.dispatch(T + 1) == []  # gated for 10 s (b would be the next leg)
    core.agent_hold("a", True)
    core.offer_withdrawn(o.offer_id, T + 1)
    assert [(x.member_uuid, x.agent) for x in core.dispatch(T + 1)] == [("m2", "b")]
    consistent(core, T + 1)


def test_withdrawn_top_down_offer_restores_the_pointer():
    core = make([("q", S.TOP_DOWN)], [agent("a"), agent("b"), agent("c")],
                [tier("q", "a", position=1), tier("q", "b", position=2), tier("q", "c", position=3)])
    core.member_join("q", "m1", "chan-1", "1", "n", T, 0, T)
    [o] = core.dispatch(T)
    assert o.agent == "a"
    core.offer_failed(o.offer_id, S.HANGUP_ORIGINATOR_CANCEL, T)  # pointer now after a
    [o] = core.dispatch(T + 1)
    assert o.agent == "b"
    core.offer_withdrawn(o.offer_id, T + 1, held_elsewhere=False)
    # pointer back after a: b is the next again (it is not held here)
    assert agents_of(core.dispatch(T + 2)) == ["b"]


def test_withdrawn_round_robin_offer_does_not_move_the_pointer():
    core = make([("q", S.ROUND_ROBIN)], [agent("a", last_offered_call=T - 100), agent("b"), agent("c")],
                [tier("q", "a", position=1), tier("q", "b", position=2), tier("q", "c", position=3)],
                [member("q", "m1", T - 10)])
    [o] = core.dispatch(T)
    assert o.agent == "b"  # after the pointer a
    core.agent_hold("b", True)
    core.offer_withdrawn(o.offer_id, T)
    assert row(core, "agents", "b")["last_offered_call"] == 0
    assert agents_of(core.dispatch(T)) == ["c"]  # pointer still a; b held
    consistent(core, T)


def test_withdrawn_is_only_for_a_ringing_offer():
    core = make(["q"], [agent("a")], [tier("q", "a")], [member("q", "m1", T - 10)])
    [o] = core.dispatch(T)
    core.offer_answered(o.offer_id, "leg", T)
    with pytest.raises(CoreError):
        core.offer_withdrawn(o.offer_id, T)
    with pytest.raises(CoreError):
        core.offer_withdrawn(999, T)


# -- agent_hold -------------------------------------------------------------------------------
def test_held_agent_is_not_offered_and_its_row_is_unchanged():
    core = make(["q"], [agent("a"), agent("b", last_bridge_end=T - 5)], [tier("q", "a"), tier("q", "b")],
                [member("q", "m1", T - 10), member("q", "m2", T - 9)])
    before = snapshot(core)
    core.agent_hold("a", True)
    assert core.agent_held("a") and core.held_agents() == ["a"]
    assert snapshot(core) == before and core.drain_journal() == [] and core.drain_events() == []
    consistent(core, T)
    assert agents_of(core.dispatch(T)) == ["b"]
    assert core.dispatch(T) == []
    consistent(core, T)
    core.agent_hold("a", False)
    assert agents_of(core.dispatch(T)) == ["a"]
    consistent(core, T)


def test_hold_with_tier_rules_walks_past_the_held_agent():
    q = QueueParams(name="q", tier_rules_apply=True, tier_rule_wait_second=0)
    core = make([q], [agent("a"), agent("b")], [tier("q", "a", level=1), tier("q", "b", level=2)],
                [member("q", "m1", T - 10)])
    core.agent_hold("a", True)
    assert agents_of(core.dispatch(T)) == ["b"]


def test_hold_before_the_agent_exists_applies_when_it_arrives():
    core = make(["q"], [], [tier("q", "a")], [member("q", "m1", T - 10)])
    core.agent_hold("a", True)
    core.agent_apply("a", agent("a"))
    assert core.dispatch(T) == []
    consistent(core, T)
    core.agent_hold("a", False)
    assert agents_of(core.dispatch(T)) == ["a"]


# -- agent_apply / tier_apply -------------------------------------------------------------------
def test_agent_apply_updates_without_journal_or_events_and_indexes_follow():
    core = make(["q"], [agent("a", status=S.STATUS_LOGGED_OUT), agent("b", status=S.STATUS_LOGGED_OUT)],
                [tier("q", "a"), tier("q", "b")], [member("q", "m1", T - 10)])
    assert core.dispatch(T) == []
    core.agent_apply("b", {"status": S.STATUS_AVAILABLE, "last_bridge_end": T - 1, "wrap_up_time": 5})
    assert core.drain_journal() == [] and core.drain_events() == []
    assert row(core, "agents", "b")["status"] == S.STATUS_AVAILABLE
    consistent(core, T)
    assert core.next_change(T) == T + 5  # b's wrap-up ends
    assert core.dispatch(T) == []
    assert agents_of(core.dispatch(T + 5)) == ["b"]
    consistent(core, T + 5)


def test_agent_apply_changes_the_sort_keys():
    core = make([("q", S.AGENT_WITH_LEAST_TALK_TIME)], [agent("a", talk_time=10), agent("b", talk_time=20)],
                [tier("q", "a"), tier("q", "b")], [member("q", "m1", T - 10)])
    core.agent_apply("a", {"talk_time": 30})
    assert agents_of(core.dispatch(T)) == ["b"]
    consistent(core, T)


def test_agent_apply_state_and_external_calls():
    core = make([QueueParams(name="q", skip_agents_with_external_calls=True)],
                [agent("a", state=S.STATE_RECEIVING)], [tier("q", "a")], [member("q", "m1", T - 10)])
    assert core.dispatch(T) == []
    core.agent_apply("a", {"state": S.STATE_WAITING, "external_calls_count": 1})
    consistent(core, T)
    assert core.dispatch(T) == []
    core.agent_apply("a", {"external_calls_count": "0"})
    consistent(core, T)
    assert agents_of(core.dispatch(T)) == ["a"]


def test_agent_apply_inserts_and_deletes_and_refuses_bad_columns():
    core = make(["q"], [agent("a")], [tier("q", "a")], [member("q", "m1", T - 10)])
    core.agent_apply("a", None)
    assert core.rows("agents") == [] and core.rows("tiers") == []
    assert core.drain_journal() == []
    core.agent_apply("n", agent("n"))
    core.tier_apply("q", "n", {"state": S.TIER_READY, "level": 1, "position": 1})
    assert core.drain_journal() == [] and core.drain_events() == []
    consistent(core, T)
    assert agents_of(core.dispatch(T)) == ["n"]
    with pytest.raises(ValueError):
        core.agent_apply("n", {"bogus": 1})
    with pytest.raises(ValueError):
        core.agent_apply("n", {"name": "other"})
    with pytest.raises(ValueError):
        core.tier_apply("q", "n", {"bogus": 1})


def test_tier_apply_state_level_position_and_delete():
    core = make([("q", S.SEQUENTIALLY_BY_AGENT_ORDER)], [agent("a"), agent("b")],
                [tier("q", "a", position=1), tier("q", "b", position=2)], [member("q", "m1", T - 10)])
    core.tier_apply("q", "a", {"position": 3})
    consistent(core, T)
    core.tier_apply("q", "b", {"state": S.TIER_OFFERING})
    consistent(core, T)
    assert agents_of(core.dispatch(T)) == ["a"]
    core.drain_journal()
    core.offer_withdrawn(core.live_offers()[0].offer_id, T, held_elsewhere=True)
    core.tier_apply("q", "b", {"state": S.TIER_READY, "level": 1})
    assert {e[0] for e in core.drain_journal()} == {"members"}  # only this node's member row
    assert agents_of(core.dispatch(T)) == ["b"]
    core.drain_journal()
    core.offer_withdrawn(core.live_offers()[0].offer_id, T, held_elsewhere=True)
    core.tier_apply("q", "b", None)
    assert [r["agent"] for r in core.rows("tiers")] == ["a"]
    assert {e[0] for e in core.drain_journal()} == {"members"}
    consistent(core, T)


def test_tier_apply_is_not_journaled():
    core = make(["q"], [agent("a")], [tier("q", "a")])
    core.tier_apply("q", "a", {"state": S.TIER_NO_ANSWER, "level": 2})
    core.tier_apply("q", "z", {"state": S.TIER_READY})  # agent row not here yet: orphan tier
    assert tier_row(core, "q", "a") == {"queue": "q", "agent": "a", "state": S.TIER_NO_ANSWER, "level": 2,
                                        "position": 1}
    assert core.drain_journal() == []


# -- queue_suspend ------------------------------------------------------------------------------
def test_suspended_queue_is_not_dispatched_timed_or_discarded_and_resumes_as_it_was():
    q = QueueParams(name="q", max_wait_time=30, discard_abandoned_after=5)
    core = make([q, "p"], [agent("a", wrap_up_time=0)], [tier("q", "a"), tier("p", "a")],
                [member("q", "m1", T - 10), member("q", "old", T - 100, state=S.MEMBER_ABANDONED,
                                                    abandoned_epoch=T - 1, session_uuid="")])
    core.queue_suspend("q", True)
    assert core.queue_suspended("q") and not core.queue_suspended("p")
    before = snapshot(core)
    consistent(core, T)
    assert core.next_change(T) is None  # no discard, max-wait or dispatch wake-up for q
    assert core.dispatch(T + 100) == []
    assert core.member_timeouts(T + 100) == []
    assert core.discard_abandoned(T + 100) == []
    assert snapshot(core) == before and core.drain_journal() == []
    consistent(core, T + 100)
    # the other queue still works; joins to a suspended queue are kept waiting
    core.member_join("p", "mp", "chan-p", "2", "n", T + 100, 0, T + 100)
    core.member_join("q", "m2", "chan-2", "3", "n", T + 100, 0, T + 100)
    assert [(o.member_uuid, o.agent) for o in core.dispatch(T + 100)] == [("mp", "a")]
    core.member_cancel("mp", S.CANCEL_BREAK_OUT, T + 100)
    core.offer_failed(core.live_offers()[0].offer_id, S.HANGUP_ORIGINATOR_CANCEL, T + 100)
    core.drain_journal()
    core.queue_suspend("q", False)
    consistent(core, T + 100)
    assert core.discard_abandoned(T + 100) == ["old"]
    assert [t.member_uuid for t in core.member_timeouts(T + 100)] == ["m1"]
    core.member_cancel("m1", S.CANCEL_TIMEOUT, T + 100)
    assert [(o.member_uuid, o.agent) for o in core.dispatch(T + 100)] == [("m2", "a")]
    consistent(core, T + 100)


def test_suspend_stops_the_no_agent_clock():
    q = QueueParams(name="q", max_wait_time_with_no_agent=10, max_wait_time_with_no_agent_time_reached=0)
    core = make([q], [], [], [member("q", "m1", T)])
    core.dispatch(T)
    core.queue_suspend("q", True)
    assert core.member_timeouts(T + 50) == []
    core.dispatch(T + 50)
    assert core.queue_agent_exist("q") == (0, T)  # the passes while suspended did not count
    with pytest.raises(CoreError):
        core.queue_suspend("nope", True)


# -- members_forget -------------------------------------------------------------------------------
def test_members_forget_drops_a_suspended_queues_rows_silently_so_a_retake_resumes_callers():
    """A node loses q (suspended, its waiting callers ended), then re-takes it: the rows it had
    are dropped and the database's rows loaded instead, so the callers resume at their place."""
    q = QueueParams(name="q", discard_abandoned_after=60)
    core = make([q, "p"], [agent("a", wrap_up_time=0), agent("b", status=S.STATUS_LOGGED_OUT)],
                [tier("q", "a"), tier("q", "b"), tier("p", "b")],
                [member("q", "old", T - 100, state=S.MEMBER_ABANDONED, abandoned_epoch=T - 50, session_uuid="")])
    # an earlier takeover's caller still awaited by its channel
    core.load_recovered({"members": [member("q", "back", T - 90, session_uuid="chan-back")]}, T - 20,
                        reset_agents=False)
    assert core.readopt_sessions(T) == {"chan-back": "back"}
    first = core.member_join("q", "talk", "chan-talk", "1", "n", T - 30, 0, T - 30)
    [o] = core.dispatch(T - 30)
    assert o.member_uuid == "talk"
    core.offer_answered(o.offer_id, "leg", T - 29)
    core.offer_bridged(o.offer_id, T - 29)
    db = [member("q", "m1", T - 10, session_uuid="chan-1"), member("q", "m2", T - 5, session_uuid="chan-2")]
    for r in db:
        core.member_join("q", r["uuid"], r["session_uuid"], "2", "n", r["joined_epoch"], 0, r["joined_epoch"])
    core.member_join("p", "mp", "chan-p", "3", "n", T, 0, T)
    # lost: suspended, waiting callers ended (BREAK_OUT); "kept" is a caller the node still serves
    core.queue_suspend("q", True)
    for uuid in ("m1", "m2"):
        core.member_cancel(uuid, S.CANCEL_BREAK_OUT, T + 1)
    core.drain_journal()
    core.drain_events()
    p_rows = [r for r in core.rows("members") if r["queue"] == "p"]
    assert core.member_count("q") == 0 and core.queue_counters("q") == (0, 2)
    core.member_join("q", "kept", "chan-kept", "4", "n", T + 1, 0, T + 1)
    core.drain_journal()
    core.drain_events()
    with pytest.raises(ValueError, match="not suspended"):
        core.members_forget("p")
    with pytest.raises(CoreError, match="Queue not found!"):
        core.members_forget("nope")
    # re-taken: the rows go, except the bridged caller's (live offer) and the one kept
    assert core.members_forget("q", keep=["kept"]) == ["old", "back", "m1", "m2"]
    assert core.drain_journal() == [] and core.drain_events() == []
    assert [r["uuid"] for r in core.rows("members") if r["queue"] == "q"] == ["talk", "kept"]
    assert [r for r in core.rows("members") if r["queue"] == "p"] == p_rows
    assert core.readopt_sessions(T + 2) == {}
    assert core.member_count("q") == 1 and core.queue_counters("q") == (0, 2)
    consistent(core, T + 2)
    # the database's rows (Waiting, with their channels) are loaded like any takeover's
    out = core.load_recovered({"members": db}, T + 2, reset_agents=False)
    assert out["readopt"] == 2
    core.queue_suspend("q", False)
    consistent(core, T + 2)
    j = core.member_join("q", "new-uuid", "chan-2", "2", "n", T + 3, 0, T + 3)
    assert (j.member_uuid, j.resumed, j.joined_epoch) == ("m2", True, T - 5)
    assert row(core, "members", "m2")["state"] == S.MEMBER_WAITING
    consistent(core, T + 3)
    # the bridged call is unaffected: it ends normally, then the resumed caller goes first (its
    # place: joined T - 5) before the one who joined after the loss
    core.offer_ended(o.offer_id, T + 4)
    core.member_answered_exit(first.member_uuid)
    assert [(x.member_uuid, x.agent) for x in core.dispatch(T + 5)] == [("m2", "a")]
    consistent(core, T + 5)
