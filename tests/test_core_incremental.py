"""The core's incremental pass state: a pass with nothing to do touches no agent, and
``next_change`` comes from heaps and per-queue caches instead of scans.

Unit tests pin the early exits (a queue becomes worth walking again when an agent's wrap-up ends,
an external call ends, a member joins; next_change returns exactly the second a decision can
change). A property test drives random service-like traffic (time going back included) and after
every step compares the incremental state with a recomputation from scratch (``_selfcheck``) and
``next_change`` with a scan of every free agent and queue (``_scan_next_change``).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ccfast import strings as S
from ccfast._core import Core
from ccfast.params import QueueParams
from tests.test_core_fixtures import T, agent, agents_of, join, make, member, tier


def consistent(core: Core, now: int) -> None:
    nc = core.next_change(now)
    assert core._selfcheck() == []
    assert nc == core._scan_next_change(now)


# -- early exits -------------------------------------------------------------------------------
def test_idle_pass_walks_nobody_and_touches_no_agent():
    core = make(["q1", "q2"], [agent(f"a{i}") for i in range(50)],
                [tier("q1" if i % 2 else "q2", f"a{i}") for i in range(50)])
    walks = core.n_walks
    assert core.dispatch(T) == []
    assert core.next_change(T) is None
    assert core.n_walks == walks
    consistent(core, T)


def test_queue_is_walked_again_when_a_wrap_up_ends():
    core = make(["q"], [agent("a", last_bridge_end=T, wrap_up_time=10)], [tier("q", "a")])
    join(core, "q", "m", T + 1)
    assert core.dispatch(T + 1) == []
    assert core.next_change(T + 1) == T + 11  # strict wrap-up: offerable from lbe + wrap + 1
    assert core.dispatch(T + 10) == []
    consistent(core, T + 10)
    assert agents_of(core.dispatch(T + 11)) == ["a"]


def test_next_change_is_the_second_both_wrap_up_and_ready_time_are_over():
    core = make(["q"], [agent("a", last_bridge_end=T, wrap_up_time=5, ready_time=T + 20)], [tier("q", "a")])
    join(core, "q", "m", T)
    assert core.next_change(T) == T + 20  # wrap-up alone ends at T + 6, but ready_time holds it
    assert core.dispatch(T + 19) == []
    assert agents_of(core.dispatch(T + 20)) == ["a"]


def test_agent_freed_by_a_call_end_is_ready_after_its_wrap_up():
    core = make(["q"], [agent("a", wrap_up_time=3)], [tier("q", "a")])
    join(core, "q", "m1", T)
    o = core.dispatch(T)[0]
    core.offer_answered(o.offer_id, "leg", T)
    core.offer_bridged(o.offer_id, T)
    core.member_answered_exit("m1")
    join(core, "q", "m2", T + 5)
    assert core.dispatch(T + 5) == []  # in a call
    core.offer_ended(o.offer_id, T + 7)
    assert core.dispatch(T + 7) == []
    assert core.next_change(T + 7) == T + 11
    consistent(core, T + 8)
    assert core.dispatch(T + 10) == []
    assert agents_of(core.dispatch(T + 11)) == ["a"]


def test_external_call_end_makes_the_queue_worth_walking_again():
    core = make([QueueParams(name="q", skip_agents_with_external_calls=True)], [agent("a")], [tier("q", "a")])
    core.agent_track("a", 1)
    join(core, "q", "m", T)
    assert core.dispatch(T) == []
    consistent(core, T)
    core.agent_track("a", -1)
    consistent(core, T)
    assert agents_of(core.dispatch(T)) == ["a"]


def test_time_going_back_re_evaluates_readiness():
    core = make(["q"], [agent("a", last_bridge_end=T, wrap_up_time=10)], [tier("q", "a")])
    assert core.dispatch(T + 30) == []  # nobody waiting; a is ready as of T + 30
    join(core, "q", "m", T + 30)
    assert core.dispatch(T + 5) == []  # earlier second: a is still in wrap-up there
    consistent(core, T + 5)
    assert core.next_change(T + 5) == T + 11
    assert agents_of(core.dispatch(T + 11)) == ["a"]


def test_next_change_cache_follows_the_timer_index():
    core = make([QueueParams(name="q", max_wait_time=30)])
    join(core, "q", "m1", T)
    join(core, "q", "m2", T + 10)
    assert core.next_change(T + 10) == T + 30
    core.member_cancel("m1", S.CANCEL_BREAK_OUT, T + 12)
    assert core.next_change(T + 12) == T + 40  # the cached T + 30 went with m1
    assert core.next_change(T + 39) == T + 40
    assert [t.member_uuid for t in core.member_timeouts(T + 40)] == ["m2"]
    assert core.next_change(T + 40) == T + 73  # m1's Abandoned row: discarded after 60 s (strict)
    consistent(core, T + 40)


def test_next_change_no_agent_expiry_goes_when_an_agent_logs_in():
    q = QueueParams(name="q", max_wait_time_with_no_agent=10, max_wait_time_with_no_agent_time_reached=0)
    core = make([q], [agent("a", status=S.STATUS_ON_BREAK)], [tier("q", "a")])
    join(core, "q", "m", T)
    core.dispatch(T)
    core.agent_set("status", "a", S.STATUS_LOGGED_OUT, T + 2)  # agents vanish at E = T + 2
    assert core.next_change(T + 2) == T + 12
    assert core.next_change(T + 5) == T + 12
    core.agent_set("status", "a", S.STATUS_ON_BREAK, T + 6)  # a candidate row: the queue is staffed
    assert core.next_change(T + 6) is None
    consistent(core, T + 6)
    assert core.member_timeouts(T + 12) == []


def test_tier_rule_crossing_follows_joins_in_join_order_not_score_order():
    q = QueueParams(name="q", tier_rules_apply=True, tier_rule_wait_second=30, tier_rule_no_agent_no_wait=False)
    core = make([q], [agent("a", state=S.STATE_IN_A_QUEUE_CALL)], [tier("q", "a", level=1)])
    core.member_join("q", "early", "s1", "1", "", T, 0, T)
    core.member_join("q", "late-high-score", "s2", "2", "", T + 20, 1000, T + 20)  # first by score
    assert core.next_change(T + 20) == T + 30
    core.member_cancel("early", S.CANCEL_BREAK_OUT, T + 21)
    assert core.next_change(T + 21) == T + 50  # late-high-score's crossing; early's row is discarded later
    consistent(core, T + 21)
    core.queue_set(QueueParams(name="q", tier_rules_apply=False))
    assert core.next_change(T + 21) == T + 21 + 60 + 1  # only the discard is left
    core.queue_set(q)
    assert core.next_change(T + 22) == T + 50


def test_member_timeouts_reports_in_queue_load_order():
    core = make([QueueParams(name=n, max_wait_time=5) for n in ("z", "a", "m")])
    for n in ("m", "a", "z"):
        join(core, n, f"{n}1", T)
    assert [t.queue for t in core.member_timeouts(T + 5)] == ["z", "a", "m"]


def test_unloaded_queue_leaves_the_pass_state():
    core = make(["q"], [agent("a", status=S.STATUS_ON_BREAK)], [tier("q", "a")],
                [member("q", "m", T)])
    core.queue_remove("q")
    consistent(core, T)
    core.agent_set("status", "a", S.STATUS_AVAILABLE, T)
    assert core.dispatch(T) == []  # the next pass deletes the row
    consistent(core, T + 1)
    core.queue_set(QueueParams(name="q"))
    join(core, "q", "m2", T + 1)
    assert agents_of(core.dispatch(T + 1)) == ["a"]
    consistent(core, T + 1)


# -- property: incremental state == recomputation, under random traffic ----------------------
AGENTS = ("a1", "a2", "a3", "b")
QUEUES = ("q1", "q2")
STRATEGIES = (S.LONGEST_IDLE_AGENT, S.TOP_DOWN, S.RING_ALL, S.RING_PROGRESSIVELY, S.ROUND_ROBIN,
              S.RANDOM, S.AGENT_WITH_FEWEST_CALLS)

params = st.builds(
    QueueParams, name=st.sampled_from(QUEUES), strategy=st.sampled_from(STRATEGIES),
    max_wait_time=st.sampled_from((0, 0, 20, 45)),
    max_wait_time_with_no_agent=st.sampled_from((0, 0, 10)),
    max_wait_time_with_no_agent_time_reached=st.sampled_from((0, 5)),
    tier_rules_apply=st.booleans(), tier_rule_wait_second=st.sampled_from((0, 10, 25)),
    tier_rule_wait_multiply_level=st.booleans(), tier_rule_no_agent_no_wait=st.booleans(),
    skip_agents_with_external_calls=st.booleans(), discard_abandoned_after=st.sampled_from((5, 60)),
    ring_progressively_delay=st.sampled_from((0, 3)),
)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.sampled_from(QUEUES)),
        st.tuples(st.just("pass")),
        st.tuples(st.just("timeouts")),
        st.tuples(st.just("result"), st.sampled_from(("answer_end", "answer_only", "fail", "busy", "gone", "end"))),
        st.tuples(st.just("status"), st.sampled_from(AGENTS),
                  st.sampled_from((S.STATUS_AVAILABLE, S.STATUS_ON_BREAK, S.STATUS_LOGGED_OUT,
                                   S.STATUS_AVAILABLE_ON_DEMAND))),
        st.tuples(st.just("state"), st.sampled_from(AGENTS), st.sampled_from((S.STATE_WAITING, S.STATE_IDLE))),
        st.tuples(st.just("agent_int"), st.sampled_from(AGENTS), st.sampled_from(("wrap_up_time", "ready_time")),
                  st.integers(-2, 40)),
        st.tuples(st.just("track"), st.sampled_from(AGENTS), st.sampled_from((1, -1))),
        st.tuples(st.just("tier_state"), st.sampled_from(QUEUES), st.sampled_from(AGENTS),
                  st.sampled_from((S.TIER_READY, S.TIER_NO_ANSWER, S.TIER_STANDBY, S.TIER_OFFERING))),
        st.tuples(st.just("tier_level"), st.sampled_from(QUEUES), st.sampled_from(AGENTS), st.integers(1, 3)),
        st.tuples(st.just("tier_del"), st.sampled_from(QUEUES), st.sampled_from(AGENTS)),
        st.tuples(st.just("tier_add"), st.sampled_from(QUEUES), st.sampled_from(AGENTS)),
        st.tuples(st.just("queue_set"), params),
        st.tuples(st.just("queue_remove"), st.sampled_from(QUEUES)),
        st.tuples(st.just("cancel")),
        st.tuples(st.just("tick"), st.integers(1, 15)),
        st.tuples(st.just("back"), st.integers(1, 20)),
        st.tuples(st.just("probe"), st.integers(0, 60)),
    ),
    min_size=5, max_size=50,
)


def apply(core: Core, step: tuple, now: int, n: int) -> tuple[int, int]:
    kind = step[0]
    if kind == "join":
        if step[1] in core.queue_names():
            n += 1
            core.member_join(step[1], f"m{n}", f"s{n}", f"{n % 3}", "", now, 0, now)
    elif kind == "pass":
        core.discard_abandoned(now)
        core.dispatch(now)
    elif kind == "timeouts":
        for t in core.member_timeouts(now):
            for c in core.member_cancel(t.member_uuid, t.reason, now):
                core.offer_failed(c.offer_id, c.cause, now)
    elif kind == "result" and core.live_offers():
        o = core.live_offers()[0]
        if o.phase_name == "ringing":
            if step[1] in ("answer_end", "answer_only"):
                ans = core.offer_answered(o.offer_id, "leg", now)
                for c in ans.cancel:
                    core.offer_failed(c.offer_id, c.cause, now)
                if ans.won:
                    core.offer_bridged(o.offer_id, now)
                    core.member_answered_exit(o.member_uuid)
                    if step[1] == "answer_end":
                        core.offer_ended(o.offer_id, now)
            elif step[1] == "gone":
                core.offer_member_gone(o.offer_id, now)
            else:
                core.offer_failed(o.offer_id, S.HANGUP_NO_ANSWER if step[1] == "fail" else S.HANGUP_USER_BUSY, now)
        elif o.phase_name == "bridged":
            core.offer_ended(o.offer_id, now)
        elif o.phase_name == "answered":
            core.offer_bridge_failed(o.offer_id, step[1] == "gone", now)
    elif kind == "status":
        for c in core.agent_set("status", step[1], step[2], now):
            core.offer_failed(c.offer_id, c.cause, now)
    elif kind == "state":
        core.agent_set("state", step[1], step[2], now)
    elif kind == "agent_int":
        value = now + step[3] if step[2] == "ready_time" else step[3]
        core.agent_set(step[2], step[1], str(value), now)
    elif kind == "track":
        core.agent_track(step[1], step[2])
    elif kind in ("tier_state", "tier_level"):
        try:
            core.tier_set("state" if kind == "tier_state" else "level", step[1], step[2], str(step[3]))
        except Exception:
            pass  # no such tier / queue
    elif kind == "tier_del":
        core.tier_del(step[1], step[2])
    elif kind == "tier_add":
        try:
            core.tier_add(step[1], step[2], 1 + len(step[2]) % 2, 1 + n % 3)
        except Exception:
            pass  # exists / queue unloaded
    elif kind == "queue_set":
        core.queue_set(step[1])
    elif kind == "queue_remove":
        core.queue_remove(step[1])
    elif kind == "cancel":
        waiting = [r["uuid"] for r in core.rows("members") if r["state"] in (S.MEMBER_WAITING, S.MEMBER_TRYING)]
        if waiting:
            for c in core.member_cancel(waiting[0], S.CANCEL_BREAK_OUT, now):
                core.offer_failed(c.offer_id, c.cause, now)
    elif kind == "tick":
        now += step[1]
    elif kind == "back":
        now -= step[1]
    return now, n


@settings(max_examples=300, deadline=None)
@given(initial=st.tuples(params, params), script=steps,
       wraps=st.lists(st.integers(0, 12), min_size=len(AGENTS), max_size=len(AGENTS)))
def test_incremental_state_equals_a_recomputation(initial, script, wraps):
    core = Core(S.SINGLE_BOX, False, 3)
    seen = set()
    for i, p in enumerate(initial):
        p.name = QUEUES[i]
        core.queue_set(p)
        seen.add(p.name)
    core.load_rows("agents", [agent(a, last_bridge_end=T - 5 + i, wrap_up_time=wraps[i], ready_time=T + wraps[i] - 6)
                              for i, a in enumerate(AGENTS)])
    core.load_rows("tiers", [tier(q, a, level=1 + (i + j) % 2, position=1 + i)
                             for i, a in enumerate(AGENTS) for j, q in enumerate(QUEUES) if (i + j) % 3])
    now, n = T, 0
    consistent(core, now)
    for step in script:
        if step[0] == "probe":  # no change, a later second: the caches must still hold
            consistent(core, now + step[1])
            continue
        now, n = apply(core, step, now, n)
        consistent(core, now)
