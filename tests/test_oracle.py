"""Unit tests of the SQL oracle on hand-made states (reference mod_callcenter.md §4, §5)."""

from __future__ import annotations

import pytest

from ccfast import strings as S
from ccfast.oracle import Oracle, OracleError
from ccfast.params import QueueParams
from tests.strategies_state import NOW, agent_row, member_row, ring_marker, tier_row

J = NOW  # a member's join second in most tests


def make(queues, agents=(), tiers=(), members=(), **kw) -> Oracle:
    o = Oracle(**kw)
    for q in queues:
        o.queue_set(q if isinstance(q, QueueParams) else QueueParams(name=q[0], strategy=q[1]))
    o.load_rows("agents", agents)
    o.load_rows("tiers", tiers)
    o.load_rows("members", members)
    return o


def picks(offers) -> list[tuple[str, str]]:
    return [(o.member_uuid, o.agent) for o in offers]


def agent(o: Oracle, name: str) -> dict:
    return next(r for r in o.rows("agents") if r["name"] == name)


def member(o: Oracle, uuid: str) -> dict | None:
    return next((r for r in o.rows("members") if r["uuid"] == uuid), None)


def tiers_of(o: Oracle, name: str) -> dict[str, str]:
    return {r["queue"]: r["state"] for r in o.rows("tiers") if r["agent"] == name}


def free_agent_after(o: Oracle, offer, now: int) -> None:
    """Finish an offer without side effects on ordering keys (originator cancel)."""
    o.offer_failed(offer.offer_id, S.HANGUP_ORIGINATOR_CANCEL, now)


# -- tables and rows -----------------------------------------------------------------------
def test_tables_have_the_module_columns_and_no_indexes():
    o = Oracle()
    for table, columns in S.TABLE_COLUMNS.items():
        cols = [r[1] for r in o.db.execute(f"PRAGMA table_info({table})")]
        assert tuple(cols) == columns
    assert o.db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index'").fetchone()[0] == 0


def test_load_rows_rejects_unknown_table_and_column():
    o = Oracle()
    with pytest.raises(OracleError, match="unknown table"):
        o.load_rows("queues", [{}])
    with pytest.raises(OracleError, match="bogus"):
        o.load_rows("agents", [{"name": "a", "bogus": 1}])


def test_rows_orders_agents_by_name_tiers_by_queue_agent_members_by_seq():
    o = make(
        [("q", S.LONGEST_IDLE_AGENT)],
        agents=[agent_row("b"), agent_row("B"), agent_row("a")],
        tiers=[tier_row("z", "a"), tier_row("q", "b"), tier_row("q", "B")],
        members=[member_row("q", "m2", J), member_row("q", "m1", J)],
    )
    assert [r["name"] for r in o.rows("agents")] == ["B", "a", "b"]
    assert [(r["queue"], r["agent"]) for r in o.rows("tiers")] == [("q", "B"), ("q", "b"), ("z", "a")]
    assert [r["uuid"] for r in o.rows("members")] == ["m2", "m1"]


# -- member order (§4.1) -------------------------------------------------------------------
def test_members_served_by_score_then_creation_order_across_queues():
    agents = [agent_row(f"a{i}") for i in range(5)]
    tiers = [tier_row(q, f"a{i}") for q in ("q1", "q2") for i in range(5)]
    members = [
        member_row("q1", "late", J + 10),
        member_row("q2", "tie1", J),
        member_row("q1", "boosted", J + 10, base_score=15),  # score 5 more than tie1
        member_row("q1", "tie2", J),
        member_row("q2", "other_box", J - 100, instance_id="box9"),
    ]
    o = make([("q1", S.SEQUENTIALLY_BY_AGENT_ORDER), ("q2", S.SEQUENTIALLY_BY_AGENT_ORDER)], agents, tiers, members)
    offers = o.dispatch(J + 20)
    assert [of.member_uuid for of in offers] == ["boosted", "tie1", "tie2", "late"]


def test_instance_id_selects_this_boxs_members():
    o = make([("q", S.LONGEST_IDLE_AGENT)], [agent_row("a")], [tier_row("q", "a")],
             [member_row("q", "m", J, instance_id="box1")], instance_id="box1")
    assert picks(o.dispatch(J)) == [("m", "a")]
    assert member(o, "m")["serving_agent"] == "a" and member(o, "m")["serving_system"] == S.SINGLE_BOX


