"""Baseline mode (ccfast/oracle_mode.py): mod_callcenter's SQL pass and 100 ms cadence in the service.

* the wrapped core makes the same offers as a plain core driven by the same calls, the oracle's
  SQL pass really runs and agrees (no mismatch), and the SQLite mirror holds the core's rows;
* a disagreement is detected, counted and repaired (the check is not vacuous);
* the dispatcher in polling mode passes every 100 ms and only then: pokes do not start passes, and offers happen
  only at ticks;
* ``make_dispatch_core`` picks the mode from the configuration.
"""

from __future__ import annotations

import types

import pytest
import trio
import trio.testing

from ccfast import strings as S
from ccfast._core import Core
from ccfast.oracle_mode import POLL_INTERVAL, OracleDispatchCore, make_dispatch_core
from ccfast.params import QueueParams
from ccfast.service.clock import Clock
from ccfast.service.dispatcher import Dispatcher

NOW = 1_700_000_000
STRATEGIES = (S.LONGEST_IDLE_AGENT, S.TOP_DOWN, S.ROUND_ROBIN, S.RING_ALL, S.AGENT_WITH_FEWEST_CALLS)


def build(core) -> None:
    """Five queues (one per strategy), 12 agents each in 1-2 queues, 3 levels."""
    for i, strategy in enumerate(STRATEGIES):
        core.queue_set(QueueParams(name=f"q{i}@default", strategy=strategy))
    for a in range(12):
        name = f"agent{a:02d}"
        core.agent_add(name, S.TYPE_CALLBACK, NOW)
        core.agent_set("contact", name, f"sim/{name}", NOW)
        core.agent_set("status", name, S.STATUS_AVAILABLE, NOW)
        core.tier_add(f"q{a % 5}@default", name, 1 + a % 3, 1 + a % 4)
        if a % 3 == 0:
            core.tier_add(f"q{(a + 2) % 5}@default", name, 1, 1 + a)


def join(core, n: int, now: int, start: int = 0) -> None:
    for k in range(start, start + n):
        core.member_join(f"q{k % 5}@default", f"m{k:03d}", f"s{k:03d}", "100", "caller", now, 0, now)


def pairs(offers) -> list[tuple]:
    return [(o.member_uuid, o.agent, o.queue) for o in offers]


def test_same_offers_as_the_core_over_several_passes():
    plain, wrapped = Core(), OracleDispatchCore(Core())
    for core in (plain, wrapped):
        build(core)
        join(core, 15, NOW)
        core.drain_journal()  # as serve.run does after loading
    now = NOW + 1
    for step in range(4):
        want = plain.dispatch(now)
        got = wrapped.dispatch(now)
        assert pairs(got) == pairs(want), f"pass {step}"
        assert wrapped.mismatches == 0, wrapped.last_mismatch
        # every second offer is answered, bridged and ended; the others fail (no answer)
        for core, offers in ((plain, want), (wrapped, got)):
            for i, offer in enumerate(offers):
                if offer.strategy == S.RING_ALL and i % 2:
                    continue  # leave some ring-all legs ringing
                if i % 2 == 0:
                    core.offer_answered(offer.offer_id, f"leg-{offer.offer_id}", now)
                    core.offer_bridged(offer.offer_id, now)
                    core.offer_ended(offer.offer_id, now + 1)
                else:
                    core.offer_failed(offer.offer_id, S.HANGUP_NO_ANSWER, now)
            core.drain_journal()
        join(plain, 3, now, start=100 + 3 * step)
        join(wrapped, 3, now, start=100 + 3 * step)
        plain.drain_journal()
        wrapped.drain_journal()  # the service drains after every change
        now += 7  # past the no-answer delays and wrap-up
    assert wrapped.passes == 4
    assert sum(1 for _ in wrapped.core.rows("members")) > 0
    # the SQLite mirror holds exactly the core's rows
    for table in S.TABLE_COLUMNS:
        assert wrapped.oracle.rows(table) == [dict(r) for r in wrapped.core.rows(table)], table


