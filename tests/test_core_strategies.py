"""Candidate order and strategy memory of the nine strategies (reference §4.3, §4.8)."""

from __future__ import annotations

from ccfast import strings as S
from ccfast.params import QueueParams
from tests.test_core_fixtures import T, agent, agents_of, answer_and_end, fail, make, member, pairs, row, tier


def one_member(strategy, agents, tiers, joined=T - 10):
    return make([("q", strategy)], agents, tiers, [member("q", "m1", joined)])


# -- single-query strategies -----------------------------------------------------------------
def test_longest_idle_agent_orders_by_level_then_last_bridge_end_then_position():
    agents = [agent("a", last_bridge_end=T - 100), agent("b", last_bridge_end=T - 500),
              agent("c", last_bridge_end=T - 900)]
    tiers = [tier("q", "a", level=1, position=3), tier("q", "b", level=1, position=1),
             tier("q", "c", level=2, position=1)]
    core = one_member(S.LONGEST_IDLE_AGENT, agents, tiers)
    assert agents_of(core.dispatch(T)) == ["b"]  # c idles longest but sits on level 2


def test_longest_idle_agent_no_answer_does_not_make_an_agent_less_idle():
    core = one_member(S.LONGEST_IDLE_AGENT, [agent("a", last_bridge_end=T - 900), agent("b", last_bridge_end=T - 100)],
                      [tier("q", "a"), tier("q", "b")])
    fail(core, core.dispatch(T)[0], T)
    assert agents_of(core.dispatch(T + 1)) == ["a"]  # last_bridge_end only moves with a bridged call


def test_least_talk_time_and_fewest_calls():
    agents = [agent("a", talk_time=50, calls_answered=1), agent("b", talk_time=10, calls_answered=9)]
    tiers = [tier("q", "a"), tier("q", "b")]
    assert agents_of(one_member(S.AGENT_WITH_LEAST_TALK_TIME, agents, tiers).dispatch(T)) == ["b"]
    assert agents_of(one_member(S.AGENT_WITH_FEWEST_CALLS, agents, tiers).dispatch(T)) == ["a"]


def test_ties_are_broken_by_agent_name_in_byte_order():
    agents = [agent("agent_9"), agent("agent_10"), agent("Zed")]
    tiers = [tier("q", "agent_9"), tier("q", "agent_10"), tier("q", "Zed")]
    # equal keys everywhere: byte order puts upper case first, and "agent_10" < "agent_9"
    assert agents_of(one_member(S.LONGEST_IDLE_AGENT, agents, tiers).dispatch(T)) == ["Zed"]
    agents = [agent("agent_9"), agent("agent_10")]
    tiers = [tier("q", "agent_9"), tier("q", "agent_10")]
    assert agents_of(one_member(S.AGENT_WITH_FEWEST_CALLS, agents, tiers).dispatch(T)) == ["agent_10"]


def test_sequentially_by_agent_order_always_restarts_at_the_first_position():
    agents = [agent("a"), agent("b"), agent("c")]
    tiers = [tier("q", "a", position=1), tier("q", "b", position=2), tier("q", "c", position=3)]
    core = one_member(S.SEQUENTIALLY_BY_AGENT_ORDER, agents, tiers)
    first = core.dispatch(T)
    assert agents_of(first) == ["a"]
    fail(core, first[0], T, S.HANGUP_ORIGINATOR_CANCEL)
    assert agents_of(core.dispatch(T + 1)) == ["a"]


def test_sequential_uses_last_offered_call_after_position():
    agents = [agent("a", last_offered_call=T - 5), agent("b", last_offered_call=T - 50)]
    tiers = [tier("q", "a", position=1), tier("q", "b", position=1)]
    assert agents_of(one_member(S.SEQUENTIALLY_BY_AGENT_ORDER, agents, tiers).dispatch(T)) == ["b"]


def test_unknown_strategy_falls_back_to_sequential_order():
    agents = [agent("a", last_bridge_end=T - 1), agent("b", last_bridge_end=T - 999)]
    tiers = [tier("q", "a", position=1), tier("q", "b", position=2)]
    assert agents_of(one_member("no-such-strategy", agents, tiers).dispatch(T)) == ["a"]
    # a case variant is the same strategy (compared case-insensitively in C)
    assert agents_of(one_member("Longest-Idle-Agent", agents, tiers).dispatch(T)) == ["b"]


def test_random_stays_in_the_lowest_level_and_varies_inside_it():
    seen = set()
    for seed in range(40):
        agents = [agent("a"), agent("b"), agent("c")]
        tiers = [tier("q", "a", level=1), tier("q", "b", level=1), tier("q", "c", level=2)]
        core = make([("q", S.RANDOM)], agents, tiers, [member("q", "m1", T - 10)], seed=seed)
        offers = core.dispatch(T)
        assert offers[0].agent in ("a", "b")
        seen.add(offers[0].agent)
    assert seen == {"a", "b"}


