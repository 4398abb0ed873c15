"""Agent claims across nodes: an agent is offered by at most one node at a time.

``ccfast_agent_claim`` has one row per claimed agent (primary key ``agent``). A claim is one
statement — ``INSERT … ON CONFLICT (agent) DO UPDATE … WHERE holder = me`` — so two nodes claiming
the same agent can never both succeed (the primary key decides; the loser's INSERT waits for the
winner's commit and then updates nothing). A node may re-claim an agent it already holds (its own
core guarantees one live offer per agent locally, so a leftover own claim is stale). The
``claim``/``release`` feed messages are sent by ``pg_notify`` in the same statement, so other nodes
hear of a claim exactly when it commits.

The claims table is separate from ``agents`` on purpose: ``agents`` rows are written behind (batched,
coalesced) by whichever node changed them; a conditional ``UPDATE agents SET state='Receiving' WHERE
state='Waiting'`` would race with those late writes.

Release: at the end of every offer (with the agent's changed columns, for the other nodes' cores).
A release that fails (connection trouble) is queued and retried before the next operation and by
``flush_pending()``; until then other nodes see the agent as busy (safe side). Claims of a dead node
are deleted by the ownership tick of any live node (``ownership.py``).
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from .errors import ClusterUnavailable
from .feed import CHANNEL, encode
from .pg import CLAIM_TABLE, PgSession

log = logging.getLogger("ccfast.cluster.claims")

_CLAIM_SQL = (
    f"WITH c AS (INSERT INTO {CLAIM_TABLE} AS t (agent, node, queue, member_uuid, offer_id, claimed_at) "
    f"VALUES ($1, $2, $3, $4, $5, clock_timestamp()) "
    f"ON CONFLICT (agent) DO UPDATE SET queue = EXCLUDED.queue, member_uuid = EXCLUDED.member_uuid, "
    f"offer_id = EXCLUDED.offer_id, claimed_at = EXCLUDED.claimed_at WHERE t.node = EXCLUDED.node "
    f"RETURNING agent) SELECT pg_notify($6, $7) FROM c"
)
_RELEASE_SQL = (
    f"WITH d AS (DELETE FROM {CLAIM_TABLE} WHERE agent = $1 AND node = $2 AND ($3::bigint IS NULL OR offer_id = $3) "
    f"RETURNING agent) SELECT pg_notify($4, $5) FROM d"
)


class AgentClaims:
    """Claims for one node over one connection (``PgSession``, may be shared with the feed's publisher)."""

    def __init__(self, session: PgSession, node: str, *, channel: str = CHANNEL, keep_samples: int = 100_000) -> None:
        self.session = session
        self.node = node
        self.channel = channel
        self.pending_release: dict[str, tuple[int | None, dict | None]] = {}
        self.samples: list[float] = []  # claim round-trip seconds, the first keep_samples (bench)
        self.keep_samples = keep_samples
        self.recent: collections.deque[float] = collections.deque(maxlen=4096)  # latest (metrics, at scrape)
        self.timed = 0  # claims timed so far (recent holds the last min(timed, 4096))
        self.stats = {"claimed": 0, "refused": 0, "released": 0, "release_failures": 0}

    async def claim(self, agent: str, *, queue: str = "", member_uuid: str = "", offer_id: int = 0) -> bool:
        """True if this node now holds ``agent``; False if another node does.

        Raises :class:`ClusterUnavailable` when the database cannot answer: the caller must treat
        that as "not claimed" (never offer an agent without a claim)."""
        payload = encode(self.node, "claim", {"agent": agent, "queue": queue, "member_uuid": member_uuid,
                                              "offer_id": offer_id})
        pending = dict(self.pending_release)
        t0 = time.perf_counter()
        ok = await self.session.run(self._aio_claim, agent, queue, member_uuid, offer_id, payload, pending)
        dt = time.perf_counter() - t0
        if len(self.samples) < self.keep_samples:
            self.samples.append(dt)
        self.recent.append(dt)
        self.timed += 1
        for a in pending:
            if self.pending_release.get(a) == pending[a]:
                del self.pending_release[a]
        self.stats["claimed" if ok else "refused"] += 1
        return ok

    async def _aio_claim(self, conn: Any, agent, queue, member_uuid, offer_id, payload, pending) -> bool:
        await self._aio_flush(conn, pending)
        rows = await conn.fetch(_CLAIM_SQL, agent, self.node, queue, member_uuid, offer_id, self.channel, payload)
        return bool(rows)

    async def release(self, agent: str, *, offer_id: int | None = None, cols: dict | None = None) -> bool:
        """Drop this node's claim on ``agent`` (only the claim of ``offer_id`` if given).

        ``cols``: the agent's changed columns (wrap-up data: state, last_bridge_end, ready_time, …)
        for the other nodes' cores, sent in the release message. Returns True if a claim was
        removed. On a connection failure the release is queued for retry and False is returned."""
        try:
            n = await self.session.run(self._aio_release_one, agent, offer_id, cols)
        except ClusterUnavailable as exc:
            self.stats["release_failures"] += 1
            self.pending_release[agent] = (offer_id, cols)
            log.warning("cluster: release of agent %s queued for retry: %s", agent, exc)
            return False
        return n > 0

    async def _aio_release_one(self, conn: Any, agent, offer_id, cols) -> int:
        pending = dict(self.pending_release)
        await self._aio_flush(conn, pending)
        for a in pending:
            self.pending_release.pop(a, None)
        return await self._aio_release(conn, agent, offer_id, cols)

    async def _aio_release(self, conn: Any, agent, offer_id, cols) -> int:
        data: dict = {"agent": agent, "offer_id": offer_id}
        if cols:
            data["cols"] = cols
        rows = await conn.fetch(_RELEASE_SQL, agent, self.node, offer_id, self.channel, encode(self.node, "release", data))
        self.stats["released"] += len(rows)
        return len(rows)

    async def _aio_flush(self, conn: Any, pending: dict) -> None:
        for agent, (offer_id, cols) in pending.items():
            await self._aio_release(conn, agent, offer_id, cols)

    async def flush_pending(self) -> None:
        """Retry queued releases now (call after a reconnect / periodically)."""
        if self.pending_release:
            pending = dict(self.pending_release)

            async def body(conn: Any) -> None:
                await self._aio_flush(conn, pending)

            await self.session.run(body)
            for a in pending:
                if self.pending_release.get(a) == pending[a]:
                    del self.pending_release[a]

    async def holders(self) -> dict[str, str]:
        """Every current claim: agent → node (for a resync after the feed reconnected)."""
        return {a: n for a, n in await self.session.fetch(f"SELECT agent, node FROM {CLAIM_TABLE}")}

    async def release_mine(self) -> list[str]:
        """Drop every claim held under this node id (start-up: leftovers of a previous run with the
        same configured id; shutdown). Returns the agents released."""

        async def body(conn: Any) -> list[str]:
            async with conn.transaction():
                rows = await conn.fetch(f"DELETE FROM {CLAIM_TABLE} WHERE node = $1 RETURNING agent", self.node)
                for (agent,) in rows:
                    await conn.execute("SELECT pg_notify($1, $2)", self.channel,
                                       encode(self.node, "release", {"agent": agent, "offer_id": None}))
            return [r[0] for r in rows]

        return await self.session.run(body)
