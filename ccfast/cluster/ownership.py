"""Queue ownership: one live node per queue, by session-level advisory locks, fenced by a generation.

Contract
--------
* A node *owns* queue Q while its lock connection holds ``pg_advisory_lock(NS_QUEUE, lock_key(Q))``
  (session level, so PostgreSQL releases it the moment that connection ends: process death, network
  loss, ``pg_terminate_backend``) AND its row in ``ccfast_queue_owner`` carries the generation it
  got at takeover. Every takeover runs ``generation = generation + 1`` (``RETURNING``), so
  generations of one queue are strictly increasing across the whole cluster.
* The member rows of Q are written only under ``generation = <the writer's generation>`` (see
  ``fence.py``): a stale owner's late writes match nothing.
* A node is *live* while its lock connection holds ``(NS_NODE, lock_key(node))``; its row in
  ``ccfast_node`` records that connection's backend pid and a heartbeat (server time).
* ``tick()`` (every ``interval`` seconds, one database operation): heartbeat the node and its queues;
  find dead nodes (row present, node lock not held) and release their agent claims (``claims.py``);
  terminate the lock connection of a hung node (lock held, heartbeat older than ``stale_after``) so
  its locks — and with them its queues — are freed; try to take wanted queues that nobody holds.
* Self-fencing: the owner gives up all queues (and drops its connection) when it has not completed a
  tick for ``lease`` seconds (default ``0.6 × stale_after``), i.e. before anyone else may decide it is
  hung. It also gives them up the instant its connection ends (``PgSession.lost``).
* ``on_gained(queue, generation)`` / ``on_lost(queue, generation, reason)`` are plain callables run in
  the trio task that noticed; they must not block.

Balance: a node takes queues only while it owns fewer than ``ceil(wanted / live nodes)``; since
live nodes × share ≥ wanted, a free queue always finds a node with room. ``run()`` registers, waits
one interval (nodes starting together see each other), then ticks. Live owners are never asked to
give queues away (no rebalancing): a node joining later takes only queues that become free.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable
from typing import Any

import trio

from .errors import ClusterUnavailable, NodeIdInUse
from .feed import CHANNEL as FEED_CHANNEL, encode as feed_encode
from .keys import NS_NODE, NS_QUEUE, lock_key
from .pg import CLAIM_TABLE, NODE_TABLE, OWNER_TABLE, PgSession

log = logging.getLogger("ccfast.cluster.ownership")

LOST_CONNECTION = "connection lost"
LOST_LEASE = "lease expired"
LOST_TAKEN = "taken over"
LOST_RELEASED = "released"


class QueueOwnership:
    """Owns queues for one node over one dedicated connection (``PgSession``)."""

    def __init__(self, session: PgSession, node: str, *, address: str = "", interval: float = 1.0,
                 stale_after: float = 5.0, lease: float | None = None, balance: bool = True,
                 adopt_members: bool = True,
                 on_gained: Callable[[str, int], None] | None = None,
                 on_lost: Callable[[str, int, str], None] | None = None) -> None:
        if interval <= 0 or stale_after <= 2 * interval:
            raise ValueError("ownership: need interval > 0 and stale_after > 2 × interval")
        self.session = session
        self.node = node
        self.address = address
        self.interval = interval
        self.stale_after = stale_after
        self.lease = lease if lease is not None else 0.6 * stale_after
        self.balance = balance
        self.adopt_members = adopt_members
        self.on_gained = on_gained
        self.on_lost = on_lost
        self.on_reaped: Callable[[list[tuple[str, str]]], None] | None = None  # (agent, dead node) per tick
        # queue -> (calls_answered, calls_abandoned) of this node, written with each heartbeat so
        # other nodes can list the owner's counters (None: zeros)
        self.counters: Callable[[str], tuple[int, int]] | None = None
        self.owned: dict[str, int] = {}  # queue -> generation
        self.wanted: set[str] = set()
        self.registered = False
        self.last_ok: float | None = None  # trio time a tick last completed
        self.live_nodes: list[str] = []
        self.stats = {"ticks": 0, "gained": 0, "lost": 0, "reaped_claims": 0, "terminated": 0}
        self.reaped: list[tuple[str, str]] = []  # (agent, dead node) released by the last tick

    # -- queries -------------------------------------------------------------------------------
    def generation(self, queue: str) -> int | None:
        """The generation under which this node owns ``queue``, or None if it does not."""
        return self.owned.get(queue)

    def want(self, queues: Iterable[str]) -> None:
        """The queues this node may own (every configured queue, normally). Others get released."""
        self.wanted = set(queues)

    # -- registration ------------------------------------------------------------------------------
    async def register(self) -> None:
        """Take the node lock and (re)write this node's row. :class:`NodeIdInUse` if held elsewhere."""
        node, address, key = self.node, self.address, lock_key(self.node)

        async def body(conn: Any) -> bool:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1::int4, $2::int4)", NS_NODE, key):
                return False
            await conn.execute(
                f"INSERT INTO {NODE_TABLE} (node, pid, address) VALUES ($1, pg_backend_pid(), $2) "
                f"ON CONFLICT (node) DO UPDATE SET pid = EXCLUDED.pid, address = EXCLUDED.address, "
                f"started = now(), heartbeat = now()", node, address)
            return True

        if not await self.session.run(body):
            raise NodeIdInUse(f"node id {node!r} is held by another live ccfast process")
        self.registered = True
        self.last_ok = trio.current_time()

    # -- one round -----------------------------------------------------------------------------------
    async def tick(self) -> tuple[list[tuple[str, int]], list[tuple[str, int, str]]]:
        """One round (see module docstring); returns (gained, lost) and runs the callbacks."""
        if not self.registered:
            await self.register()
        started = trio.current_time()
        owned = dict(self.owned)
        wanted = set(self.wanted)
        counters = {q: self._counters(q) for q in owned}
        try:
            result = await self.session.run(self._aio_tick, owned, wanted, counters)
        except ClusterUnavailable:
            self._lose_all(LOST_CONNECTION)
            raise
        still, gained, released, live, reaped, terminated = result
        if self.session.lost.is_set():  # fenced meanwhile (watchdog): the locks of this tick are gone
            self._lose_all(LOST_CONNECTION)
            raise ClusterUnavailable("connection ended during the tick")
        self.last_ok = started
        self.live_nodes = live
        self.reaped = reaped
        self.stats["ticks"] += 1
        self.stats["reaped_claims"] += len(reaped)
        self.stats["terminated"] += len(terminated)
        if reaped and self.on_reaped is not None:
            self.on_reaped(reaped)
        for node, pid in terminated:
            log.warning("cluster: node %s (backend %s) stopped heartbeating: its connection was terminated", node, pid)
        lost: list[tuple[str, int, str]] = []
        for queue, gen in owned.items():
            if queue in released:
                lost.append((queue, gen, LOST_RELEASED))
            elif queue not in still:
                lost.append((queue, gen, LOST_TAKEN))
        for queue, gen, reason in lost:
            if self.owned.get(queue) == gen:
                del self.owned[queue]
                self._notify_lost(queue, gen, reason)
        for queue, gen in gained:
            self.owned[queue] = gen
            self.stats["gained"] += 1
            log.info("cluster: node %s owns queue %s (generation %d)", self.node, queue, gen)
            if self.on_gained is not None:
                self.on_gained(queue, gen)
        return gained, lost

    def _counters(self, queue: str) -> tuple[int, int]:
        if self.counters is None:
            return 0, 0
        try:
            return self.counters(queue)
        except Exception:  # the queue was unloaded meanwhile
            return 0, 0

    async def _aio_tick(self, conn: Any, owned: dict[str, int], wanted: set[str],
                        counters: dict[str, tuple[int, int]] | None = None):
        """asyncio side of ``tick``: one coroutine, several statements on the lock connection."""
        me = self.node
        n = await conn.execute(f"UPDATE {NODE_TABLE} SET heartbeat = now() WHERE node = $1 AND pid = pg_backend_pid()", me)
        if n.endswith(" 0"):  # our row was reaped or rewritten: only if our node lock was lost
            raise ClusterUnavailable(f"node row of {me} no longer ours")
        # 1. queues still ours (generation unchanged) get their heartbeat; give up unwanted ones
        released = [q for q in owned if q not in wanted]
        for q in released:
            await conn.execute(f"DELETE FROM {OWNER_TABLE} WHERE queue = $1 AND node = $2 AND generation = $3",
                               q, me, owned[q])
            await conn.fetchval("SELECT pg_advisory_unlock($1::int4, $2::int4)", NS_QUEUE, lock_key(q))
        keep = [q for q in owned if q in wanted]
        counts = [(counters or {}).get(q, (0, 0)) for q in keep]
        rows = await conn.fetch(
            f"UPDATE {OWNER_TABLE} o SET heartbeat = now(), calls_answered = f.a, calls_abandoned = f.b "
            f"FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS f(q, g, a, b) "
            f"WHERE o.queue = f.q AND o.generation = f.g AND o.node = $1 RETURNING o.queue",
            me, keep, [owned[q] for q in keep], [c[0] for c in counts], [c[1] for c in counts])
        still = {r[0] for r in rows}
        # 2. liveness of the other nodes: node lock held by the recorded backend?
        nodes = await conn.fetch(
            f"SELECT n.node, n.pid, n.heartbeat < now() - make_interval(secs => $1) AS stale, "
            f"ARRAY(SELECT l.objid::bigint FROM pg_locks l WHERE l.pid = n.pid AND l.locktype = 'advisory' "
            f"AND l.classid = $2::bigint::oid AND l.objsubid = 2 AND l.granted) AS keys FROM {NODE_TABLE} n",
            self.stale_after, NS_NODE)
        live, dead, terminated = [me], [], []
        for node, pid, stale, keys in nodes:
            if node == me:
                continue
            if lock_key(node) not in keys:
                dead.append(node)
            elif stale:
                await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
                terminated.append((node, pid))
            else:
                live.append(node)
        reaped: list[tuple[str, str]] = []
        if dead:  # their claims go (with a feed notice per agent) and their rows
            async with conn.transaction():
                recs = await conn.fetch(f"DELETE FROM {CLAIM_TABLE} WHERE node = ANY($1::text[]) RETURNING agent, node", dead)
                for agent, node in recs:
                    await conn.execute("SELECT pg_notify($1, $2)", FEED_CHANNEL,
                                       feed_encode(me, "release", {"agent": agent, "node": node, "reaped": True}))
                await conn.execute(f"DELETE FROM {NODE_TABLE} WHERE node = ANY($1::text[])", dead)
            reaped = [(r[0], r[1]) for r in recs]
        # 3. take free queues
        candidates = [q for q in wanted if q not in still]
        random.shuffle(candidates)  # two nodes starting together interleave instead of colliding in order
        share = math.ceil(len(wanted) / max(1, len(live)))
        gained: list[tuple[str, int]] = []
        for q in candidates:
            if self.balance and len(still) + len(gained) >= share:
                break  # capacity exists elsewhere: L live nodes × share >= wanted queues
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1::int4, $2::int4)", NS_QUEUE, lock_key(q)):
                continue
            try:
                gen = await self._aio_take(conn, q)
            except BaseException:
                await conn.fetchval("SELECT pg_advisory_unlock($1::int4, $2::int4)", NS_QUEUE, lock_key(q))
                raise
            gained.append((q, gen))
        return still, gained, set(released), sorted(live), reaped, terminated

    async def _aio_take(self, conn: Any, queue: str) -> int:
        """Takeover transaction: bump the generation, adopt the queue's member rows (§1.5 style)."""
        async with conn.transaction():
            gen = await conn.fetchval(
                f"INSERT INTO {OWNER_TABLE} (queue, node, generation) VALUES ($1, $2, 1) "
                f"ON CONFLICT (queue) DO UPDATE SET node = EXCLUDED.node, "
                f"generation = {OWNER_TABLE}.generation + 1, heartbeat = now() RETURNING generation",
                queue, self.node)
            if self.adopt_members:
                # the previous owner's callers lost their socket: their rows become this node's,
                # unchanged (session_uuid kept), so the service's load_recovered makes them Abandoned
                # AND re-adoptable by their channel: a caller the dialplan fallback brings back
                # resumes at its place (glue.py, on_gained)
                await conn.execute(
                    'UPDATE members SET instance_id = $2 WHERE queue = $1 AND instance_id IS DISTINCT FROM $2',
                    queue, self.node)
        return gen

    # -- losing -------------------------------------------------------------------------------------
    def _notify_lost(self, queue: str, gen: int, reason: str) -> None:
        self.stats["lost"] += 1
        log.warning("cluster: node %s lost queue %s (generation %d): %s", self.node, queue, gen, reason)
        if self.on_lost is not None:
            self.on_lost(queue, gen, reason)

    def _lose_all(self, reason: str) -> None:
        self.registered = False
        owned, self.owned = self.owned, {}
        for queue, gen in owned.items():
            self._notify_lost(queue, gen, reason)

    async def release_all(self) -> None:
        """Graceful stop: give every queue up now (others take them at their next tick)."""
        self.wanted = set()
        if self.registered and self.session.connected:
            try:
                await self.tick()
            except ClusterUnavailable:
                pass

    # -- the task ----------------------------------------------------------------------------------
    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Register, then tick every ``interval``; on connection loss lose everything, reconnect.

        A watchdog beside the loop self-fences when no tick completed for ``lease`` seconds (a
        statement stuck on a hung network cannot delay it). ``task_status.started()`` after the first
        successful tick; :class:`NodeIdInUse` propagates."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._lease_watchdog)
            await self._loop(task_status)

    async def _lease_watchdog(self) -> None:
        while True:
            await trio.sleep(min(self.interval, self.lease) / 4)
            if self.owned and self.last_ok is not None and trio.current_time() - self.last_ok > self.lease:
                self._lose_all(LOST_LEASE)
                self.session.abort()  # frees our locks server-side; the loop reconnects

    async def _loop(self, task_status) -> None:
        started = False
        try:
            await self.register()
        except ClusterUnavailable:
            pass  # tick() retries below
        await trio.sleep(self.interval)
        delay = self.interval
        while True:
            try:
                await self.tick()
                delay = self.interval
                if not started:
                    task_status.started()
                    started = True
            except ClusterUnavailable as exc:
                log.error("cluster: node %s: %s; retrying in %.1f s", self.node, exc, delay)
                self._lose_all(LOST_CONNECTION)
                await trio.sleep(delay)
                delay = min(delay * 2, self.stale_after)
                continue
            lost = self.session.lost
            with trio.move_on_after(self.interval):
                await lost.wait()
            if lost.is_set():
                self._lose_all(LOST_CONNECTION)