# -- candidate order per strategy (§4.3) ---------------------------------------------------
def _order_state(strategy: str):
    """Five agents whose keys order differently under each strategy; one member per agent."""
    agents = [
        agent_row("e", last_bridge_end=J - 50, talk_time=30, calls_answered=1, last_offered_call=J - 5),
        agent_row("d", last_bridge_end=J - 40, talk_time=10, calls_answered=3, last_offered_call=J - 6),
        agent_row("c", last_bridge_end=J - 40, talk_time=10, calls_answered=3, last_offered_call=J - 7),
        agent_row("b", last_bridge_end=J - 90, talk_time=20, calls_answered=2, last_offered_call=J - 8),
        agent_row("a", last_bridge_end=J - 10, talk_time=50, calls_answered=0, last_offered_call=J - 9),
    ]
    tiers = [
        tier_row("q", "e", level=1, position=1),
        tier_row("q", "d", level=1, position=2),
        tier_row("q", "c", level=1, position=2),
        tier_row("q", "b", level=2, position=1),
        tier_row("q", "a", level=1, position=3),
    ]
    members = [member_row("q", f"m{i}", J - 100 + i, serving_agent=ring_marker(strategy)) for i in range(5)]
    return make([("q", strategy)], agents, tiers, members)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        # level, last_bridge_end, position, name
        (S.LONGEST_IDLE_AGENT, ["e", "c", "d", "a", "b"]),
        # level, talk_time, position, name
        (S.AGENT_WITH_LEAST_TALK_TIME, ["c", "d", "e", "a", "b"]),
        # level, calls_answered, position, name
        (S.AGENT_WITH_FEWEST_CALLS, ["a", "e", "c", "d", "b"]),
        # level, position, last_offered_call, name
        (S.SEQUENTIALLY_BY_AGENT_ORDER, ["e", "c", "d", "a", "b"]),
        ("no-such-strategy", ["e", "c", "d", "a", "b"]),
        ("Agent-With-Fewest-Calls", ["a", "e", "c", "d", "b"]),  # compared case-insensitively
    ],
)
def test_one_offer_per_member_in_strategy_order(strategy, expected):
    o = _order_state(strategy)
    offers = o.dispatch(J)
    assert [of.agent for of in offers] == expected
    assert [of.member_uuid for of in offers] == ["m0", "m1", "m2", "m3", "m4"]
    assert all(of.strategy == strategy for of in offers)


def test_sequentially_by_agent_order_ties_on_position_use_last_offered_call():
    agents = [agent_row("x", last_offered_call=J - 1), agent_row("y", last_offered_call=J - 2)]
    o = make([("q", S.SEQUENTIALLY_BY_AGENT_ORDER)], agents, [tier_row("q", "x"), tier_row("q", "y")],
             [member_row("q", "m", J)])
    assert picks(o.dispatch(J)) == [("m", "y")]


def test_sequentially_by_agent_order_restarts_at_first_position():
    o = make([("q", S.SEQUENTIALLY_BY_AGENT_ORDER)], [agent_row("a"), agent_row("b")],
             [tier_row("q", "a", position=1), tier_row("q", "b", position=2)],
             [member_row("q", "m1", J), member_row("q", "m2", J + 1)])
    first = o.dispatch(J + 1)
    assert picks(first) == [("m1", "a"), ("m2", "b")]
    o.offer_failed(first[0].offer_id, S.HANGUP_ORIGINATOR_CANCEL, J + 2)
    o.load_rows("members", [member_row("q", "m3", J + 2)])
    assert picks(o.dispatch(J + 3)) == [("m1", "a")]  # a again, not "the next one"


def test_ring_all_offers_every_eligible_agent_and_stays_trying():
    agents = [agent_row("a"), agent_row("b", state=S.STATE_IN_A_QUEUE_CALL), agent_row("c")]
    tiers = [tier_row("q", n, position=i) for i, n in enumerate("cab")]
    o = make([("q", S.RING_ALL)], agents, tiers, [member_row("q", "m", J, serving_agent=S.RING_ALL)])
    offers = o.dispatch(J)
    assert [of.agent for of in offers] == ["c", "a"]
    row = member(o, "m")
    assert (row["state"], row["serving_agent"]) == (S.MEMBER_TRYING, S.RING_ALL)
    # next pass: the ringing agents are Receiving, nothing new
    assert o.dispatch(J + 1) == []
    # b becomes free -> added on the next pass
    o.db.execute("UPDATE agents SET state = 'Waiting' WHERE name = 'b'")
    assert picks(o.dispatch(J + 2)) == [("m", "b")]


def test_ring_all_member_marked_trying_even_without_agents():
    o = make([("q", S.RING_ALL)], members=[member_row("q", "m", J, serving_agent=S.RING_ALL)])
    assert o.dispatch(J) == []
    assert member(o, "m")["state"] == S.MEMBER_TRYING


def test_ring_all_with_other_spelling_never_offers():
    """§2.3 QUIRK: the configured text `Ring-All` is compared with the marker `ring-all`."""
    o = make([("q", "Ring-All")], [agent_row("a")], [tier_row("q", "a")],
             [member_row("q", "m", J, serving_agent=S.RING_ALL)])
    assert o.dispatch(J) == []
    assert member(o, "m")["state"] == S.MEMBER_TRYING
    assert agent(o, "a")["state"] == S.STATE_WAITING


