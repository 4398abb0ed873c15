"""Property test of the core's own invariants under random service-like traffic.

Joins, cancels, passes, offer results, status/state/tier changes in random order. After every step:
  * an agent has at most one live offer, and every live offer's agent is Receiving/Reserved-free
    (its row says Receiving or In a queue call, or an operator changed it);
  * the incremental indexes agree with a core rebuilt from ``rows()``: for strategies without
    per-member channel memory, a fresh core loaded with the same rows (and no live offers) makes
    the same offers in the same order, provided no live offer exists.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ccfast import strings as S
from ccfast._core import Core
from ccfast.params import QueueParams
from tests.test_core_fixtures import T, agent, tier

AGENTS = ("a1", "a2", "a3", "B", "c10", "c9")
QUEUES = ("q1", "q2")
MEMORYLESS = (S.LONGEST_IDLE_AGENT, S.AGENT_WITH_LEAST_TALK_TIME, S.AGENT_WITH_FEWEST_CALLS,
              S.SEQUENTIALLY_BY_AGENT_ORDER, S.RING_ALL, "no-such-strategy")

steps = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.sampled_from(QUEUES)),
        st.tuples(st.just("pass")),
        st.tuples(st.just("result"), st.sampled_from(("answer_end", "answer_only", "fail", "busy", "gone"))),
        st.tuples(st.just("status"), st.sampled_from(AGENTS),
                  st.sampled_from((S.STATUS_AVAILABLE, S.STATUS_ON_BREAK, S.STATUS_LOGGED_OUT,
                                   S.STATUS_AVAILABLE_ON_DEMAND))),
        st.tuples(st.just("state"), st.sampled_from(AGENTS), st.sampled_from((S.STATE_WAITING, S.STATE_IDLE))),
        st.tuples(st.just("level"), st.sampled_from(QUEUES), st.sampled_from(AGENTS), st.integers(1, 3)),
        st.tuples(st.just("cancel")),
        st.tuples(st.just("tick"), st.integers(1, 15)),
    ),
    min_size=5, max_size=40,
)


def fresh_offers(core: Core, queues: list[QueueParams], now: int) -> list[tuple[str, str]]:
    clone = Core()
    for q in queues:
        clone.queue_set(q)
    clone.load_rows("agents", core.rows("agents"))
    clone.load_rows("tiers", core.rows("tiers"))
    clone.load_rows("members", core.rows("members"))
    return [(o.member_uuid, o.agent) for o in clone.dispatch(now)]


@settings(max_examples=150, deadline=None)
@given(strategies=st.tuples(st.sampled_from(MEMORYLESS), st.sampled_from(MEMORYLESS)), script=steps,
       levels=st.lists(st.integers(1, 2), min_size=12, max_size=12))
def test_indexes_match_a_rebuilt_core(strategies, script, levels):
    queues = [QueueParams(name=n, strategy=s) for n, s in zip(QUEUES, strategies)]
    core = Core()
    for q in queues:
        core.queue_set(q)
    core.load_rows("agents", [agent(n, last_bridge_end=T - 50 - i, talk_time=i * 7 % 5, calls_answered=i % 3)
                              for i, n in enumerate(AGENTS)])
    core.load_rows("tiers", [tier(q, n, level=levels[i * 2 + j], position=(i + j) % 4)
                             for i, n in enumerate(AGENTS) for j, q in enumerate(QUEUES) if (i + j) % 3])
    now = T
    n = 0
    for step in script:
        kind = step[0]
        if kind == "join":
            n += 1
            core.member_join(step[1], f"m{n}", f"s{n}", f"{n % 3}", "", now, 0, now)
        elif kind == "pass":
            core.discard_abandoned(now)
            core.dispatch(now)
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
                            core.offer_ended(o.offer_id, now + 1)
                elif step[1] == "gone":
                    core.offer_member_gone(o.offer_id, now)
                else:
                    core.offer_failed(o.offer_id, S.HANGUP_NO_ANSWER if step[1] == "fail" else S.HANGUP_USER_BUSY, now)
            elif o.phase_name == "bridged":
                core.offer_ended(o.offer_id, now)
        elif kind == "status":
            for c in core.agent_set("status", step[1], step[2], now):
                core.offer_failed(c.offer_id, c.cause, now)
        elif kind == "state":
            core.agent_set("state", step[1], step[2], now)
        elif kind == "level":
            try:
                core.tier_set("level", step[1], step[2], str(step[3]))
            except Exception:
                pass  # no such tier
        elif kind == "cancel":
            waiting = [r["uuid"] for r in core.rows("members") if r["state"] in (S.MEMBER_WAITING, S.MEMBER_TRYING)]
            if waiting:
                for c in core.member_cancel(waiting[0], S.CANCEL_BREAK_OUT, now):
                    core.offer_failed(c.offer_id, c.cause, now)
        elif kind == "tick":
            now += step[1]
        live = core.live_offers()
        agents = [o.agent for o in live]
        assert len(agents) == len(set(agents)), agents
        assert all(core.agent_offer(a) is not None for a in agents)
        if not live:
            # rows alone determine the next pass for memoryless strategies
            probe = now + 1
            assert fresh_offers(core, queues, probe) == [(o.member_uuid, o.agent) for o in core.dispatch(probe)]
            for o in core.live_offers():  # undo the probe's offers
                core.offer_failed(o.offer_id, S.HANGUP_ORIGINATOR_CANCEL, probe)
            now = probe
