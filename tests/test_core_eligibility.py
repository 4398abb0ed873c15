"""Tier rules (§4.6, every row of the worked-examples table) and eligibility (§4.5 steps 4-7)."""

from __future__ import annotations

import pytest

from ccfast import strings as S
from ccfast.params import QueueParams
from tests.test_core_fixtures import T, actions, agent, agents_of, make, member, row, tier

J = T  # the member's join time
BUSY = {"state": S.STATE_IN_A_QUEUE_CALL}
OUT = {"status": S.STATUS_LOGGED_OUT}
BREAK = {"status": S.STATUS_ON_BREAK}


def tier_rule_core(no_agent_no_wait, multiply, a=None, b=None, c=None):
    q = QueueParams(name="q", strategy=S.LONGEST_IDLE_AGENT, tier_rules_apply=True, tier_rule_wait_second=30,
                    tier_rule_wait_multiply_level=multiply, tier_rule_no_agent_no_wait=no_agent_no_wait)
    agents = [agent("A", **(a or {})), agent("B", **(b or {})), agent("C", **(c or {}))]
    tiers = [tier("q", "A", level=1), tier("q", "B", level=2), tier("q", "C", level=3)]
    return make([q], agents, tiers, [member("q", "m", J)])


def earliest(no_agent_no_wait, multiply, who, **states):
    """First second (offset from J) at which `who` is offered, each second on a fresh core."""
    for dt in range(0, 121):
        offers = tier_rule_core(no_agent_no_wait, multiply, **states).dispatch(J + dt)
        if offers:
            assert agents_of(offers) == [who], (dt, agents_of(offers))
            return dt
    return None


@pytest.mark.parametrize(
    "nanw, mult, who, states, at",
    [
        # true / true, A Available and Waiting -> A at J
        (True, True, "A", {}, 0),
        # true / true, A in a queue call -> B at J+60; C at J+90 if B is busy too
        (True, True, "B", {"a": BUSY}, 60),
        (True, True, "C", {"a": BUSY, "b": BUSY}, 90),
        # true / false, A busy -> B at J+30, C at J+30 (all higher levels open together)
        (True, False, "B", {"a": BUSY}, 30),
        (True, False, "C", {"a": BUSY, "b": BUSY}, 30),
        # false / true -> A at J+30 (level 1 is gated too: QUIRK), B at J+60, C at J+90
        (False, True, "A", {}, 30),
        (False, True, "B", {"a": BUSY}, 60),
        (False, True, "C", {"a": BUSY, "b": BUSY}, 90),
        # false / false -> A at J+30, then B and C open at J+30 as well
        (False, False, "A", {}, 30),
        (False, False, "B", {"a": BUSY}, 30),
        (False, False, "C", {"a": BUSY, "b": BUSY}, 30),
        # true / true, A logged out -> B is the first row (level 2 > 0, count 0) -> B at J
        (True, True, "B", {"a": OUT}, 0),
        # true / true, A on break -> A is counted -> B at J+60
        (True, True, "B", {"a": BREAK}, 60),
    ],
)
def test_tier_rule_worked_examples(nanw, mult, who, states, at):
    assert earliest(nanw, mult, who, **states) == at


def test_tier_rule_wait_expiry_is_reported_by_next_change():
    core = tier_rule_core(True, True, a=BUSY)
    assert core.dispatch(J) == []
    assert core.next_change(J) == J + 30  # level-1 threshold (harmless early wake-up)
    assert core.next_change(J + 30) == J + 60
    assert agents_of(core.dispatch(J + 60)) == ["B"]


# -- eligibility (§4.5 step 4) ---------------------------------------------------------------
def single(**kw):
    return make(["q"], [agent("a", **kw)], [tier("q", "a")], [member("q", "m", T - 10)])


def test_wrap_up_is_strict():
    core = single(last_bridge_end=T, wrap_up_time=10)
    assert core.dispatch(T + 10) == []
    assert core.next_change(T + 10) == T + 11
    assert agents_of(core.dispatch(T + 11)) == ["a"]


def test_wrap_up_zero_still_skips_the_second_the_call_ended():
    core = single(last_bridge_end=T)
    assert core.dispatch(T) == []
    assert agents_of(core.dispatch(T + 1)) == ["a"]


def test_ready_time_is_inclusive():
    core = single(ready_time=T + 5)
    assert core.dispatch(T + 4) == []
    assert core.next_change(T) == T + 5
    assert agents_of(core.dispatch(T + 5)) == ["a"]


@pytest.mark.parametrize("kw", [
    {"status": S.STATUS_ON_BREAK},
    {"status": S.STATUS_LOGGED_OUT},
    {"state": S.STATE_IDLE},
    {"state": S.STATE_RECEIVING},
    {"status": "available"},  # W11: accepted by the API, stored as typed, invisible to dispatch
])
def test_not_offered(kw):
    assert single(**kw).dispatch(T) == []


def test_lower_case_waiting_state_and_on_demand_status_are_offered():
    assert agents_of(single(state="waiting").dispatch(T)) == ["a"]  # state compared with strcasecmp
    assert agents_of(single(status=S.STATUS_AVAILABLE_ON_DEMAND).dispatch(T)) == ["a"]