@pytest.mark.parametrize(("delay", "effective"), [(0, 10), (3, 3)])
def test_ring_progressively_one_new_leg_per_delay(delay, effective):
    q = QueueParams(name="q", strategy=S.RING_PROGRESSIVELY, ring_progressively_delay=delay)
    agents = [agent_row("a"), agent_row("b"), agent_row("c")]
    tiers = [tier_row("q", n, position=i) for i, n in enumerate("abc")]
    o = make([q], agents, tiers, [member_row("q", "m", J, serving_agent=S.RING_PROGRESSIVELY)])
    assert picks(o.dispatch(J)) == [("m", "a")]
    assert o.dispatch(J + effective - 1) == []
    assert o.queue_agent_exist("q") == (J, J)  # the gated pass does no no-agent bookkeeping
    assert picks(o.dispatch(J + effective)) == [("m", "b")]  # a still ringing
    assert member(o, "m")["serving_agent"] == S.RING_PROGRESSIVELY


def test_ring_progressively_member_without_channel_is_not_gated():
    q = QueueParams(name="q", strategy=S.RING_PROGRESSIVELY)
    o = make([q], [agent_row("a"), agent_row("b")], [tier_row("q", "a"), tier_row("q", "b", position=2)],
             [member_row("q", "m", J, session_uuid="", serving_agent=S.RING_PROGRESSIVELY)])
    assert picks(o.dispatch(J)) == [("m", "a")]
    assert picks(o.dispatch(J + 1)) == [("m", "b")]


def test_top_down_walks_down_then_wraps_only_after_the_end():
    agents = [agent_row(n) for n in "abc"]
    tiers = [tier_row("q", "a", 1, 1), tier_row("q", "b", 1, 2), tier_row("q", "c", 2, 1)]
    o = make([("q", S.TOP_DOWN)], agents, tiers, [member_row("q", "m", J)])
    walk = []
    for t in range(5):
        offers = o.dispatch(J + 2 * t)
        walk.append(offers[0].agent if offers else None)
        for of in offers:
            o.offer_failed(of.offer_id, S.HANGUP_NO_ANSWER, J + 2 * t + 1)
    # a, b, c, then no row at all beyond (2,1): vars unset, no offer this pass; then a again
    assert walk == ["a", "b", "c", None, "a"]


def test_top_down_busy_agent_after_pointer_blocks_wrap():
    agents = [agent_row("a"), agent_row("b", state=S.STATE_IN_A_QUEUE_CALL)]
    tiers = [tier_row("q", "a", 1, 1), tier_row("q", "b", 1, 2)]
    o = make([("q", S.TOP_DOWN)], agents, tiers, [member_row("q", "m", J)])
    first = o.dispatch(J)
    assert picks(first) == [("m", "a")]
    o.offer_failed(first[0].offer_id, S.HANGUP_NO_ANSWER, J)
    for t in range(1, 4):  # b is returned (busy) so the member never wraps back to a
        assert o.dispatch(J + t) == []


def test_round_robin_rotates_within_level_then_wraps():
    agents = [agent_row(n) for n in "abc"]
    tiers = [tier_row("q", n, 1, i + 1) for i, n in enumerate("abc")]
    o = make([("q", S.ROUND_ROBIN)], agents, tiers)
    got = []
    for t in range(4):
        o.load_rows("members", [member_row("q", f"m{t}", J + t)])
        offers = o.dispatch(J + 10 * t)
        got.append(offers[0].agent)
        o.offer_failed(offers[0].offer_id, S.HANGUP_ORIGINATOR_CANCEL, J + 10 * t)
        o.db.execute("DELETE FROM members")
    assert got == ["a", "b", "c", "a"]


def test_round_robin_pointer_moved_by_offer_in_another_queue():
    agents = [agent_row(n) for n in "abc"]
    tiers = [tier_row("rr", n, 1, i + 1) for i, n in enumerate("abc")] + [tier_row("other", "b")]
    o = make([("rr", S.ROUND_ROBIN), ("other", S.LONGEST_IDLE_AGENT)], agents, tiers,
             [member_row("other", "x", J - 5)])
    offers = o.dispatch(J)
    assert picks(offers) == [("x", "b")]
    o.offer_failed(offers[0].offer_id, S.HANGUP_ORIGINATOR_CANCEL, J)
    o.db.execute("DELETE FROM members")
    o.load_rows("members", [member_row("rr", "m", J)])
    assert picks(o.dispatch(J + 1)) == [("m", "c")]  # after b's position in rr