# -- ring strategies -------------------------------------------------------------------------
def test_ring_all_offers_every_eligible_agent_in_level_position_order():
    agents = [agent("a"), agent("b"), agent("c", state=S.STATE_IN_A_QUEUE_CALL), agent("d")]
    tiers = [tier("q", "a", level=2), tier("q", "b", level=1, position=2), tier("q", "c"), tier("q", "d", position=1)]
    core = one_member(S.RING_ALL, agents, tiers)
    offers = core.dispatch(T)
    assert agents_of(offers) == ["d", "b", "a"]
    m = row(core, "members", "m1")
    assert (m["state"], m["serving_agent"]) == (S.MEMBER_TRYING, S.RING_ALL)


def test_ring_all_adds_agents_that_become_free_and_rings_again_after_no_answer():
    core = one_member(S.RING_ALL, [agent("a"), agent("b", state=S.STATE_IDLE)], [tier("q", "a"), tier("q", "b")])
    first = core.dispatch(T)
    assert agents_of(first) == ["a"]
    core.agent_set("state", "b", S.STATE_WAITING, T + 1)
    assert agents_of(core.dispatch(T + 1)) == ["b"]
    fail(core, first[0], T + 2)
    assert agents_of(core.dispatch(T + 3)) == ["a"]


def test_ring_all_first_answer_wins_and_cancels_the_others():
    core = one_member(S.RING_ALL, [agent("a"), agent("b"), agent("c")], [tier("q", n) for n in "abc"])
    offers = core.dispatch(T)
    ans = core.offer_answered(offers[1].offer_id, "leg-b", T + 2)
    assert ans.won
    assert sorted((c.agent, c.cause) for c in ans.cancel) == [("a", S.HANGUP_LOSE_RACE), ("c", S.HANGUP_LOSE_RACE)]
    assert row(core, "members", "m1")["serving_agent"] == "b"


def test_ring_progressively_one_new_leg_per_delay_and_zero_means_ten():
    agents = [agent("a"), agent("b"), agent("c")]
    tiers = [tier("q", "a", position=1), tier("q", "b", position=2), tier("q", "c", position=3)]
    core = make([QueueParams(name="q", strategy=S.RING_PROGRESSIVELY, ring_progressively_delay=0)], agents, tiers,
                [member("q", "m1", T - 10)])
    assert agents_of(core.dispatch(T)) == ["a"]
    assert core.next_change(T) == T + 10
    for s in range(1, 10):
        assert core.dispatch(T + s) == []
    assert agents_of(core.dispatch(T + 10)) == ["b"]  # a keeps ringing
    assert core.next_change(T + 10) == T + 20


def test_ring_progressively_next_leg_may_be_an_agent_whose_leg_timed_out():
    agents = [agent("a"), agent("b")]
    tiers = [tier("q", "a", position=1), tier("q", "b", position=2)]
    core = make([QueueParams(name="q", strategy=S.RING_PROGRESSIVELY, ring_progressively_delay=3)], agents, tiers,
                [member("q", "m1", T - 10)])
    first = core.dispatch(T)
    fail(core, first[0], T + 2)
    assert agents_of(core.dispatch(T + 3)) == ["a"]


# -- round-robin -----------------------------------------------------------------------------
def rr_core():
    agents = [agent(n) for n in "abc"]
    tiers = [tier("q", "a", position=1), tier("q", "b", position=2), tier("q", "c", position=3)]
    return make([("q", S.ROUND_ROBIN), ("other", S.LONGEST_IDLE_AGENT)], agents, tiers + [tier("other", "c")])


def next_rr_offer(core, uuid, now, queue="q"):
    """One caller joins, is offered, talks and hangs up within the second."""
    core.load_rows("members", [member(queue, uuid, now - 1)])
    offers = core.dispatch(now)
    assert len(offers) == 1
    answer_and_end(core, offers[0], now, now)
    return offers[0].agent


def test_round_robin_rotates_through_positions_then_wraps():
    core = rr_core()
    got = [next_rr_offer(core, f"m{i}", T + i) for i in range(4)]
    assert got == ["a", "b", "c", "a"]


def test_round_robin_pointer_moves_with_an_offer_in_another_queue():
    core = rr_core()
    assert next_rr_offer(core, "m1", T) == "a"  # pointer on a
    assert next_rr_offer(core, "o1", T + 1, queue="other") == "c"  # c offered from another queue
    # pointer on c (position 3): part 1 is empty, the walk wraps to the first candidate
    assert next_rr_offer(core, "m2", T + 2) == "a"