@pytest.mark.parametrize("state, offered", [
    (S.TIER_READY, True), (S.TIER_NO_ANSWER, True), ("ready", True), (S.TIER_STANDBY, False),
    (S.TIER_OFFERING, False), (S.TIER_ACTIVE_INBOUND, False),
])
def test_tier_state(state, offered):
    core = make(["q"], [agent("a")], [tier("q", "a", state=state)], [member("q", "m", T - 10)])
    assert bool(core.dispatch(T)) is offered


def test_skip_agents_with_external_calls():
    core = make([QueueParams(name="q"), QueueParams(name="r", skip_agents_with_external_calls=False)],
                [agent("a", external_calls_count=1)], [tier("q", "a"), tier("r", "a")],
                [member("q", "m1", T - 100), member("r", "m2", T - 10)])
    assert [(o.queue, o.agent) for o in core.dispatch(T)] == [("r", "a")]


def test_agent_track_counts_external_calls():
    core = single()
    core.agent_track("a", 1)
    assert core.dispatch(T) == []
    core.agent_track("a", -1)
    assert agents_of(core.dispatch(T)) == ["a"]


def test_agent_of_another_box_is_skipped_and_stops_ring_all():
    agents = [agent("other", instance_id="box2"), agent("mine")]
    tiers = [tier("q", "other", position=1), tier("q", "mine", position=2)]
    core = make([("q", S.LONGEST_IDLE_AGENT)], agents, tiers, [member("q", "m", T - 10)])
    assert agents_of(core.dispatch(T)) == ["mine"]
    core = make([("q", S.RING_ALL)], agents, tiers, [member("q", "m", T - 10, serving_agent=S.RING_ALL)])
    assert core.dispatch(T) == []


# -- reserve-agents (§4.5 step 6) and the member claim (step 7) ------------------------------
def test_reserve_agents_reserves_then_offers():
    core = make(["q"], [agent("a")], [tier("q", "a")], [member("q", "m", T - 10)], reserve=True)
    core.drain_events()
    assert agents_of(core.dispatch(T)) == ["a"]
    states = [h["CC-Agent-State"] for a, h in core.drain_events() if a == S.ACTION_AGENT_STATE_CHANGE]
    assert states == [S.STATE_RESERVED, S.STATE_RECEIVING]


def test_reserve_agents_needs_the_exact_waiting_spelling():
    core = make(["q"], [agent("a", state="waiting")], [tier("q", "a")], [member("q", "m", T - 10)], reserve=True)
    assert core.dispatch(T) == []  # the conditional UPDATE matches state='Waiting' exactly


def test_w6_failed_claim_releases_the_reservation():
    # `Ring-All` never matches the member's `ring-all` marker (W11), so every claim fails
    core = make([("q", "Ring-All")], [agent("a")], [tier("q", "a")],
                [member("q", "m", T - 10, serving_agent=S.RING_ALL, state=S.MEMBER_TRYING)], reserve=True)
    core.drain_events()
    assert core.dispatch(T) == []
    assert row(core, "agents", "a")["state"] == S.STATE_WAITING  # mod_callcenter leaves it Reserved
    evs = core.drain_events()
    assert [h["CC-Agent-State"] for a, h in evs if a == S.ACTION_AGENT_STATE_CHANGE] == [
        S.STATE_RESERVED, S.STATE_WAITING]


def test_ring_all_spelled_differently_never_offers():
    core = make([("q", "Ring-All")], [agent("a")], [tier("q", "a")], [member("q", "m", T - 10)])
    assert core.dispatch(T) == []
    assert core.dispatch(T + 1) == []
    assert row(core, "members", "m")["state"] == S.MEMBER_TRYING  # Trying on the first pass anyway


def test_unknown_queue_members_are_deleted_by_the_next_pass():
    core = make(["q"], [agent("a")], [tier("q", "a")], [member("gone", "m", T - 10)])
    core.drain_journal()
    core.dispatch(T)
    assert core.rows("members") == []
    assert core.drain_journal() == [("members", "delete", ("m",), {})]


def test_strategy_change_from_ring_all_returns_trying_members_to_waiting():
    core = make([("q", S.RING_ALL)], [agent("a", state=S.STATE_IDLE)], [tier("q", "a")],
                [member("q", "m", T - 10, serving_agent=S.RING_ALL)])
    core.dispatch(T)
    assert row(core, "members", "m")["state"] == S.MEMBER_TRYING
    core.queue_set(QueueParams(name="q", strategy=S.LONGEST_IDLE_AGENT))
    core.dispatch(T + 1)
    m = row(core, "members", "m")
    assert (m["state"], m["serving_agent"]) == (S.MEMBER_WAITING, "")
    core.queue_set(QueueParams(name="q", strategy=S.RING_PROGRESSIVELY))
    core.dispatch(T + 2)
    m = row(core, "members", "m")
    assert (m["state"], m["serving_agent"]) == (S.MEMBER_TRYING, S.RING_PROGRESSIVELY)
    assert actions(core.drain_events()) == []  # no events for these row changes