def test_round_robin_pointer_tie_takes_smallest_name():
    agents = [agent_row("a", last_offered_call=J - 1), agent_row("c", last_offered_call=J - 1), agent_row("b"),
              agent_row("d")]
    tiers = [tier_row("q", n, 1, i + 1) for i, n in enumerate("abcd")]
    o = make([("q", S.ROUND_ROBIN)], agents, tiers, [member_row("q", "m", J)])
    assert picks(o.dispatch(J)) == [("m", "b")]  # pointer = a (smaller than c), so b follows


def test_random_picks_within_the_lowest_level_and_follows_a_valid_hint():
    agents = [agent_row(n) for n in "abcd"]
    tiers = [tier_row("q", "a", 1), tier_row("q", "b", 1), tier_row("q", "c", 1), tier_row("q", "d", 0)]
    chosen = set()
    for seed in range(20):
        o = make([("q", S.RANDOM)], agents, tiers, [member_row("q", "m", J)], seed=seed)
        o.db.execute("UPDATE agents SET state = 'Idle' WHERE name = 'd'")
        chosen.add(o.dispatch(J)[0].agent)
    assert chosen == {"a", "b", "c"}
    o = make([("q", S.RANDOM)], agents, tiers, [member_row("q", "m", J)])
    o.random_hint = {"m": "c"}  # a hint at a higher level than an eligible agent is not followed
    assert picks(o.dispatch(J)) == [("m", "d")]


# -- tier rules (§4.6 worked examples, W=30) -----------------------------------------------
@pytest.mark.parametrize(
    ("no_wait", "multiply", "a_kw", "b_kw", "expect"),
    [
        (True, True, {}, {}, [(0, "a")]),
        (True, True, {"state": S.STATE_IN_A_QUEUE_CALL}, {}, [(59, None), (60, "b")]),
        (True, True, {"state": S.STATE_IN_A_QUEUE_CALL}, {"state": S.STATE_IN_A_QUEUE_CALL},
         [(89, None), (90, "c")]),
        (True, False, {"state": S.STATE_IN_A_QUEUE_CALL}, {}, [(29, None), (30, "b")]),
        (True, False, {"state": S.STATE_IN_A_QUEUE_CALL}, {"state": S.STATE_IN_A_QUEUE_CALL},
         [(29, None), (30, "c")]),
        (False, True, {}, {}, [(29, None), (30, "a")]),
        (False, False, {}, {}, [(29, None), (30, "a")]),
        (True, True, {"status": S.STATUS_LOGGED_OUT}, {}, [(0, "b")]),
        (True, True, {"status": S.STATUS_ON_BREAK}, {}, [(59, None), (60, "b")]),
    ],
)
def test_tier_rule_worked_examples(no_wait, multiply, a_kw, b_kw, expect):
    for delta, who in expect:
        q = QueueParams(name="q", strategy=S.LONGEST_IDLE_AGENT, tier_rules_apply=True, tier_rule_wait_second=30,
                        tier_rule_wait_multiply_level=multiply, tier_rule_no_agent_no_wait=no_wait)
        agents = [agent_row("a", **a_kw), agent_row("b", **b_kw), agent_row("c")]
        tiers = [tier_row("q", "a", 1), tier_row("q", "b", 2), tier_row("q", "c", 3)]
        o = make([q], agents, tiers, [member_row("q", "m", J)])
        offers = o.dispatch(J + delta)
        assert [of.agent for of in offers] == ([who] if who else []), (delta, who)


def test_tier_rules_level_zero_never_gated():
    q = QueueParams(name="q", tier_rules_apply=True, tier_rule_wait_second=30, tier_rule_no_agent_no_wait=False)
    o = make([q], [agent_row("a")], [tier_row("q", "a", 0)], [member_row("q", "m", J)])
    assert picks(o.dispatch(J)) == [("m", "a")]


def test_tier_rules_round_robin_part_one_enters_higher_level_first():
    """§4.6 QUIRK: the pointer on a level-2 agent opens level 2 at once (no-agent-no-wait)."""
    q = QueueParams(name="q", strategy=S.ROUND_ROBIN, tier_rules_apply=True, tier_rule_wait_second=30)
    agents = [agent_row("a"), agent_row("b", last_offered_call=J - 1), agent_row("c")]
    tiers = [tier_row("q", "a", 1, 1), tier_row("q", "b", 2, 1), tier_row("q", "c", 2, 2)]
    o = make([q], agents, tiers, [member_row("q", "m", J)])
    assert picks(o.dispatch(J)) == [("m", "c")]


