"""Differential property test: the Cython core against the SQL oracle (mod_callcenter's algorithm).

For random states (tests/strategies_state.py) both sides get the same calls: load the rows, run a
dispatch pass, apply random offer results (answered+bridged+ended, answered+bridged, failed with a
random cause, left ringing), run another pass, and so on. After every step they must agree on the
offers (member, agent, queue, in order), on answer outcomes, and on every row of agents, tiers
and members.

`random` queues: the two sides use different PRNGs, so the core's pick is handed to the oracle as a
hint (`Oracle.random_hint`): the oracle tries that agent first *within its level*, after the level
order and all eligibility checks. If the core's pick was not an eligible agent of the right level,
the oracle picks someone else (or no one) and the offers differ.

Examples: the `differential` hypothesis profile (tests/strategies_state.py): 500 in CI,
50 with HYPOTHESIS_PROFILE=dev, or CCFAST_DIFF_EXAMPLES. Regular (non-hypothesis) tests at the end
pin minimal cases found by this test and timing edges random search rarely hits.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from ccfast import strings as S
from ccfast.oracle import Oracle
from ccfast.params import QueueParams
from tests.strategies_state import (
    DIFFERENTIAL, NOW, RESULTS, State, agent_row, member_row, queue_params, states, tier_row,
)

from ccfast._core import Core  # noqa: E402  (the module under test; an ImportError is a real failure)

TABLES = ("agents", "tiers", "members")


class Mismatch(AssertionError):
    pass


@dataclasses.dataclass
class Pair:
    """One offer as seen by both sides, and how far it got."""

    core_id: int
    oracle_id: int
    queue: str
    phase: str = "ringing"  # ringing, bridged, done


class Differential:
    """Drives a Core and an Oracle with identical calls and checks they agree after every step."""

    def __init__(self, state: State, core_factory=Core, data: st.DataObject | None = None):
        self.state = state
        self.data = data
        self.core = core_factory(state.instance_id, state.reserve_agents, 0)
        self.oracle = Oracle(state.instance_id, state.reserve_agents, 0)
        state.load_into(self.core)
        state.load_into(self.oracle)
        self.random_queues = {q.name for q in state.queues if q.strategy.lower() == S.RANDOM}
        self.pairs: list[Pair] = []
        self.log: list[str] = []
        self.check_rows("load")

    # -- comparison ----------------------------------------------------------------------
    def check_rows(self, step: str) -> None:
        for table in TABLES:
            core_rows = [dict(r) for r in self.core.rows(table)]
            oracle_rows = self.oracle.rows(table)
            if core_rows != oracle_rows:
                raise Mismatch(f"{step}: {table} rows differ\n{self._diff(core_rows, oracle_rows)}\nlog: {self.log}")

    @staticmethod
    def _diff(core_rows: list[dict], oracle_rows: list[dict]) -> str:
        lines = []
        for i in range(max(len(core_rows), len(oracle_rows))):
            c = core_rows[i] if i < len(core_rows) else None
            o = oracle_rows[i] if i < len(oracle_rows) else None
            if c != o:
                if c is None or o is None:
                    lines.append(f"  row {i}: core={c} oracle={o}")
                else:
                    cols = {k: (c.get(k), o.get(k)) for k in set(c) | set(o) if c.get(k) != o.get(k)}
                    lines.append(f"  row {i} ({o.get('name') or o.get('uuid') or o.get('agent')}): core/oracle {cols}")
        return "\n".join(lines)

    # -- steps ---------------------------------------------------------------------------
    def dispatch(self, now: int) -> list[Pair]:
        discard = getattr(self.core, "discard_abandoned", None)
        if discard is not None:  # the oracle's pass does this itself (§4.2 step 3)
            discard(now)
        core_offers = self.core.dispatch(now)
        self.oracle.random_hint = {o.member_uuid: o.agent for o in core_offers if o.queue in self.random_queues}
        oracle_offers = self.oracle.dispatch(now)
        got = [(o.member_uuid, o.agent, o.queue) for o in core_offers]
        want = [(o.member_uuid, o.agent, o.queue) for o in oracle_offers]
        self.log.append(f"dispatch@{now - NOW}: {want}")
        if got != want:
            raise Mismatch(f"dispatch@{now - NOW}: offers differ\n core:   {got}\n oracle: {want}\nlog: {self.log}")
        new = [Pair(c.offer_id, o.offer_id, o.queue) for c, o in zip(core_offers, oracle_offers)]
        self.pairs.extend(new)
        self.check_rows(f"dispatch@{now - NOW}")
        return new

    def fail(self, pair: Pair, cause: str, now: int) -> None:
        self.log.append(f"fail #{pair.oracle_id} {cause}@{now - NOW}")
        self.core.offer_failed(pair.core_id, cause, now)
        self.oracle.offer_failed(pair.oracle_id, cause, now)
        pair.phase = "done"
        self.check_rows(self.log[-1])

    def answer(self, pair: Pair, now: int) -> bool:
        self.log.append(f"answer #{pair.oracle_id}@{now - NOW}")
        ca = self.core.offer_answered(pair.core_id, f"leg-{pair.oracle_id}", now)
        oa = self.oracle.offer_answered(pair.oracle_id, f"leg-{pair.oracle_id}", now)
        by_core = {p.core_id: p for p in self.pairs}
        core_cancel = sorted((by_core[c.offer_id].oracle_id, c.cause) for c in ca.cancel)
        oracle_cancel = sorted((c.offer_id, c.cause) for c in oa.cancel)
        if bool(ca.won) != oa.won or core_cancel != oracle_cancel:
            raise Mismatch(f"{self.log[-1]}: core won={ca.won} cancel={core_cancel}, "
                           f"oracle won={oa.won} cancel={oracle_cancel}\nlog: {self.log}")
        self.check_rows(self.log[-1])
        if not oa.won:
            pair.phase = "done"
            return False
        by_oracle = {p.oracle_id: p for p in self.pairs}
        for offer_id, cause in oracle_cancel:  # the service hangs those legs up ...
            other = by_oracle[offer_id]
            if self.data is not None and self.data.draw(st.booleans(), label="answered in the race"):
                self.answer(other, now)  # ... unless that leg answered first: it must lose (W7)
            else:
                self.fail(other, cause, now)
        return True

    def bridge(self, pair: Pair, now: int) -> None:
        self.log.append(f"bridge #{pair.oracle_id}@{now - NOW}")
        self.core.offer_bridged(pair.core_id, now)
        self.oracle.offer_bridged(pair.oracle_id, now)
        pair.phase = "bridged"
        self.check_rows(self.log[-1])

    def end(self, pair: Pair, now: int) -> None:
        self.log.append(f"end #{pair.oracle_id}@{now - NOW}")
        self.core.offer_ended(pair.core_id, now)
        self.oracle.offer_ended(pair.oracle_id, now)
        pair.phase = "done"
        self.check_rows(self.log[-1])

    def apply(self, pair: Pair, result: str, now: int) -> None:
        """Apply one scripted result to a live offer."""
        if pair.phase == "bridged":
            if result != "ringing":
                self.end(pair, now)
            return
        if pair.phase != "ringing" or result == "ringing":
            return
        if result in ("bridge_end", "bridge_only"):
            if self.answer(pair, now):
                self.bridge(pair, now)
                if result == "bridge_end":
                    self.end(pair, now + 1)
        else:
            self.fail(pair, result, now)


def run(state: State, data: st.DataObject | None, passes: int = 3, core_factory=Core) -> Differential:
    d = Differential(state, core_factory, data)
    now = state.now
    for _ in range(passes):
        d.dispatch(now)
        if data is None:
            now += 1
            continue
        for pair in [p for p in d.pairs if p.phase != "done"]:
            now += data.draw(st.integers(0, 4), label="dt")
            d.apply(pair, data.draw(RESULTS, label="result"), now)
        if data.draw(st.integers(0, 5), label="reconfigure?") == 0:
            # `queue reload` with new params (maybe a new strategy): members and offers are kept
            old = data.draw(st.sampled_from(state.queues), label="queue")
            new = data.draw(queue_params(old.name), label="new params")
            d.log.append(f"queue_set {new.name} {new.strategy}")
            d.core.queue_set(dataclasses.replace(new))
            d.oracle.queue_set(dataclasses.replace(new))
            d.random_queues = {q for q in d.random_queues if q != new.name}
            if new.strategy.lower() == S.RANDOM:
                d.random_queues.add(new.name)
        # small steps, or exactly a ring-progressively delay / tier-rule wait away
        now += data.draw(st.one_of(st.integers(0, 12), st.sampled_from((1, 3, 10, 15, 30, 60, 90))), label="next pass")
    return d


@DIFFERENTIAL
@given(state=states(max_agents=12, max_members=16), data=st.data())
def test_core_matches_oracle(state, data):
    run(state, data, passes=5)


# -- minimal cases found by the property test (regular tests) ------------------------------
def _state(queues, agents, tiers, members, now=NOW, instance_id=S.SINGLE_BOX, reserve=False) -> State:
    return State(instance_id, reserve, queues, agents, tiers, members, now)


def test_smoke_every_strategy_one_pass():
    queues = [QueueParams(name=f"q{i}", strategy=s) for i, s in enumerate(S.STRATEGIES)]
    agents = [agent_row(f"a{i}", last_bridge_end=NOW - 100 + i) for i in range(6)]
    tiers = [tier_row(q.name, a["name"], level=1 + i % 2, position=i) for q in queues for i, a in enumerate(agents)]
    members = [member_row(q.name, f"m{i}", NOW - 10 * i, serving_agent=q.strategy if "ring" in q.strategy else "")
               for i, q in enumerate(queues)]
    run(_state(queues, agents, tiers, members), None, passes=2)


def test_regression_top_down_pointer_reset_early_by_max_no_answer():
    """Found by the property test in the core's first version (7320ae6, core was wrong; fixed
    since). Top-down member m walked to B (level 1, the last row); B's
    no-answer reaches max-no-answer, so B goes On Break (still a candidate row). The next pass
    evaluates m with its pointer (1, 0): the query returns no row, so mod_callcenter unsets the
    pointer and makes NO offer in that pass (§4.2 step 10, §4.3); the walk restarts at A one pass
    later. The core restarted the walk in the same pass and offered A at once."""
    q = QueueParams(name="q", strategy=S.TOP_DOWN)
    agents = [agent_row("A"), agent_row("B", max_no_answer=1)]
    tiers = [tier_row("q", "A", level=0, position=1), tier_row("q", "B", level=1, position=0)]
    d = Differential(_state([q], agents, tiers, [member_row("q", "m", NOW)]))
    (p,) = d.dispatch(NOW)  # m -> A
    d.fail(p, S.HANGUP_NO_ANSWER, NOW)
    (p,) = d.dispatch(NOW + 1)  # m -> B (level > 0)
    d.fail(p, S.HANGUP_NO_ANSWER, NOW + 1)  # B: max-no-answer -> On Break
    assert d.dispatch(NOW + 1) == []  # walk past the end: pointer unset, no offer
    assert [(x.queue,) for x in d.dispatch(NOW + 2)] == [("q",)]  # then A again


# -- deterministic scenarios, core vs oracle (timing edges that random search rarely hits) ----
def test_scenario_ring_progressively_delay_edges():
    for delay in (0, 3):
        q = QueueParams(name="q", strategy=S.RING_PROGRESSIVELY, ring_progressively_delay=delay)
        agents = [agent_row(n) for n in "abc"]
        tiers = [tier_row("q", n, position=i) for i, n in enumerate("abc")]
        d = Differential(_state([q], agents, tiers, [member_row("q", "m", NOW, serving_agent=S.RING_PROGRESSIVELY)]))
        step = delay or 10
        assert len(d.dispatch(NOW)) == 1
        assert d.dispatch(NOW + step - 1) == []
        (p,) = d.dispatch(NOW + step)
        d.fail(p, S.HANGUP_NO_ANSWER, NOW + step + 1)
        assert len(d.dispatch(NOW + 2 * step)) == 1


def test_scenario_round_robin_pointer_ties_and_other_queue():
    queues = [QueueParams(name="rr", strategy=S.ROUND_ROBIN), QueueParams(name="li")]
    agents = [agent_row(n, last_offered_call=NOW - 1 if n in "ac" else 0) for n in "abcd"]
    tiers = [tier_row("rr", n, 1, i + 1) for i, n in enumerate("abcd")] + [tier_row("li", "c")]
    members = [member_row("rr", f"r{i}", NOW - 10 + i) for i in range(3)] + [member_row("li", "l", NOW)]
    d = Differential(_state(queues, agents, tiers, members))
    for t in range(4):
        for p in d.dispatch(NOW + 2 * t):
            d.fail(p, S.HANGUP_ORIGINATOR_CANCEL, NOW + 2 * t)


def test_scenario_tier_rule_examples():
    for no_wait in (True, False):
        for multiply in (True, False):
            for a_kw in ({}, {"state": S.STATE_IN_A_QUEUE_CALL}, {"status": S.STATUS_ON_BREAK},
                         {"status": S.STATUS_LOGGED_OUT}):
                q = QueueParams(name="q", tier_rules_apply=True, tier_rule_wait_second=30,
                                tier_rule_wait_multiply_level=multiply, tier_rule_no_agent_no_wait=no_wait)
                agents = [agent_row("a", **a_kw), agent_row("b", state=S.STATE_IN_A_QUEUE_CALL), agent_row("c")]
                tiers = [tier_row("q", "a", 1), tier_row("q", "b", 2), tier_row("q", "c", 3)]
                d = Differential(_state([q], agents, tiers, [member_row("q", "m", NOW)]))
                for t in (0, 29, 30, 59, 60, 89, 90):
                    if d.dispatch(NOW + t):
                        break
