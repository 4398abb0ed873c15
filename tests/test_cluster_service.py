"""Several ``ccfast serve`` nodes on one PostgreSQL, end to end against the simulator (docs/cluster.md).

Two ``serve.run`` in one trio process, each with its own connections (PostgreSQL sees them as two
processes), one simulated FreeSWITCH box. The simulator's ``socket`` application
(``ccfast/sim/apps.py``) moves callers: ``sendmsg execute socket <addr>`` inside a socket session
opens a second outbound session to ``<addr>`` while the first one's app stays running, and
``("socket", "host:port")`` in a caller's ``after_socket`` is the dialplan fallback that brings a
caller whose node went away to another node.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from ccfast import config as configmod
from ccfast import strings as S
from ccfast.esl.inbound import InboundClient
from ccfast.serve import run
from ccfast.sim import AgentProfile, CallerSpec, Simulator, Timings
from ccfast.store import PostgresStore, aio
from ccfast.cluster import PgSession, ensure_cluster_schema

from tests.test_store_common import pg_dsn  # noqa: F401  (fixture)

INTERVAL, STALE = 0.25, 2.0
QUEUES = [f"q{i}@default" for i in range(4)]
N_AGENTS = 6


# -- two nodes ----------------------------------------------------------------------------------------

def conf(dsn: str, sim_port: int, *, node: str) -> str:
    queues = "".join(f'<queue name="{q}"><param name="strategy" value="longest-idle-agent"/>'
                     f'<param name="discard-abandoned-after" value="60"/></queue>' for q in QUEUES)
    agents = "".join(f'<agent name="a{n}" type="callback" contact="sim/agent/a{n}" status="Available"/>'
                     for n in range(N_AGENTS))
    # every agent in every queue: its queues are owned by different nodes
    tiers = "".join(f'<tier agent="a{n}" queue="{q}" level="1" position="{n + 1}"/>'
                    for q in QUEUES for n in range(N_AGENTS))
    return (
        '<configuration name="callcenter.conf">'
        f'<settings><param name="odbc-dsn" value="{dsn}"/><param name="cc-instance-id" value="{node}"/></settings>'
        f"<queues>{queues}</queues><agents>{agents}</agents><tiers>{tiers}</tiers>"
        "<ccfast><settings>"
        '<param name="control-password" value="secret"/><param name="metrics-listen" value=""/>'
        f'<param name="cluster" value="true"/><param name="cluster-interval" value="{INTERVAL}"/>'
        f'<param name="cluster-stale-after" value="{STALE}"/>'
        f'</settings><boxes><box name="sim" host="127.0.0.1" port="{sim_port}" password="ClueCon"/></boxes>'
        "</ccfast></configuration>"
    )


class Node:
    def __init__(self, name: str, running, scope: trio.CancelScope, control: InboundClient) -> None:
        self.name, self.running, self.scope, self.control = name, running, scope, control

    @property
    def glue(self):
        return self.running.service.cluster

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.running.outbound_port

    async def cc(self, args: str) -> str:
        return await self.control.api("callcenter_config", args)


async def start_node(nursery: trio.Nursery, sim: Simulator, dsn: str, name: str) -> Node:
    cfg = configmod.load_config(f"{name}.xml", text=conf(dsn, sim.port, node=name))
    cfg.ccfast.outbound_listen = configmod.Address("127.0.0.1", 0)
    cfg.ccfast.control_listen = configmod.Address("127.0.0.1", 0)
    scope = trio.CancelScope()

    async def serve(task_status=trio.TASK_STATUS_IGNORED) -> None:
        with scope:  # the node and its control client: cancelled together (a node "dies")
            async with trio.open_nursery() as inner:
                running = await inner.start(run, cfg)
                control = InboundClient("127.0.0.1", running.control_port, "secret", reconnect=False,
                                        liveness_interval=None)
                await inner.start(control.run)
                task_status.started(Node(name, running, scope, control))

    return await nursery.start(serve)


async def reset_db(dsn: str) -> None:
    async with aio.open_loop():
        store = PostgresStore(dsn)
        await store.ensure_schema()
        admin = PgSession(dsn, purpose="admin")
        await ensure_cluster_schema(admin)
        await admin.execute("TRUNCATE ccfast_node, ccfast_queue_owner, ccfast_agent_claim, members, agents, tiers")
        await admin.close()
        await store.close()


async def admin_fetch(dsn: str, sql: str, *args) -> list[tuple]:
    async with aio.open_loop():
        admin = PgSession(dsn, purpose="admin")
        try:
            return await admin.fetch(sql, *args)
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def cluster(pg_dsn, *, talk_time=0.3, ring_time=0.05):
    """(sim, node a, node b), both owning half of the queues; sim callers dial node a."""
    await reset_db(pg_dsn)
    profiles = {f"a{n}": AgentProfile(f"a{n}", ring_time=ring_time, talk_time=talk_time) for n in range(N_AGENTS)}
    async with trio.open_nursery() as nursery:
        sim = Simulator(timings=Timings.fast(), profiles=profiles)
        await nursery.start(sim.serve)
        nodes: dict[str, Node] = {}

        async def start(name: str) -> None:
            nodes[name] = await start_node(nursery, sim, pg_dsn, name)

        async with trio.open_nursery() as starting:  # together: they split the queues (no rebalancing)
            starting.start_soon(start, "node-a")
            starting.start_soon(start, "node-b")
        a, b = nodes["node-a"], nodes["node-b"]
        sim.dial_to = a.address
        await wait_for(lambda: len(a.glue.ready) == 2 and len(b.glue.ready) == 2, 5 + 4 * INTERVAL)
        # both start-up snapshots wrote agents/tiers: still one row each (fence.py's row lock)
        assert await admin_fetch(pg_dsn, "SELECT count(*), count(DISTINCT name) FROM agents") == [(N_AGENTS, N_AGENTS)]
        try:
            yield sim, a, b
        finally:
            nursery.cancel_scope.cancel()


async def wait_for(pred, timeout: float = 5.0, step: float = 0.02) -> None:
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(step)


def no_overlapping_legs(sim: Simulator) -> dict[str, int]:
    """Per agent endpoint: its legs' [created, ended] intervals never overlap (one offer at a
    time, whichever node made it); returns the number of legs per agent."""
    by_agent: dict[str, list] = {}
    for leg in sim.switch.legs.values():
        by_agent.setdefault(leg.endpoint, []).append(leg)
    for endpoint, legs in by_agent.items():
        legs.sort(key=lambda r: r.created)
        for first, second in zip(legs, legs[1:]):
            assert first.ended_at is not None and first.ended_at <= second.created, (
                f"{endpoint}: leg {second.uuid} created at {second.created:.3f} while {first.uuid} "
                f"({first.created:.3f}..{first.ended_at}) was up")
    return {e: len(v) for e, v in by_agent.items()}


# -- the tests ----------------------------------------------------------------------------------------

async def test_queues_split_callers_redirected_to_the_owner_and_no_agent_offered_twice(pg_dsn):
    async with cluster(pg_dsn) as (sim, a, b):
        assert a.glue.ready.isdisjoint(b.glue.ready) and a.glue.ready | b.glue.ready == set(QUEUES)
        # every caller dials node a; the callers of b's queues are moved to b's socket
        records = [sim.spawn_caller(CallerSpec(queue=QUEUES[i % 4], cid_number=f"{1000 + i}"))
                   for i in range(40)]
        with trio.fail_after(18):
            for rec in records:
                await rec.done.wait()
        assert [r.outcome for r in records] == ["bridged"] * 40, [
            (r.queue, b.glue.owns(r.queue), r.outcome, r.hangup_cause, r.resumed, sim.switch.history.get(r.member_uuid) if sim.switch.history else None) for r in records if r.outcome != "bridged"][:3]
        assert a.glue.stats["redirects"] >= 1 and b.glue.stats["redirects"] == 0
        # each node made the offers of its own queues' callers (at least one per caller)
        per_owner = {n.name: sum(1 for r in records if n.glue.owns(r.queue)) for n in (a, b)}
        assert per_owner["node-a"] + per_owner["node-b"] == 40
        for n in (a, b):
            assert n.running.service.stats["offers_started"] >= per_owner[n.name], n.name
        legs = no_overlapping_legs(sim)
        assert sum(legs.values()) >= 40
        # the claims kept the nodes apart under load: some offers were refused and redone
        refused = a.glue.stats["claims_refused"] + b.glue.stats["claims_refused"]
        print(f"legs per agent {legs}; claims refused {refused}; callers per owner {per_owner}")
        await wait_for(lambda: not a.running.service.offers and not b.running.service.offers)
        for node in (a, b):
            for row in node.running.service.core.rows("agents"):
                assert row["state"] not in (S.STATE_RECEIVING, S.STATE_RESERVED), (node.name, row)
        # each release carried the agent's offer bookkeeping to the other node: both cores agree
        # on every agent's counters, and together they count every call once
        def book(node):
            return {r["name"]: (r["calls_answered"], r["last_bridge_end"], r["talk_time"])
                    for r in node.running.service.core.rows("agents")}

        await wait_for(lambda: book(a) == book(b), 3)
        assert sum(v[0] for v in book(a).values()) == 40
        # the Prometheus scrape shows each node's view (ccfast_cluster_*, folded in at scrape time)
        scraped = {n.name: scrape_cluster(n) for n in (a, b)}
        for n in (a, b):
            got = scraped[n.name]
            assert got["ccfast_cluster_owned_queues"] == 2 and got["ccfast_cluster_live_nodes"] == 2
            claims = n.glue.node.claims
            assert got["ccfast_cluster_claims_total{result=claimed}"] == claims.stats["claimed"] > 0
            assert got["ccfast_cluster_claim_seconds_count"] == claims.timed
            assert got["ccfast_cluster_feed_messages_total{direction=received}"] == n.glue.node.feed.stats["received"]
        assert scraped["node-a"]["ccfast_cluster_redirects_total"] == a.glue.stats["redirects"] >= 1
        assert (scraped["node-a"]["ccfast_cluster_claims_total{result=refused}"]
                + scraped["node-b"]["ccfast_cluster_claims_total{result=refused}"]) == refused


def scrape_cluster(node: Node) -> dict[str, float]:
    out = {}
    for fam in text_string_to_metric_families(node.running.metrics.text()):
        for sample in fam.samples:
            if sample.name.startswith("ccfast_cluster_") and "le" not in sample.labels:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


async def test_failover_readopts_the_dead_nodes_callers_at_their_place(pg_dsn):
    async with cluster(pg_dsn, talk_time=None) as (sim, a, b):
        queue_b = sorted(b.glue.ready)[0]
        # nobody answers: agents logged out, callers wait in b's queue (dialled straight to b,
        # with the fallback after `socket` pointing at a)
        for n in range(N_AGENTS):
            assert await b.cc(f"agent set status a{n} '{S.STATUS_LOGGED_OUT}'") == "+OK\n"
        await wait_for(lambda: all(r["status"] == S.STATUS_LOGGED_OUT for r in a.running.service.core.rows("agents")))
        sim.dial_to = b.address
        callers = [sim.spawn_caller(CallerSpec(queue=queue_b, cid_number=f"20{i}",
                                               after_socket=[("socket", "%s:%d" % a.address)])) for i in range(3)]
        await wait_for(lambda: len(b.running.service.members) == 3)
        core_b = b.running.service.core
        before = {m["session_uuid"]: m["uuid"] for m in core_b.rows("members") if m["queue"] == queue_b}
        await wait_for(lambda: False if b.running.writer.backlog else True)
        await trio.sleep(0.2)  # one writer batch: the rows are in the database
        # b dies: no graceful release, its connections cut
        t0 = trio.current_time()
        b.glue.crash()
        b.scope.cancel()
        await wait_for(lambda: queue_b in a.glue.ready, 3 * INTERVAL + 3)
        took = trio.current_time() - t0
        # the callers came back through the dialplan fallback and were re-adopted by a
        try:
            await wait_for(lambda: len(a.running.service.members) == 3, 5)
        except trio.TooSlowError:
            raise AssertionError([(c.outcome, c.continued_in_dialplan, c.resumed, c.commands[-6:], sim.switch.channels.get(c.member_uuid) and sim.switch.channels[c.member_uuid].in_socket) for c in callers] + [len(a.running.service.members), a.glue.stats])
        members = {m["session_uuid"]: m for m in a.running.service.core.rows("members") if m["queue"] == queue_b}
        for session, uuid in before.items():
            assert members[session]["uuid"] == uuid  # same member row: its place kept
            assert members[session]["state"] == S.MEMBER_WAITING
        assert a.glue.stats["readopted"] == 3
        print(f"failover took {took:.2f} s")
        # a serves them: an agent comes back, the first caller is bridged
        assert await a.cc(f"agent set status a0 {S.STATUS_AVAILABLE}") == "+OK\n"
        with trio.fail_after(5):
            while not any(c.outcome == "bridged" or c.bridged_at for c in callers):
                await trio.sleep(0.02)


async def test_listings_answer_for_the_whole_cluster(pg_dsn):
    async with cluster(pg_dsn, talk_time=None) as (sim, a, b):
        queue_b = sorted(b.glue.ready)[0]
        queue_a = sorted(a.glue.ready)[0]
        for n in range(1, N_AGENTS):
            assert await a.cc(f"agent set status a{n} '{S.STATUS_LOGGED_OUT}'") == "+OK\n"
        # the change made on a is applied on b (feed): only a0 is offered, by whichever node
        await wait_for(lambda: sum(r["status"] == S.STATUS_AVAILABLE for r in b.running.service.core.rows("agents")) == 1)
        sim.dial_to = b.address
        talking = sim.spawn_caller(CallerSpec(queue=queue_b))
        await wait_for(lambda: talking.bridged_at is not None, 5)
        waiting = [sim.spawn_caller(CallerSpec(queue=queue_b, cid_number=f"30{i}")) for i in range(2)]
        core_b = b.running.service.core
        await wait_for(lambda: sum(m["queue"] == queue_b for m in core_b.rows("members")) == 3)
        await trio.sleep(0.3)  # b's writer batch
        # a does not own queue_b: its answers come from the database
        assert await a.cc(f"queue count members {queue_b}") == "3\n"
        assert await b.cc(f"queue count members {queue_b}") == "3\n"
        assert await a.cc(f"queue count members {queue_a}") == "0\n"
        assert await a.cc("queue count") == await b.cc("queue count") == f"{len(QUEUES)}\n"
        listing = await a.cc(f"queue list members {queue_b}")
        assert listing.count("\n") == 5  # header, 3 rows, +OK
        # a0 is in b's call: a's agent list shows what b wrote
        for node in (a, b):
            line = next(l for l in (await node.cc("agent list")).splitlines() if l.startswith("a0|"))
            assert S.STATE_IN_A_QUEUE_CALL in line, (node.name, line)
        assert all(w.outcome == "active" for w in waiting)
        view = json.loads(await a.control.api("ccfast_cluster", ""))
        assert view["node"] == "node-a" and sorted(view["ready"]) == sorted(a.glue.ready)
        assert sorted(view["live_nodes"]) == ["node-a", "node-b"] and view["remote_claims"] == {"a0": "node-b"}


def queue_line(listing: str, queue: str) -> list[str]:
    return next(line for line in listing.splitlines() if line.startswith(queue + "|")).split("|")


async def test_queue_commands_reach_every_node_and_queue_list_shows_the_owners_counters(pg_dsn):
    async with cluster(pg_dsn, talk_time=0.05) as (sim, a, b):
        queue_b = sorted(b.glue.ready)[0]
        core_a, core_b = a.running.service.core, b.running.service.core
        calls = [sim.spawn_caller(CallerSpec(queue=queue_b, cid_number=f"50{i}")) for i in range(2)]
        with trio.fail_after(8):
            for c in calls:
                await c.done.wait()
        assert [c.outcome for c in calls] == ["bridged", "bridged"]
        await wait_for(lambda: core_b.queue_counters(queue_b) == (2, 0))
        assert core_a.queue_counters(queue_b) == (0, 0)  # a passed the callers on
        # `queue list` on either node shows the owner's counters (b's heartbeat carries them)
        col = S.QUEUE_LIST_COLUMNS.index("calls_answered")
        with trio.fail_after(3):
            while queue_line(await a.cc("queue list"), queue_b)[col] != "2":
                await trio.sleep(0.05)
        assert await a.cc("queue list") == await b.cc("queue list")
        # queue reload on a: b reloads it too (counters restart), b keeps dispatching it
        assert await a.cc(f"queue reload {queue_b}") == "+OK\n"
        await wait_for(lambda: b.glue.stats["queue_ops_applied"] == 1, 3)
        assert core_b.queue_counters(queue_b) == (0, 0) and core_b.queue_params(queue_b) == core_a.queue_params(queue_b)
        assert queue_b in b.glue.ready and not core_b.queue_suspended(queue_b) and core_a.queue_suspended(queue_b)
        with trio.fail_after(3):
            while queue_line(await a.cc("queue list"), queue_b)[col] != "0":
                await trio.sleep(0.05)
        # unload on b: gone from a too, and nobody owns it any more; load on a: back everywhere
        assert await b.cc(f"queue unload {queue_b}") == "+OK\n"
        await wait_for(lambda: core_a.queue_params(queue_b) is None, 3)
        assert await a.cc("queue count") == await b.cc("queue count") == f"{len(QUEUES) - 1}\n"
        await wait_for(lambda: queue_b not in b.glue.node.ownership.owned, 3)
        assert await a.cc(f"queue load {queue_b}") == "+OK\n"
        await wait_for(lambda: core_b.queue_params(queue_b) is not None, 3)
        await wait_for(lambda: queue_b in a.glue.ready | b.glue.ready, 5)
        assert a.glue.stats["queue_ops_published"] == 2 and b.glue.stats["queue_ops_published"] == 1
        # and the queue works again, wherever it went
        again = sim.spawn_caller(CallerSpec(queue=queue_b, cid_number="509"))
        with trio.fail_after(5):
            await again.done.wait()
        assert again.outcome == "bridged"


async def waiting_callers(sim, owner: Node, other: Node, queue: str, n: int) -> list:
    """``n`` callers waiting in ``queue`` (all agents logged out), dialled straight to ``owner``,
    with the dialplan fallback after ``socket`` pointing at ``other``."""
    for i in range(N_AGENTS):
        assert await owner.cc(f"agent set status a{i} '{S.STATUS_LOGGED_OUT}'") == "+OK\n"
    await wait_for(lambda: all(r["status"] == S.STATUS_LOGGED_OUT for r in other.running.service.core.rows("agents")))
    sim.dial_to = owner.address
    callers = [sim.spawn_caller(CallerSpec(queue=queue, cid_number=f"40{i}",
                                           after_socket=[("socket", "%s:%d" % other.address)])) for i in range(n)]
    core = owner.running.service.core
    await wait_for(lambda: sum(m["queue"] == queue and m["state"] == S.MEMBER_WAITING for m in core.rows("members")) == n)
    await trio.sleep(0.2)  # one writer batch: the rows are in the database
    return callers


async def test_lock_connection_cut_the_queues_move_and_the_callers_follow(pg_dsn):
    """b's lock connection is cut (``pg_terminate_backend``) and b cannot reconnect it (a network
    cut): b loses its queues at once and ends their waiting callers, a takes the queues at its next
    tick, and the callers — back through the dialplan fallback to a — are re-adopted by a under
    their old member rows."""
    async with cluster(pg_dsn, talk_time=None) as (sim, a, b):
        queue_b = sorted(b.glue.ready)[0]
        callers = await waiting_callers(sim, b, a, queue_b, 2)
        before = {m["session_uuid"]: m["uuid"] for m in b.running.service.core.rows("members") if m["queue"] == queue_b}
        b.glue.node.locks.connect_kwargs["port"] = 9  # nothing listens: b's reconnects fail
        assert await admin_fetch(pg_dsn, "SELECT pg_terminate_backend($1)", b.glue.node.locks.pid) == [(True,)]
        await wait_for(lambda: b.glue.stats["lost_callers"] == 2 and not b.glue.ready, 3)
        assert b.running.service.core.queue_suspended(queue_b)
        await wait_for(lambda: len(a.glue.ready) == len(QUEUES), 3)  # b is dead to the others
        core = a.running.service.core
        await wait_for(lambda: {m["session_uuid"]: m["uuid"] for m in core.rows("members")
                                if m["queue"] == queue_b and m["state"] == S.MEMBER_WAITING} == before, 5)
        assert all(c.outcome == "active" for c in callers)


async def test_a_node_re_taking_a_queue_it_lost_resumes_its_callers_at_their_place(pg_dsn):
    """b's lock connection is cut but b reconnects before anyone else takes its queues: b loses
    them (its waiting callers ended, back through the fallback to a, redirected to b again) and
    re-takes them under a new generation; the rows b had give way to the database's, so the
    callers resume under their old member rows (core.members_forget)."""
    async with cluster(pg_dsn, talk_time=None) as (sim, a, b):
        queue_b = sorted(b.glue.ready)[0]
        a.glue.node.ownership.want(set(a.glue.ready))  # a leaves b's queues to b
        callers = await waiting_callers(sim, b, a, queue_b, 2)
        core = b.running.service.core
        before = {m["session_uuid"]: m["uuid"] for m in core.rows("members") if m["queue"] == queue_b}
        generation = b.glue.node.owns(queue_b)
        assert await admin_fetch(pg_dsn, "SELECT pg_terminate_backend($1)", b.glue.node.locks.pid) == [(True,)]
        await wait_for(lambda: b.glue.stats["lost_callers"] == 2, 3)
        await wait_for(lambda: queue_b in b.glue.ready and b.glue.stats["retaken"] >= 1, 5)
        assert b.glue.node.owns(queue_b) > generation
        assert b.glue.stats["rows_forgotten"] == 2

        def waiting():
            return {m["session_uuid"]: m["uuid"] for m in core.rows("members")
                    if m["queue"] == queue_b and m["state"] == S.MEMBER_WAITING}

        try:
            await wait_for(lambda: waiting() == before, 5)
        except trio.TooSlowError:
            raise AssertionError((waiting(), before, b.glue.stats, a.glue.stats,
                                  [(c.outcome, c.continued_in_dialplan, c.resumed) for c in callers]))
        assert b.glue.stats["readopted"] == 2 and a.glue.stats["redirects"] >= 2
        assert all(c.outcome == "active" for c in callers)
        assert not a.running.service.core.rows("members")  # a only passed them on
        # the database agrees: same rows, Waiting again, written under the new generation
        await wait_for(lambda: not b.running.writer.backlog)
        with trio.fail_after(3):
            while {s: u for s, u, st in await admin_fetch(
                    pg_dsn, "SELECT session_uuid, uuid, state FROM members WHERE queue = $1", queue_b)
                    if st == S.MEMBER_WAITING} != before:
                await trio.sleep(0.05)


async def test_graceful_stop_hands_the_queues_over_at_once(pg_dsn):
    async with cluster(pg_dsn, talk_time=None) as (sim, a, b):
        owned_b = set(b.glue.ready)
        t0 = trio.current_time()
        b.scope.cancel()  # what SIGTERM does: the serve nursery is cancelled
        await wait_for(lambda: owned_b <= a.glue.ready, 3)
        took = trio.current_time() - t0
        assert took < 2 * INTERVAL + 0.5, took  # released, not waiting for a stale heartbeat
        assert await admin_fetch(pg_dsn, "SELECT count(*) FROM ccfast_agent_claim WHERE node = 'node-b'") == [(0,)]
        assert await admin_fetch(pg_dsn, "SELECT DISTINCT node FROM ccfast_queue_owner") == [("node-a",)]


def test_cluster_settings_need_postgresql_and_sane_timing():
    base = ('<configuration name="callcenter.conf"><settings>{db}</settings><queues/>'
            '<ccfast><settings><param name="cluster" value="true"/>{extra}</settings></ccfast></configuration>')
    pg = '<param name="odbc-dsn" value="pgsql://hostaddr=127.0.0.1 dbname=test user=postgres"/>'
    cfg = configmod.load_config("c.xml", text=base.format(db=pg, extra=""))
    assert (cfg.ccfast.cluster, cfg.ccfast.cluster_interval, cfg.ccfast.cluster_stale_after) == (True, 1.0, 5.0)
    with pytest.raises(configmod.ConfigError, match="cluster mode needs a PostgreSQL database"):
        configmod.load_config("c.xml", text=base.format(db="", extra=""))
    with pytest.raises(configmod.ConfigError, match="not more than twice cluster-interval"):
        configmod.load_config("c.xml", text=base.format(
            db=pg, extra='<param name="cluster-interval" value="2"/><param name="cluster-stale-after" value="3"/>'))
    with pytest.raises(configmod.ConfigError, match="not a boolean"):
        configmod.load_config("c.xml", text=base.format(db=pg, extra="").replace('value="true"', 'value="maybe"'))
    with pytest.raises(configmod.ConfigError, match="not an address other nodes can reach"):
        configmod.load_config("c.xml", text=base.format(db=pg, extra='<param name="outbound-listen" value="0.0.0.0:8040"/>'))


async def test_a_dead_nodes_claims_are_reaped_and_its_agents_offered_again(pg_dsn):
    async with cluster(pg_dsn, talk_time=None) as (sim, a, b):
        queue_a, queue_b = sorted(a.glue.ready)[0], sorted(b.glue.ready)[0]
        assert queue_a != queue_b, (a.glue.ready, b.glue.ready)
        for n in range(1, N_AGENTS):
            assert await b.cc(f"agent set status a{n} '{S.STATUS_LOGGED_OUT}'") == "+OK\n"
        await wait_for(lambda: sum(r["status"] == S.STATUS_AVAILABLE for r in a.running.service.core.rows("agents")) == 1)
        sim.dial_to = b.address
        first = sim.spawn_caller(CallerSpec(queue=queue_b))
        await wait_for(lambda: first.bridged_at is not None, 5)
        core_a = a.running.service.core
        await wait_for(lambda: core_a.agent_held("a0"), 2)  # b's claim, heard through the feed
        await trio.sleep(0.2)  # b's writer batch
        assert await admin_fetch(pg_dsn, "SELECT state FROM agents WHERE name = 'a0'") == [(S.STATE_IN_A_QUEUE_CALL,)]
        b.glue.crash()
        b.scope.cancel()
        await wait_for(lambda: not core_a.agent_held("a0"), 3)
        await wait_for(lambda: a.glue.node.ownership.stats["reaped_claims"] == 1, 3)
        assert await admin_fetch(pg_dsn, "SELECT count(*) FROM ccfast_agent_claim") == [(0,)]
        # the row a dead node left "In a queue call" is Waiting again (§1.5-style, by the reaper)
        with trio.fail_after(3):
            while await admin_fetch(pg_dsn, "SELECT state FROM agents WHERE name = 'a0'") != [(S.STATE_WAITING,)]:
                await trio.sleep(0.05)
        # and a offers a0 again
        sim.dial_to = a.address
        second = sim.spawn_caller(CallerSpec(queue=queue_a))
        try:
            await wait_for(lambda: second.bridged_at is not None, 5)
        except trio.TooSlowError:
            raise AssertionError([r for r in core_a.rows("agents") if r["name"] == "a0"] + [r for r in core_a.rows("members")] + [core_a.held_agents(), second.outcome, len(sim.switch.legs)])