# -- eligibility (§4.5 step 4) -------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "tier_state", "eligible"),
    [
        ({}, S.TIER_READY, True),
        ({}, S.TIER_NO_ANSWER, True),
        ({}, "ready", True),  # C compares case-insensitively
        ({}, S.TIER_STANDBY, False),
        ({}, S.TIER_OFFERING, False),
        ({"state": "waiting"}, S.TIER_READY, True),
        ({"state": S.STATE_IDLE}, S.TIER_READY, False),
        ({"state": S.STATE_RESERVED}, S.TIER_READY, False),
        ({"status": "available"}, S.TIER_READY, False),  # invisible to the exact SQL match (QUIRK)
        ({"status": S.STATUS_AVAILABLE_ON_DEMAND}, S.TIER_READY, True),
        ({"status": S.STATUS_ON_BREAK}, S.TIER_READY, False),
        ({"last_bridge_end": J - 10, "wrap_up_time": 10}, S.TIER_READY, False),  # strict
        ({"last_bridge_end": J - 11, "wrap_up_time": 10}, S.TIER_READY, True),
        ({"last_bridge_end": J, "wrap_up_time": 0}, S.TIER_READY, False),  # not in the same second
        ({"ready_time": J}, S.TIER_READY, True),
        ({"ready_time": J + 1}, S.TIER_READY, False),
        ({"external_calls_count": 1}, S.TIER_READY, False),
        ({"external_calls_count": 0}, S.TIER_READY, True),
        ({"instance_id": "SINGLE_BOX"}, S.TIER_READY, True),
        ({"instance_id": "box2"}, S.TIER_READY, False),
    ],
)
def test_eligibility(kw, tier_state, eligible):
    o = make([("q", S.LONGEST_IDLE_AGENT)], [agent_row("a", **kw)], [tier_row("q", "a", state=tier_state)],
             [member_row("q", "m", J)])
    assert picks(o.dispatch(J)) == ([("m", "a")] if eligible else [])
    assert o.queue_agent_exist("q") == ((J, J) if kw.get("status") != "available" else (0, J))


def test_external_calls_counted_only_when_queue_skips_them():
    q = QueueParams(name="q", skip_agents_with_external_calls=False)
    o = make([q], [agent_row("a", external_calls_count=2)], [tier_row("q", "a")], [member_row("q", "m", J)])
    assert picks(o.dispatch(J)) == [("m", "a")]


def test_ring_all_stops_at_agent_of_other_box_others_skip_it():
    agents = [agent_row("a"), agent_row("b", instance_id="box2"), agent_row("c")]
    tiers = [tier_row(q, n, 1, i) for q in ("ra", "sq") for i, n in enumerate("abc")]
    o = make([("ra", S.RING_ALL), ("sq", S.SEQUENTIALLY_BY_AGENT_ORDER)], agents, tiers,
             [member_row("ra", "m1", J - 1, serving_agent=S.RING_ALL)])
    assert picks(o.dispatch(J)) == [("m1", "a")]
    o = make([("ra", S.RING_ALL), ("sq", S.SEQUENTIALLY_BY_AGENT_ORDER)],
             [agent_row("b", instance_id="box2"), agent_row("c")], tiers, [member_row("sq", "m2", J)])
    assert picks(o.dispatch(J)) == [("m2", "c")]


# -- reserve-agents (§4.5 step 6, W6) ------------------------------------------------------
def test_reserve_agents_needs_exact_waiting_and_available_status():
    agents = [agent_row("a", state="waiting"), agent_row("b")]
    o = make([("q", S.SEQUENTIALLY_BY_AGENT_ORDER)], agents, [tier_row("q", "a", 1, 1), tier_row("q", "b", 1, 2)],
             [member_row("q", "m", J)], reserve_agents=True)
    assert picks(o.dispatch(J)) == [("m", "b")]  # a passes eligibility but the SQL reservation fails
    assert agent(o, "b")["state"] == S.STATE_RECEIVING


def test_reservation_released_when_member_claim_fails():
    """W6 fix: `Ring-All` reserves the agent, then the claim (marker compare) fails."""
    o = make([("q", "Ring-All")], [agent_row("a")], [tier_row("q", "a")],
             [member_row("q", "m", J, serving_agent=S.RING_ALL)], reserve_agents=True)
    assert o.dispatch(J) == []
    assert agent(o, "a")["state"] == S.STATE_WAITING  # mod_callcenter would leave it Reserved


# -- offer bookkeeping (§5.1) --------------------------------------------------------------
def test_offer_sets_receiving_offering_and_standby_elsewhere():
    agents = [agent_row("a", last_offered_call=5)]
    tiers = [tier_row("q", "a"), tier_row("r", "a"), tier_row("s", "a", state="ready"),
             tier_row("t", "a", state=S.TIER_NO_ANSWER)]
    o = make([("q", S.LONGEST_IDLE_AGENT)], agents, tiers, [member_row("q", "m", J, cid_number="555")])
    (offer,) = o.dispatch(J + 3)
    assert (offer.queue, offer.agent, offer.level, offer.position, offer.cid_number) == ("q", "a", 1, 1, "555")
    row = agent(o, "a")
    assert (row["state"], row["last_offered_call"]) == (S.STATE_RECEIVING, J + 3)
    # exact 'Ready' only becomes Standby (case-sensitive SQL)
    assert tiers_of(o, "a") == {"q": S.TIER_OFFERING, "r": S.TIER_STANDBY, "s": "ready", "t": S.TIER_NO_ANSWER}
    m = member(o, "m")
    assert (m["state"], m["serving_agent"], m["serving_system"]) == (S.MEMBER_TRYING, "a", S.SINGLE_BOX)
    assert o.dispatch(J + 4) == []  # member is Trying, agent Receiving


