"""A dedicated asyncpg connection under trio-asyncio, and the cluster's own tables.

``PgSession`` follows the store's rules (docs/store.md, ``ccfast/store/aio.py``): every operation,
a whole transaction included, is ONE asyncio coroutine run through ``ccfast.store.aio.run`` (one
shielded ``aio_as_trio`` call with an asyncio-side timeout); operations on one session are
serialised by a trio lock; after any failure the connection is *terminated* (the server rolls back
and — what the ownership layer relies on — releases every session-level advisory lock it held).

``lost`` is a ``trio.Event`` set when the current connection ends for any reason (asyncpg's
termination listener: server restart, ``pg_terminate_backend``, network), so the owner of the
session learns it at once instead of at its next statement.

The cluster tables are created with ``CREATE TABLE IF NOT EXISTS`` under the store's migration
advisory lock (two nodes starting together do not race on the catalog).
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import asyncpg
import trio

from ..store import aio
from ..store.base import StoreUnavailable
from ..store.postgres import SCHEMA_LOCK_KEY
from .errors import ClusterUnavailable

log = logging.getLogger("ccfast.cluster")

NODE_TABLE = "ccfast_node"
OWNER_TABLE = "ccfast_queue_owner"
CLAIM_TABLE = "ccfast_agent_claim"

SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {NODE_TABLE} (
        node      VARCHAR(255) PRIMARY KEY,
        pid       INTEGER NOT NULL,
        address   VARCHAR(255) NOT NULL DEFAULT '',
        started   TIMESTAMPTZ NOT NULL DEFAULT now(),
        heartbeat TIMESTAMPTZ NOT NULL DEFAULT now())""",
    f"""CREATE TABLE IF NOT EXISTS {OWNER_TABLE} (
        queue      VARCHAR(255) PRIMARY KEY,
        node       VARCHAR(255) NOT NULL,
        generation BIGINT NOT NULL,
        heartbeat  TIMESTAMPTZ NOT NULL DEFAULT now())""",
    f"""CREATE TABLE IF NOT EXISTS {CLAIM_TABLE} (
        agent       VARCHAR(255) PRIMARY KEY,
        node        VARCHAR(255) NOT NULL,
        queue       VARCHAR(255) NOT NULL DEFAULT '',
        member_uuid VARCHAR(255) NOT NULL DEFAULT '',
        offer_id    BIGINT NOT NULL DEFAULT 0,
        claimed_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())""",
    f"CREATE INDEX IF NOT EXISTS ccfast_agent_claim_node ON {CLAIM_TABLE} (node)",
    # the owner's in-memory queue counters (`queue list`), written with each heartbeat
    f"ALTER TABLE {OWNER_TABLE} ADD COLUMN IF NOT EXISTS calls_answered BIGINT NOT NULL DEFAULT 0",
    f"ALTER TABLE {OWNER_TABLE} ADD COLUMN IF NOT EXISTS calls_abandoned BIGINT NOT NULL DEFAULT 0",
]


class PgSession:
    """One PostgreSQL connection for one purpose (locks, claims, publishing, listening)."""

    def __init__(self, dsn: str | None = None, *, purpose: str = "cluster", op_timeout: float = 5.0,
                 connect_timeout: float = 5.0, **connect_kwargs: Any) -> None:
        if dsn is None and not connect_kwargs:
            raise ValueError("PgSession needs a dsn or asyncpg connect keyword arguments")
        self.dsn = dsn
        self.connect_kwargs = connect_kwargs
        self.purpose = purpose
        self.op_timeout = op_timeout
        self.connect_timeout = connect_timeout
        self.conn: Any = None
        self.pid: int | None = None
        self.lost = trio.Event()
        self.connects = 0
        self._lock = trio.Lock()
        self._on_connect: list[Callable[[Any], Awaitable[None]]] = []  # asyncio-side setup hooks

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.is_closed()

    async def _aio_connect(self) -> Any:
        kw = dict(self.connect_kwargs)
        kw.setdefault("timeout", self.connect_timeout)
        kw.setdefault("server_settings", {"application_name": f"ccfast-{self.purpose}"})
        conn = await asyncpg.connect(self.dsn, **kw)
        try:
            for hook in self._on_connect:
                await hook(conn)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def connect(self) -> None:
        async with self._lock:
            await self._ensure()

    async def _ensure(self) -> Any:
        if self.conn is not None and self.conn.is_closed():
            self.conn = None
        if self.conn is None:
            try:
                conn = await aio.run(self._aio_connect, timeout=self.connect_timeout + 1)
            except Exception as exc:
                raise ClusterUnavailable(f"{self.purpose}: cannot connect to PostgreSQL: {exc}") from exc
            lost = self.lost = trio.Event()
            token = trio.lowlevel.current_trio_token()
            # called on the asyncio side when the connection ends: hand it to trio, never raise there
            conn.add_termination_listener(lambda _c: token.run_sync_soon(lost.set))
            self.conn, self.pid = conn, conn.get_server_pid()
            self.connects += 1
        return self.conn

    async def run(self, body: Callable[..., Awaitable[Any]], *args: Any, timeout: float | None = None) -> Any:
        """Run the asyncio coroutine function ``body(conn, *args)`` as one operation.

        Any failure terminates the connection and raises :class:`ClusterUnavailable` for
        connection-level problems, or the original exception (e.g. a constraint violation) otherwise.
        """
        async with self._lock:
            conn = await self._ensure()
            try:
                return await aio.run(body, conn, *args, timeout=timeout or self.op_timeout)
            except Exception as exc:
                self._terminate()
                if isinstance(exc, (StoreUnavailable, OSError, ConnectionError, asyncpg.PostgresConnectionError,
                                    asyncpg.InterfaceError, asyncpg.exceptions.OperatorInterventionError)):
                    raise ClusterUnavailable(f"{self.purpose}: {type(exc).__name__}: {exc}") from exc
                raise

    def _terminate(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # synchronous: closes the socket; the server releases locks, rolls back
        self.lost.set()

    def abort(self) -> None:
        """Terminate the connection now, without waiting for an operation in flight (which then
        fails): the server releases this session's advisory locks."""
        self._terminate()

    async def close(self) -> None:
        async with self._lock:
            self._terminate()

    # -- small helpers (each one operation) -------------------------------------------------------
    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        async def body(conn: Any) -> list[tuple]:
            return [tuple(r) for r in await conn.fetch(sql, *args)]

        return await self.run(body)

    async def execute(self, sql: str, *args: Any) -> str:
        async def body(conn: Any) -> str:
            return await conn.execute(sql, *args)

        return await self.run(body)


async def ensure_cluster_schema(session: PgSession) -> None:
    """Create the cluster tables if missing (idempotent, safe with several nodes starting)."""

    async def body(conn: Any) -> None:
        async with conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
            for sql in SCHEMA:
                await conn.execute(sql)

    await session.run(body)
