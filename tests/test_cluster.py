"""Several ccfast nodes on one PostgreSQL (ccfast/cluster, docs/cluster.md), on the real server.

Nodes here are objects in one trio process, each with its own connections, so PostgreSQL sees them
exactly as separate processes (locks, transactions, LISTEN/NOTIFY are per connection).
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import pytest
import trio

from ccfast import strings as S
from ccfast.cluster import (AgentClaims, ChangeFeed, ClusterNode, FencedStore, NodeIdInUse, PgSession,
                            QueueOwnership, ensure_cluster_schema, lock_key, node_id)
from ccfast.store import PostgresStore, aio
from ccfast.store.base import PUT, UPDATE, Change

from tests.test_store_common import pg_dsn  # noqa: F401  (fixture)

QUEUES = [f"q{i}@default" for i in range(8)]
FAST = dict(interval=0.1, stale_after=0.6)


@asynccontextmanager
async def cluster_db(dsn):
    """A trio-asyncio loop, the store schema and cluster tables, emptied; yields an admin session."""
    async with aio.open_loop():
        store = PostgresStore(dsn)
        await store.ensure_schema()
        admin = PgSession(dsn, purpose="admin")
        await ensure_cluster_schema(admin)
        await admin.execute("TRUNCATE ccfast_node, ccfast_queue_owner, ccfast_agent_claim, members")
        try:
            yield admin, store
        finally:
            await admin.close()
            await store.close()


async def wait_for(pred, timeout=5.0, step=0.02):
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(step)


def test_keys_are_stable_and_ids_generated():
    assert lock_key("support@default") == 337953906  # blake2b: the same on every node and run
    assert 0 <= lock_key("x" * 300) < 2**31
    assert node_id("box-a") == "box-a"
    a, b = node_id(S.SINGLE_BOX), node_id(None)
    assert a != b and S.SINGLE_BOX not in a
    with pytest.raises(ValueError):
        node_id("n" * 256)


async def test_contention_each_queue_has_exactly_one_owner(pg_dsn):
    async with cluster_db(pg_dsn) as (admin, _):
        nodes = [QueueOwnership(PgSession(pg_dsn, purpose=f"locks{i}"), f"node-{i}", **FAST) for i in range(3)]
        for n in nodes:
            n.want(QUEUES)
        async with trio.open_nursery() as nursery:
            for n in nodes:
                nursery.start_soon(n.run)
            await wait_for(lambda: sum(len(n.owned) for n in nodes) == len(QUEUES))
            await trio.sleep(0.5)  # several more rounds of contention: nothing moves
            owned = [set(n.owned) for n in nodes]
            assert set().union(*owned) == set(QUEUES)
            assert sum(map(len, owned)) == len(QUEUES)  # disjoint
            assert all(owned), "every node got a share"  # balance: ceil(8/3) each at most
            rows = dict(await admin.fetch("SELECT queue, node FROM ccfast_queue_owner"))
            assert rows == {q: n.node for n in nodes for q in n.owned}
            locks = await admin.fetch("SELECT pid, objid::bigint FROM pg_locks WHERE locktype = 'advisory' "
                                      "AND classid = $1::bigint::oid AND granted", 0x63637131)
            by_pid = {n.session.pid: n for n in nodes}
            assert sorted((by_pid[p].node, k) for p, k in locks) == sorted(
                (n.node, lock_key(q)) for n in nodes for q in n.owned)
            nursery.cancel_scope.cancel()
        for n in nodes:
            n.session.abort()


def _two_owners(pg_dsn, lost: list):
    """node-a (its losses appended to ``lost``) and node-b, both wanting every queue."""
    a = QueueOwnership(PgSession(pg_dsn, purpose="a"), "node-a", on_lost=lambda *x: lost.append(x), **FAST)
    b = QueueOwnership(PgSession(pg_dsn, purpose="b"), "node-b", **FAST)
    a.want(QUEUES)
    b.want(QUEUES)
    return a, b


async def test_killed_owner_fails_over_with_higher_generation(pg_dsn):
    async with cluster_db(pg_dsn) as (admin, _):
        lost = []
        a, b = _two_owners(pg_dsn, lost)
        async with trio.open_nursery() as nursery:
            a_scope = trio.CancelScope()

            async def run_a(task_status=trio.TASK_STATUS_IGNORED):
                with a_scope:
                    await a.run(task_status=task_status)

            await nursery.start(run_a)
            await wait_for(lambda: len(a.owned) == len(QUEUES))  # alone: a takes everything
            await nursery.start(b.run)
            await trio.sleep(0.3)
            assert b.owned == {}  # a live owner keeps its queues
            before = dict(a.owned)
            t0 = trio.current_time()
            # a's process dies: its code stops and the server sees its connection end
            a_scope.cancel()
            a.on_lost = None
            await admin.fetch("SELECT pg_terminate_backend($1)", a.session.pid)
            await wait_for(lambda: set(b.owned) == set(QUEUES))
            failover = trio.current_time() - t0
            assert failover < 2.0, failover
            assert all(b.owned[q] > before[q] for q in QUEUES)
            print(f"failover after connection kill: {failover * 1000:.0f} ms")
            nursery.cancel_scope.cancel()
        a.session.abort()
        b.session.abort()


async def test_owner_whose_connection_drops_learns_it_lost_its_queues(pg_dsn):
    async with cluster_db(pg_dsn) as (admin, _):
        lost = []
        a, b = _two_owners(pg_dsn, lost)
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await wait_for(lambda: len(a.owned) == len(QUEUES))
            await nursery.start(b.run)
            before = dict(a.owned)
            await admin.fetch("SELECT pg_terminate_backend($1)", a.session.pid)
            await wait_for(lambda: len(lost) == len(QUEUES), timeout=1)  # at once, not at the next tick
            assert {(q, g) for q, g, _r in lost} == set(before.items())
            # a reconnects and competes again (here it usually wins its own queues back first): every
            # queue has exactly one owner, each under a newer generation
            await wait_for(lambda: set(a.owned) | set(b.owned) == set(QUEUES))
            assert not set(a.owned) & set(b.owned)
            assert all({**a.owned, **b.owned}[q] > before[q] for q in QUEUES)
            nursery.cancel_scope.cancel()
        a.session.abort()
        b.session.abort()


async def test_hung_owner_is_terminated_and_replaced(pg_dsn):
    async with cluster_db(pg_dsn) as (admin, _):
        a = QueueOwnership(PgSession(pg_dsn, purpose="a"), "node-a", **FAST)
        b = QueueOwnership(PgSession(pg_dsn, purpose="b"), "node-b", **FAST)
        a.want(QUEUES[:3])
        b.want(QUEUES[:3])
        async with trio.open_nursery() as nursery:
            await a.tick()  # a registers and takes the queues, then "hangs": connected, no heartbeat
            assert set(a.owned) == set(QUEUES[:3])
            gens = dict(a.owned)
            t0 = trio.current_time()
            await nursery.start(b.run)
            await wait_for(lambda: set(b.owned) == set(QUEUES[:3]))
            took = trio.current_time() - t0
            assert took >= FAST["stale_after"] - 0.15  # not before the heartbeat went stale
            assert all(b.owned[q] > gens[q] for q in gens)
            assert b.stats["terminated"] >= 1
            await wait_for(lambda: a.session.lost.is_set(), timeout=2)  # its connection was cut
            nursery.cancel_scope.cancel()
        a.session.abort()
        b.session.abort()


async def test_same_node_id_twice_is_refused(pg_dsn):
    async with cluster_db(pg_dsn):
        a = QueueOwnership(PgSession(pg_dsn, purpose="a"), "node-x", **FAST)
        b = QueueOwnership(PgSession(pg_dsn, purpose="b"), "node-x", **FAST)
        await a.register()
        with pytest.raises(NodeIdInUse):
            await b.register()
        a.session.abort()
        b.session.abort()


def member_row(uuid, queue, node, state=S.MEMBER_WAITING):
    return {"queue": queue, "instance_id": node, "uuid": uuid, "session_uuid": "s-" + uuid, "cid_number": "100",
            "cid_name": "O'Brien", "system_epoch": 1, "joined_epoch": 1, "rejoined_epoch": 0, "bridge_epoch": 0,
            "abandoned_epoch": 0, "base_score": 0, "skill_score": 0, "serving_agent": "",
            "serving_system": "", "state": state}


async def test_stale_owner_writes_are_rejected_by_the_fence(pg_dsn):
    async with cluster_db(pg_dsn) as (admin, _):
        q = QUEUES[0]
        a = QueueOwnership(PgSession(pg_dsn, purpose="a"), "node-a", **FAST)
        b = QueueOwnership(PgSession(pg_dsn, purpose="b"), "node-b", **FAST)
        a.want([q])
        b.want([q])
        await a.tick()
        old = dict(a.owned)
        store_a, store_b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
        fa = FencedStore(store_a, "node-a", lambda: old)  # a keeps believing it owns q (stale view)
        fb = FencedStore(store_b, "node-b", lambda: dict(b.owned))
        await fa.write_changes([Change("members", ("m1",), PUT, member_row("m1", q, "node-a"), False)])
        await fa.write_changes([Change("members", ("m1",), UPDATE,
                                       {"serving_agent": "1000@default", "serving_system": S.SINGLE_BOX,
                                        "state": S.MEMBER_TRYING}, True)])
        rows = await admin.fetch("SELECT state, serving_system FROM members WHERE uuid = 'm1'")
        assert rows == [(S.MEMBER_TRYING, "node-a")]  # W9: the real node id, not single_box

        a.session.abort()  # a dies (or is cut off); b takes over and adopts the member row
        await b.tick()
        assert b.owned[q] == old[q] + 1
        # adopted unchanged (the service's load_recovered makes it Abandoned and re-adoptable)
        assert await admin.fetch("SELECT state, instance_id, session_uuid FROM members WHERE uuid = 'm1'") == [
            (S.MEMBER_TRYING, "node-b", "s-m1")]

        # a's late writes: update, delete, insert — all match nothing
        await fa.write_changes([Change("members", ("m1",), UPDATE, {"state": S.MEMBER_ANSWERED}, True),
                                Change("members", ("m2",), PUT, member_row("m2", q, "node-a"), False)])
        await fa.write_changes([Change("members", ("m1",), "delete", {}, True)])
        assert await admin.fetch("SELECT uuid, state FROM members ORDER BY uuid") == [("m1", S.MEMBER_TRYING)]
        # the new owner's writes go through
        await fb.write_changes([Change("members", ("m1",), UPDATE, {"state": S.MEMBER_WAITING}, True),
                                Change("members", ("m3",), PUT, member_row("m3", q, "node-b"), False),
                                Change("members", ("m4",), PUT, member_row("m4", "not-mine", "node-b"), False)])
        assert await admin.fetch("SELECT uuid, state FROM members ORDER BY uuid") == [
            ("m1", S.MEMBER_WAITING), ("m3", S.MEMBER_WAITING)]
        assert fb.stats["rejected"] == 1  # m4: a queue b does not own never reaches SQL
        # a snapshot replaces only b's own queues' members and keeps other nodes' rows
        await admin.execute("INSERT INTO members (queue, instance_id, uuid, state) VALUES ('other@q', 'node-c', 'c1', 'Waiting')")
        await fb.write_snapshot({"agents": [], "tiers": [], "members": [member_row("m5", q, "node-b")]})
        assert await admin.fetch("SELECT uuid FROM members ORDER BY uuid") == [("c1",), ("m5",)]
        b.session.abort()
        await store_a.close()
        await store_b.close()


async def test_concurrent_claims_of_one_agent_never_both_succeed(pg_dsn):
    async with cluster_db(pg_dsn) as (admin, _):
        sa, sb = PgSession(pg_dsn, purpose="ca"), PgSession(pg_dsn, purpose="cb")
        ca, cb = AgentClaims(sa, "node-a"), AgentClaims(sb, "node-b")
        rounds, wins = 300, {"node-a": 0, "node-b": 0}
        for i in range(rounds):
            agent = f"{i % 7}@default"
            results = {}

            async def go(c, delay):
                await trio.sleep(delay)
                results[c.node] = await c.claim(agent, queue="q", offer_id=i)

            async with trio.open_nursery() as nursery:
                # vary who sends first, including "at the same time" (both in flight on the server)
                nursery.start_soon(go, ca, 0 if i % 3 else 0.0005)
                nursery.start_soon(go, cb, 0 if i % 3 != 1 else 0.0005)
            assert sorted(results.values()) == [False, True], (i, results)
            winner = ca if results["node-a"] else cb
            wins[winner.node] += 1
            assert await admin.fetch("SELECT node, offer_id FROM ccfast_agent_claim WHERE agent = $1", agent) == [
                (winner.node, i)]
            loser = cb if winner is ca else ca
            assert not await loser.release(agent)  # a node cannot drop another node's claim
            assert await winner.release(agent, offer_id=i)
        assert wins["node-a"] > 0 and wins["node-b"] > 0  # both really contended
        assert await admin.fetch("SELECT count(*) FROM ccfast_agent_claim") == [(0,)]
        # the holder may re-claim its own agent (its core has one live offer per agent)
        assert await ca.claim("x@default", offer_id=1) and await ca.claim("x@default", offer_id=2)
        assert not await cb.claim("x@default")
        sa.abort()
        sb.abort()


async def test_claims_of_a_dead_node_are_released(pg_dsn):
    async with cluster_db(pg_dsn) as (admin, _):
        a_locks, a_claims_s = PgSession(pg_dsn, purpose="a"), PgSession(pg_dsn, purpose="ac")
        a = QueueOwnership(a_locks, "node-a", **FAST)
        a.want([])
        await a.register()
        b = QueueOwnership(PgSession(pg_dsn, purpose="b"), "node-b", **FAST)
        b.want([])
        b_claims = AgentClaims(PgSession(pg_dsn, purpose="bc"), "node-b")
        a_claims = AgentClaims(a_claims_s, "node-a")
        for agent in ("1000@default", "1001@default"):
            assert await a_claims.claim(agent)
        await b.tick()
        assert not await b_claims.claim("1000@default")  # a is alive: its claims stand
        assert b.reaped == []
        a_locks.abort()  # node a dies (its lock connection ends; its claims connection lingers)
        await trio.sleep(0.05)
        await b.tick()
        assert sorted(b.reaped) == [("1000@default", "node-a"), ("1001@default", "node-a")]
        assert await b_claims.claim("1000@default")
        assert await admin.fetch("SELECT node FROM ccfast_node") == [("node-b",)]
        for s in (a_claims_s, b.session, b_claims.session):
            s.abort()


async def test_change_feed_between_two_nodes(pg_dsn):
    async with cluster_db(pg_dsn):
        sessions = [PgSession(pg_dsn, purpose=p) for p in ("la", "pa", "lb", "pb")]
        fa = ChangeFeed("node-a", sessions[0], sessions[1])
        fb = ChangeFeed("node-b", sessions[2], sessions[3])
        async with trio.open_nursery() as nursery:
            await nursery.start(fa.run)
            await nursery.start(fb.run)
            assert (await fb.__anext__()).kind == "resync"  # first thing after LISTEN: re-read state
            assert (await fa.__anext__()).kind == "resync"
            change = {"name": "1000@default", "cols": {"status": S.STATUS_ON_BREAK, "last_status_change": 1700000000}}
            await fa.publish("agent", change)
            with trio.fail_after(2):
                msg = await fb.__anext__()
            assert (msg.origin, msg.kind, msg.data) == ("node-a", "agent", change)
            # a claim made by node a reaches b in the claim's own statement
            claims = AgentClaims(sessions[1], "node-a")
            assert await claims.claim("1000@default", queue="q@d", offer_id=7)
            with trio.fail_after(2):
                msg = await fb.__anext__()
            assert (msg.kind, msg.data["agent"], msg.data["offer_id"]) == ("claim", "1000@default", 7)
            assert fa.pending() == 0  # a node does not hear itself
            # the listener's connection dies: after reconnect the feed says "resync" first
            await sessions[3].execute("SELECT pg_terminate_backend($1)", sessions[2].pid)
            with trio.fail_after(3):
                msg = await fb.__anext__()
            assert msg.kind == "resync"
            await fa.publish("agent", {"name": "x"})
            with trio.fail_after(2):
                assert (await fb.__anext__()).data == {"name": "x"}
            with pytest.raises(ValueError):
                await fa.publish("agent", {"blob": "x" * 9000})
            nursery.cancel_scope.cancel()
        for s in sessions:
            s.abort()


async def test_cluster_node_tracks_remote_claims_and_fails_over(pg_dsn):
    async with cluster_db(pg_dsn) as (admin, _):
        gained_b = []
        a = ClusterNode("node-a", dsn=pg_dsn, address="10.0.0.1:8040", **FAST)
        b = ClusterNode("node-b", dsn=pg_dsn, address="10.0.0.2:8040", on_gained=lambda q, g: gained_b.append(q), **FAST)
        a.want(QUEUES[:4])
        b.want(QUEUES[:4])
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await wait_for(lambda: len(a.ownership.owned) == 4)
            await nursery.start(b.run)
            assert await b.owner_of(QUEUES[0]) == ("node-a", "10.0.0.1:8040")
            assert await a.claims.claim("1000@default", queue=QUEUES[0], offer_id=1)
            await wait_for(lambda: b.held_elsewhere("1000@default") == "node-a", timeout=2)
            await a.claims.release("1000@default", offer_id=1, cols={"state": S.STATE_WAITING, "last_bridge_end": 5})
            await wait_for(lambda: b.held_elsewhere("1000@default") is None, timeout=2)
            assert await a.claims.claim("1001@default")
            await wait_for(lambda: b.held_elsewhere("1001@default") == "node-a", timeout=2)
            t0 = time.monotonic()
            a.stop()  # the process dies: its code stops, its connections close
            await wait_for(lambda: len(b.ownership.owned) == 4)
            assert time.monotonic() - t0 < 2.0
            assert sorted(gained_b) == sorted(QUEUES[:4])
            assert await b.owner_of(QUEUES[0]) == ("node-b", "10.0.0.2:8040")
            assert await b.claims.claim("1001@default")  # a's claim was reaped at failover
            nursery.cancel_scope.cancel()


async def test_concurrent_snapshots_of_two_nodes_leave_one_row_per_agent(pg_dsn):
    """agents/tiers have no primary key: DELETE + INSERT of the same row by two nodes at once must
    not leave it twice (both nodes write their start-up snapshot together)."""
    async with cluster_db(pg_dsn) as (admin, _):
        await admin.execute("TRUNCATE agents, tiers")
        stores = [PostgresStore(pg_dsn), PostgresStore(pg_dsn)]
        fenced = [FencedStore(s, f"node-{i}", lambda: {}) for i, s in enumerate(stores)]
        agents = [{"name": f"a{i}", "instance_id": S.SINGLE_BOX, "status": S.STATUS_AVAILABLE, "state": S.STATE_WAITING}
                  for i in range(300)]
        tiers = [{"queue": "q@x", "agent": f"a{i}", "state": S.TIER_READY, "level": 1, "position": 1} for i in range(300)]
        for _ in range(4):
            async with trio.open_nursery() as nursery:
                for f in fenced:
                    nursery.start_soon(f.write_snapshot, {"agents": agents, "tiers": tiers, "members": []})
        assert await admin.fetch("SELECT count(*), count(DISTINCT name) FROM agents") == [(300, 300)]
        assert await admin.fetch("SELECT count(*) FROM tiers") == [(300,)]
        for s in stores:
            await s.close()