def test_offer_ids_are_increasing_positive():
    o = make([("q", S.RING_ALL)], [agent_row("a"), agent_row("b")], [tier_row("q", "a"), tier_row("q", "b")],
             [member_row("q", "m", J, serving_agent=S.RING_ALL)])
    assert [of.offer_id for of in o.dispatch(J)] == [1, 2]


# -- abandoned rows and unknown queues (§3.7, §4.2) ----------------------------------------
def test_abandoned_row_discarded_strictly_after_window():
    q = QueueParams(name="q", discard_abandoned_after=60)
    rows = [member_row("q", "m1", J - 100, state=S.MEMBER_ABANDONED, abandoned_epoch=J),
            member_row("q", "m0", J, state=S.MEMBER_ABANDONED, abandoned_epoch=0)]
    o = make([q], members=rows)
    o.dispatch(J + 60)
    assert {r["uuid"] for r in o.rows("members")} == {"m1", "m0"}
    o.dispatch(J + 61)
    assert o.rows("members") == []


def test_member_of_unknown_queue_is_deleted():
    o = make([("q", S.LONGEST_IDLE_AGENT)], members=[member_row("gone", "m", J), member_row("q", "k", J)])
    o.dispatch(J)
    assert [r["uuid"] for r in o.rows("members")] == ["k"]


# -- strategy change tracking (§4.2 step 4) ------------------------------------------------
@pytest.mark.parametrize(
    ("marker", "state", "strategy", "after"),
    [
        (S.RING_ALL, S.MEMBER_TRYING, S.RING_PROGRESSIVELY, (S.RING_PROGRESSIVELY, S.MEMBER_TRYING)),
        (S.RING_ALL, S.MEMBER_TRYING, S.LONGEST_IDLE_AGENT, ("", S.MEMBER_WAITING)),
        (S.RING_PROGRESSIVELY, S.MEMBER_TRYING, S.RING_ALL, (S.RING_ALL, S.MEMBER_TRYING)),
        (S.RING_PROGRESSIVELY, S.MEMBER_TRYING, S.TOP_DOWN, ("", S.MEMBER_WAITING)),
        ("", S.MEMBER_WAITING, S.RING_ALL, (S.RING_ALL, S.MEMBER_TRYING)),
        ("", S.MEMBER_WAITING, S.RING_PROGRESSIVELY, (S.RING_PROGRESSIVELY, S.MEMBER_TRYING)),
        # a Waiting member still carrying a marker is only set Trying by the ring update
        (S.RING_ALL, S.MEMBER_WAITING, S.RING_PROGRESSIVELY, (S.RING_ALL, S.MEMBER_TRYING)),
    ],
)
def test_strategy_change_tracking_without_agents(marker, state, strategy, after):
    o = make([("q", strategy)], members=[member_row("q", "m", J, serving_agent=marker, state=state)])
    assert o.dispatch(J) == []
    m = member(o, "m")
    assert (m["serving_agent"], m["state"]) == after


def test_member_left_ring_strategy_is_claimed_normally():
    o = make([("q", S.LONGEST_IDLE_AGENT)], [agent_row("a")], [tier_row("q", "a")],
             [member_row("q", "m", J, serving_agent=S.RING_ALL, state=S.MEMBER_TRYING)])
    assert picks(o.dispatch(J)) == [("m", "a")]
    assert member(o, "m")["serving_agent"] == "a"


# -- no-agent bookkeeping (§4.7) -----------------------------------------------------------
def test_no_agent_bookkeeping_counts_any_candidate_row():
    o = make([("q", S.LONGEST_IDLE_AGENT), ("e", S.LONGEST_IDLE_AGENT)],
             [agent_row("a", status=S.STATUS_ON_BREAK)], [tier_row("q", "a")],
             [member_row("q", "m", J), member_row("e", "n", J)])
    o.dispatch(J + 7)
    assert o.queue_agent_exist("q") == (J + 7, J + 7)
    assert o.queue_agent_exist("e") == (0, J + 7)


# -- offer results (§5.5-§5.8) -------------------------------------------------------------
def _one_offer(agent_kw=None, queue=None, **member_kw):
    q = queue or QueueParams(name="q", strategy=S.LONGEST_IDLE_AGENT)
    o = make([q], [agent_row("a", **(agent_kw or {}))], [tier_row(q.name, "a"), tier_row("other", "a")],
             [member_row(q.name, "m", J, **member_kw)])
    (offer,) = o.dispatch(J)
    return o, offer


