"""``ClusterNode``: node identity + queue ownership + agent claims + change feed, for one process.

Sessions (dedicated PostgreSQL connections, each used the trio-asyncio way of ``pg.PgSession``):
``locks`` (advisory locks, ticks — its death frees this node's queues), ``claims`` (claims,
releases, publishing), ``listen`` (LISTEN). The store's own connection stays separate.

``run(task_status)`` creates the cluster tables, drops claims left under this node id by a previous
run, and runs ownership, the feed listener and the feed consumer. The consumer keeps
``remote_claims`` (agent → node, other nodes only) exact: claim/release messages, and a full reload
from ``ccfast_agent_claim`` on every ``resync`` (listener (re)connect, overflow). Every message is
then passed to ``on_message`` (the service applies agent changes to its core there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from .claims import AgentClaims
from .errors import ClusterUnavailable
from .feed import RESYNC, ChangeFeed, FeedMessage
from .keys import NS_QUEUE, lock_key
from .keys import node_id as make_node_id
from .ownership import QueueOwnership
from .pg import NODE_TABLE, OWNER_TABLE, PgSession, ensure_cluster_schema

log = logging.getLogger("ccfast.cluster")


class ClusterNode:
    def __init__(self, node: str | None = None, *, dsn: str | None = None, address: str = "",
                 interval: float = 1.0, stale_after: float = 5.0, op_timeout: float = 2.0,
                 on_gained: Callable[[str, int], None] | None = None,
                 on_lost: Callable[[str, int, str], None] | None = None,
                 on_message: Callable[[FeedMessage], None] | None = None,
                 on_reaped: Callable[[list[tuple[str, str]]], None] | None = None,
                 claims_synchronous_commit: bool = False,
                 **connect_kwargs: Any) -> None:
        self.node = make_node_id(node)
        kw = dict(op_timeout=op_timeout, **connect_kwargs)
        self.locks = PgSession(dsn, purpose="locks", **kw)
        # claims are short-lived: not waiting for the WAL flush takes the claim p99 from ~8 ms to
        # <1 ms here; a PostgreSQL crash loses recent claims, which the service re-asserts (docs)
        settings = dict(connect_kwargs.get("server_settings") or {"application_name": "ccfast-claims"})
        if not claims_synchronous_commit:
            settings["synchronous_commit"] = "off"
        self.claim_session = PgSession(dsn, purpose="claims", **{**kw, "server_settings": settings})
        self.listen = PgSession(dsn, purpose="listen", **kw)
        self.ownership = QueueOwnership(self.locks, self.node, address=address, interval=interval,
                                        stale_after=stale_after, on_gained=on_gained, on_lost=on_lost)
        self.claims = AgentClaims(self.claim_session, self.node)
        self.feed = ChangeFeed(self.node, self.listen, self.claim_session)
        self.on_message = on_message
        self.on_reaped = on_reaped
        self.ownership.on_reaped = self._reaped
        self.remote_claims: dict[str, str] = {}
        self._scope: trio.CancelScope | None = None

    # -- what the service asks -------------------------------------------------------------------
    def owns(self, queue: str) -> int | None:
        """This node's generation of ``queue`` if it owns it, else None."""
        return self.ownership.generation(queue)

    def want(self, queues) -> None:
        self.ownership.want(queues)

    def held_elsewhere(self, agent: str) -> str | None:
        """The other node holding a claim on ``agent`` (as of the last feed message), or None."""
        return self.remote_claims.get(agent)

    async def owner_of(self, queue: str) -> tuple[str, str] | None:
        """(node, address) of the queue's live owner, from the database; None during a failover.

        Live = its heartbeat is fresh AND its lock connection still holds the queue's lock (a
        process that died a moment ago still has a fresh heartbeat, but its locks are gone)."""
        rows = await self.claim_session.fetch(
            f"SELECT o.node, n.address, ARRAY(SELECT l.objid::bigint FROM pg_locks l WHERE l.pid = n.pid "
            f"AND l.locktype = 'advisory' AND l.classid = $3::bigint::oid AND l.objsubid = 2 AND l.granted) "
            f"FROM {OWNER_TABLE} o JOIN {NODE_TABLE} n ON n.node = o.node "
            f"WHERE o.queue = $1 AND o.heartbeat > now() - make_interval(secs => $2)",
            queue, self.ownership.stale_after, NS_QUEUE)
        if not rows or lock_key(queue) not in rows[0][2]:
            return None
        return rows[0][0], rows[0][1]

    async def owners(self) -> dict[str, tuple[str, int]]:
        """queue → (node, generation) for every queue with an owner row (listings, ``ccfast ctl``)."""
        return {q: (n, g) for q, n, g in await self.claim_session.fetch(
            f"SELECT queue, node, generation FROM {OWNER_TABLE}")}

    def _reaped(self, reaped: list[tuple[str, str]]) -> None:
        """This node's tick deleted dead nodes' claims (it does not hear its own release notices)."""
        for agent, node in reaped:
            if self.remote_claims.get(agent) == node:
                del self.remote_claims[agent]
        if self.on_reaped is not None:
            self.on_reaped(reaped)

    # -- running ---------------------------------------------------------------------------------
    async def _consume(self) -> None:
        async for msg in self.feed:
            try:
                if msg.kind == RESYNC:
                    holders = await self.claims.holders()
                    self.remote_claims = {a: n for a, n in holders.items() if n != self.node}
                elif msg.kind == "claim":
                    self.remote_claims[msg.data["agent"]] = msg.origin
                elif msg.kind == "release":
                    holder = msg.data.get("node", msg.origin)
                    if self.remote_claims.get(msg.data["agent"]) == holder:
                        del self.remote_claims[msg.data["agent"]]
            except ClusterUnavailable as exc:  # resync failed: try again with the next message
                log.warning("cluster: feed resync failed: %s", exc)
                self.feed._put(FeedMessage(self.node, RESYNC, {"reason": "retry"}))
                await trio.sleep(0.5)
                continue
            if self.on_message is not None:
                self.on_message(msg)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await ensure_cluster_schema(self.locks)
        await self.claims.release_mine()
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                await nursery.start(self.feed.run)
                nursery.start_soon(self._consume)
                await nursery.start(self.ownership.run)
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                for s in (self.locks, self.claim_session, self.listen):
                    s.abort()

    def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def shutdown(self) -> None:
        """Graceful: give queues up, drop this node's claims, then stop."""
        await self.ownership.release_all()
        try:
            await self.claims.release_mine()
        except ClusterUnavailable:
            pass
        self.stop()