def test_the_sql_pass_runs_and_a_disagreement_is_counted_and_repaired():
    wrapped = OracleDispatchCore(Core())
    build(wrapped)
    wrapped.drain_journal()
    wrapped.dispatch(NOW)  # first pass builds SQLite from the core
    join(wrapped, 1, NOW + 1)  # m000 -> q0 (longest-idle-agent)
    wrapped.drain_journal()
    # sabotage the mirror: every agent of q0 looks logged out to the oracle
    wrapped.oracle.db.execute("UPDATE agents SET status = ?", (S.STATUS_LOGGED_OUT,))
    offers = wrapped.dispatch(NOW + 1)
    assert [o.member_uuid for o in offers] == ["m000"]  # the core's decision is the one returned
    assert wrapped.mismatches == 1 and "m000" in wrapped.last_mismatch
    assert wrapped.sql_seconds > 0
    wrapped.offer_failed(offers[0].offer_id, S.HANGUP_NO_ANSWER, NOW + 1)
    wrapped.drain_journal()
    join(wrapped, 1, NOW + 10, start=1)
    wrapped.drain_journal()
    offers = wrapped.dispatch(NOW + 10)  # rebuilt from the core: agreement again
    assert offers and wrapped.mismatches == 1
    for table in S.TABLE_COLUMNS:
        assert wrapped.oracle.rows(table) == [dict(r) for r in wrapped.core.rows(table)], table


def test_next_change_is_none_and_unknown_attributes_are_the_cores():
    wrapped = OracleDispatchCore(Core())
    build(wrapped)
    join(wrapped, 2, NOW)
    assert wrapped.next_change(NOW) is None
    assert wrapped.poll_interval == POLL_INTERVAL == 0.1
    assert wrapped.queue_names() == wrapped.core.queue_names()
    assert wrapped.oracle.queue_names() == wrapped.core.queue_names()
    wrapped.queue_remove("q4@default")
    assert "q4@default" not in wrapped.oracle.queue_names()


async def test_polling_cadence_offers_only_at_ticks(autojump_clock):
    """Passes start at t0, t0+0.1, ...; a poke between ticks does not run a pass."""
    wrapped = OracleDispatchCore(Core())
    build(wrapped)
    wrapped.drain_journal()
    clock = Clock(epoch_at_start=NOW + 0.5)
    offered: list[tuple[float, str]] = []
    passes: list[float] = []

    dispatcher = Dispatcher(
        wrapped, clock,
        start_offer=lambda o: offered.append((trio.current_time(), o.member_uuid)),
        member_timeout=lambda t: None,
        after_pass=lambda: (passes.append(trio.current_time()), wrapped.drain_journal()),
        poll_interval=wrapped.poll_interval,
    )
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        await nursery.start(dispatcher.run)
        await trio.sleep(0.03)
        join(wrapped, 1, clock.now())  # a caller joins between ticks
        wrapped.drain_journal()
        dispatcher.poke()  # the service pokes on every change; the polling loop ignores it
        await trio.sleep(0.03)
        assert offered == [], "no pass may run before the next tick"
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    ticks = [round((t - t0) / POLL_INTERVAL, 6) for t in passes]
    assert ticks == [float(i) for i in range(len(ticks))] and len(ticks) >= 5
    assert [m for _, m in offered] == ["m000"]
    assert round((offered[0][0] - t0) / POLL_INTERVAL, 6) == 1.0  # at the first tick after the join


async def test_polling_cadence_without_changes(autojump_clock):
    """Nothing changes and nothing is waiting: still a pass every 100 ms (mod_callcenter polls)."""
    wrapped = OracleDispatchCore(Core())
    build(wrapped)
    passes: list[float] = []
    dispatcher = Dispatcher(wrapped, Clock(epoch_at_start=NOW), start_offer=lambda o: None,
                            member_timeout=lambda t: None, after_pass=lambda: passes.append(trio.current_time()),
                            poll_interval=POLL_INTERVAL)
    with trio.move_on_after(1.05):
        await dispatcher.run()
    gaps = {round(b - a, 9) for a, b in zip(passes, passes[1:])}
    assert gaps == {POLL_INTERVAL} and len(passes) == 11


def _cfg(mode: str):
    return types.SimpleNamespace(settings=types.SimpleNamespace(cc_instance_id=S.SINGLE_BOX, reserve_agents=False),
                                 ccfast=types.SimpleNamespace(dispatcher=mode))


def test_make_dispatch_core_by_mode():
    assert isinstance(make_dispatch_core(_cfg("core")), Core)
    oracle = make_dispatch_core(_cfg("oracle"))
    assert isinstance(oracle, OracleDispatchCore) and oracle.poll_interval == 0.1
    with pytest.raises(ValueError, match="unknown dispatcher mode 'fast'"):
        make_dispatch_core(_cfg("fast"))