def test_answer_bridge_end_updates_counters_and_deletes_member():
    o, offer = _one_offer({"no_answer_count": 2, "calls_answered": 4, "talk_time": 100, "uuid": "old"})
    ans = o.offer_answered(offer.offer_id, "leg-1", J + 5)
    assert ans.won and ans.cancel == []
    o.offer_bridged(offer.offer_id, J + 6)
    row = agent(o, "a")
    assert (row["uuid"], row["last_bridge_start"], row["calls_answered"], row["no_answer_count"], row["state"]) == (
        "leg-1", J + 6, 5, 0, S.STATE_IN_A_QUEUE_CALL)
    assert tiers_of(o, "a") == {"q": S.TIER_ACTIVE_INBOUND, "other": S.TIER_STANDBY}
    m = member(o, "m")
    assert (m["state"], m["bridge_epoch"]) == (S.MEMBER_ANSWERED, J + 6)
    o.offer_ended(offer.offer_id, J + 66)
    row = agent(o, "a")
    assert (row["uuid"], row["last_bridge_end"], row["talk_time"], row["state"]) == ("", J + 66, 160, S.STATE_WAITING)
    assert tiers_of(o, "a") == {"q": S.TIER_READY, "other": S.TIER_READY}
    assert member(o, "m") is None


def test_uuid_standby_keeps_uuid_after_call():
    o, offer = _one_offer({"type": S.TYPE_UUID_STANDBY, "uuid": "standby-leg"})
    o.offer_answered(offer.offer_id, "standby-leg", J)
    o.offer_bridged(offer.offer_id, J)
    o.offer_ended(offer.offer_id, J + 1)
    assert agent(o, "a")["uuid"] == "standby-leg"


def test_on_demand_agent_idle_after_bridged_call_only():
    o, offer = _one_offer({"status": S.STATUS_AVAILABLE_ON_DEMAND})
    o.offer_answered(offer.offer_id, "leg", J)
    o.offer_bridged(offer.offer_id, J)
    o.offer_ended(offer.offer_id, J + 1)
    assert agent(o, "a")["state"] == S.STATE_IDLE
    o, offer = _one_offer({"status": S.STATUS_AVAILABLE_ON_DEMAND})
    o.offer_failed(offer.offer_id, S.HANGUP_NO_ANSWER, J + 1)
    assert agent(o, "a")["state"] == S.STATE_WAITING


@pytest.mark.parametrize(
    ("cause", "ready_time", "tier", "no_answer_count"),
    [
        (S.HANGUP_LOSE_RACE, 0, S.TIER_READY, 1),
        (S.HANGUP_ORIGINATOR_CANCEL, 0, S.TIER_READY, 1),
        (S.HANGUP_USER_BUSY, J + 10 + 3, S.TIER_READY, 1),
        (S.HANGUP_NORMAL_CIRCUIT_CONGESTION, J + 10 + 3, S.TIER_READY, 1),
        (S.HANGUP_CALL_REJECTED, J + 10 + 4, S.TIER_READY, 1),
        (S.HANGUP_USER_NOT_REGISTERED, J + 10 + 5, S.TIER_READY, 1),
        (S.HANGUP_NO_ANSWER, J + 10 + 6, S.TIER_NO_ANSWER, 2),
        (S.HANGUP_ALLOTTED_TIMEOUT, J + 10 + 6, S.TIER_NO_ANSWER, 2),
        (S.HANGUP_NONE, J + 10 + 6, S.TIER_NO_ANSWER, 2),
        (S.HANGUP_SUCCESS, J + 10 + 6, S.TIER_NO_ANSWER, 2),
    ],
)
def test_offer_failed_by_cause(cause, ready_time, tier, no_answer_count):
    kw = {"busy_delay_time": 3, "reject_delay_time": 4, "no_answer_delay_time": 6, "no_answer_count": 1,
          "instance_id": "SINGLE_BOX"}
    o, offer = _one_offer(kw)
    o.offer_failed(offer.offer_id, cause, J + 10)
    row = agent(o, "a")
    assert (row["ready_time"], row["no_answer_count"], row["state"]) == (ready_time, no_answer_count, S.STATE_WAITING)
    # `agent set ready_time` rewrites instance_id to single_box (L1096)
    assert row["instance_id"] == (S.SINGLE_BOX if ready_time else "SINGLE_BOX")
    assert tiers_of(o, "a") == {"q": tier, "other": S.TIER_READY}
    m = member(o, "m")
    assert (m["state"], m["serving_agent"], m["serving_system"]) == (S.MEMBER_WAITING, "", "")


def test_zero_delay_leaves_ready_time():
    o, offer = _one_offer({"ready_time": 7})
    o.offer_failed(offer.offer_id, S.HANGUP_USER_BUSY, J)
    assert agent(o, "a")["ready_time"] == 7