def test_round_robin_pointer_moves_with_agent_set_state_receiving():
    core = rr_core()
    core.agent_set("state", "b", S.STATE_RECEIVING, T)  # writes last_offered_call = T
    core.agent_set("state", "b", S.STATE_WAITING, T)
    assert row(core, "agents", "b")["last_offered_call"] == T
    assert next_rr_offer(core, "m1", T + 1) == "c"


def test_round_robin_pointer_tie_takes_the_smallest_name():
    agents = [agent("a", last_offered_call=T - 5), agent("b", last_offered_call=T - 5), agent("c")]
    tiers = [tier("q", "a", position=2), tier("q", "b", position=1), tier("q", "c", position=3)]
    core = make([("q", S.ROUND_ROBIN)], agents, tiers, [member("q", "m1", T - 10)])
    # pointer = a (position 2) -> part 1 starts after position 2 -> c
    assert agents_of(core.dispatch(T)) == ["c"]


def test_round_robin_part_one_can_start_on_a_higher_level():
    # pointer on a level-2 agent: part 1 (level 2, position > 1) comes before level 1 (QUIRK)
    agents = [agent("low"), agent("p", last_offered_call=T - 5), agent("hi")]
    tiers = [tier("q", "low", level=1), tier("q", "p", level=2, position=1), tier("q", "hi", level=2, position=2)]
    core = make([("q", S.ROUND_ROBIN)], agents, tiers, [member("q", "m1", T - 10)])
    assert agents_of(core.dispatch(T)) == ["hi"]


# -- top-down --------------------------------------------------------------------------------
def td_core(b_state=S.STATE_WAITING):
    agents = [agent("a"), agent("b", state=b_state), agent("c")]
    tiers = [tier("q", "a", position=1), tier("q", "b", position=2), tier("q", "c", position=3)]
    return make([("q", S.TOP_DOWN)], agents, tiers, [member("q", "m1", T - 10)])


def test_top_down_walks_one_offer_at_a_time_and_wraps_after_the_end():
    core = td_core()
    got = []
    for s in range(5):
        offers = core.dispatch(T + s)
        got.append(agents_of(offers))
        for o in offers:
            fail(core, o, T + s, S.HANGUP_ORIGINATOR_CANCEL)
    # after c the walk is empty once (pointer unset), then starts from the top again
    assert got == [["a"], ["b"], ["c"], [], ["a"]]


def test_top_down_busy_agent_later_in_the_list_keeps_the_member_from_wrapping():
    core = td_core(b_state=S.STATE_IN_A_QUEUE_CALL)
    offers = core.dispatch(T)
    assert agents_of(offers) == ["a"]
    fail(core, offers[0], T, S.HANGUP_ORIGINATOR_CANCEL)
    offers = core.dispatch(T + 1)
    assert agents_of(offers) == ["c"]
    fail(core, offers[0], T + 1, S.HANGUP_ORIGINATOR_CANCEL)
    core.agent_set("state", "c", S.STATE_IN_A_QUEUE_CALL, T + 2)
    # pointer on c: nothing after it -> unset; the next pass starts at a
    assert core.dispatch(T + 2) == []
    assert agents_of(core.dispatch(T + 3)) == ["a"]
    fail(core, core.live_offers()[0], T + 3, S.HANGUP_ORIGINATOR_CANCEL)
    # pointer on a, b busy, c busy: rows exist after a, so a is not re-tried (QUIRK)
    assert core.dispatch(T + 4) == []
    assert core.dispatch(T + 5) == []


def test_top_down_pointer_is_per_member():
    agents = [agent("a"), agent("b")]
    tiers = [tier("q", "a", position=1), tier("q", "b", position=2)]
    core = make([("q", S.TOP_DOWN)], agents, tiers, [member("q", "m1", T - 20), member("q", "m2", T - 10)])
    offers = core.dispatch(T)
    assert pairs(offers) == [("m1", "a"), ("m2", "b")]


# -- one agent, one offer --------------------------------------------------------------------
def test_an_agent_is_never_offered_twice_across_queues():
    agents = [agent("a")]
    tiers = [tier("q1", "a"), tier("q2", "a")]
    core = make(["q1", "q2"], agents, tiers, [member("q1", "m1", T - 5), member("q2", "m2", T - 50)])
    offers = core.dispatch(T)
    assert pairs(offers) == [("m2", "a")]  # higher score first, across queues
    core.agent_set("state", "a", S.STATE_WAITING, T)  # an operator resets the state while it rings
    assert core.dispatch(T + 1) == []


def test_member_order_is_score_then_creation_order():
    agents = [agent("a"), agent("b"), agent("c")]
    tiers = [tier("q", n) for n in "abc"]
    members = [member("q", "late", T - 10), member("q", "boosted", T - 5, base_score=100),
               member("q", "tie", T - 10)]
    core = make(["q"], agents, tiers, members)
    assert [o.member_uuid for o in core.dispatch(T)] == ["boosted", "late", "tie"]