@pytest.mark.parametrize(
    ("max_no_answer", "count", "status_after"),
    [(0, 5, S.STATUS_AVAILABLE), (3, 1, S.STATUS_AVAILABLE), (3, 2, S.STATUS_ON_BREAK), (1, 0, S.STATUS_ON_BREAK)],
)
def test_max_no_answer_changes_status(max_no_answer, count, status_after):
    o, offer = _one_offer({"max_no_answer": max_no_answer, "no_answer_count": count})
    o.offer_failed(offer.offer_id, S.HANGUP_NO_ANSWER, J + 9)
    row = agent(o, "a")
    assert row["status"] == status_after
    assert row["no_answer_count"] == count + 1
    assert row["last_status_change"] == (J + 9 if status_after != S.STATUS_AVAILABLE else 0)


def test_max_no_answer_status_available_resets_counters_only_on_change():
    q = QueueParams(name="q", agent_no_answer_status="available")  # stored as typed, applied canonical
    o, offer = _one_offer({"max_no_answer": 1, "status": S.STATUS_AVAILABLE_ON_DEMAND, "calls_answered": 3,
                           "talk_time": 50}, queue=q)
    o.offer_failed(offer.offer_id, S.HANGUP_NO_ANSWER, J + 9)
    row = agent(o, "a")
    assert (row["status"], row["no_answer_count"], row["calls_answered"], row["talk_time"]) == (
        S.STATUS_AVAILABLE, 0, 0, 0)
    o, offer = _one_offer({"max_no_answer": 1, "calls_answered": 3}, queue=q)
    o.offer_failed(offer.offer_id, S.HANGUP_NO_ANSWER, J + 9)
    row = agent(o, "a")
    assert (row["no_answer_count"], row["calls_answered"], row["last_status_change"]) == (1, 3, 0)


def test_ring_all_answer_race_and_lose_race_cancels():
    agents = [agent_row("a"), agent_row("b", status=S.STATUS_AVAILABLE_ON_DEMAND), agent_row("c")]
    tiers = [tier_row("q", n, 1, i) for i, n in enumerate("abc")]
    o = make([("q", S.RING_ALL)], agents, tiers, [member_row("q", "m", J, serving_agent=S.RING_ALL)])
    oa, ob, oc = o.dispatch(J)
    ans = o.offer_answered(oa.offer_id, "leg-a", J + 2)
    assert ans.won
    assert [(c.offer_id, c.agent, c.cause) for c in ans.cancel] == [
        (ob.offer_id, "b", S.HANGUP_LOSE_RACE), (oc.offer_id, "c", S.HANGUP_LOSE_RACE)]
    assert member(o, "m")["serving_agent"] == "a"
    # b answered before its leg was cancelled: it loses; W7 fix: finished as not bridged
    lost = o.offer_answered(ob.offer_id, "leg-b", J + 2)
    assert not lost.won and lost.cancel == []
    assert agent(o, "b")["state"] == S.STATE_WAITING  # not Idle although On Demand
    assert tiers_of(o, "b") == {"q": S.TIER_READY}
    o.offer_failed(oc.offer_id, S.HANGUP_LOSE_RACE, J + 2)
    assert agent(o, "c")["state"] == S.STATE_WAITING and agent(o, "c")["ready_time"] == 0
    assert member(o, "m")["serving_agent"] == "a"  # the failed leg does not touch the winner's claim
    o.offer_bridged(oa.offer_id, J + 3)
    assert member(o, "m")["state"] == S.MEMBER_ANSWERED


def test_ring_member_after_failed_leg_keeps_marker_and_rings_again():
    o = make([("q", S.RING_ALL)], [agent_row("a")], [tier_row("q", "a")],
             [member_row("q", "m", J, serving_agent=S.RING_ALL)])
    (offer,) = o.dispatch(J)
    o.offer_failed(offer.offer_id, S.HANGUP_NO_ANSWER, J + 20)
    m = member(o, "m")
    assert (m["serving_agent"], m["state"]) == (S.RING_ALL, S.MEMBER_TRYING)
    assert picks(o.dispatch(J + 21)) == [("m", "a")]  # tier No Answer is still offerable


def test_offer_results_reject_unknown_or_finished_offers():
    o, offer = _one_offer()
    with pytest.raises(OracleError, match="unknown offer"):
        o.offer_failed(999, S.HANGUP_NO_ANSWER, J)
    with pytest.raises(OracleError, match="ringing, expected answered"):
        o.offer_bridged(offer.offer_id, J)
    o.offer_failed(offer.offer_id, S.HANGUP_NO_ANSWER, J)
    with pytest.raises(OracleError, match="is done"):
        o.offer_answered(offer.offer_id, "x", J)
