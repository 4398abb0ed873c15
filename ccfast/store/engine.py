"""The :class:`Store` base: trio-facing database operations over one connection.

Every public method is a trio coroutine that runs exactly one asyncio coroutine (one transaction)
through :func:`ccfast.store.aio.run`. Operations on one store are serialised by a trio lock (a
driver connection cannot run two operations at once). The connection is opened lazily; after ANY
failure inside an operation it is dropped (PostgreSQL: terminated, so the server rolls back) and
the next operation reconnects — a broken or half-committed connection is never reused.

Errors: :class:`StoreUnavailable` (cannot connect, connection lost, timeout: retry later) and
:class:`DataRejected` (the database refused the data: retrying the same data fails again). Both
name the target (never the password).

Subclasses (``sqlite.SqliteStore``, ``postgres.PostgresStore``) supply the asyncio-side
primitives ``_aio_connect``, ``_aio_drop``, ``_aio_begin/commit/abort``, ``_aio_exec``,
``_aio_fetch``, ``_aio_columns``, ``_aio_rename_instance_column`` and ``_classify``.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Iterable

import trio

from . import aio
from .base import (
    Change,
    DataRejected,
    Rows,
    StoreError,
    StoreUnavailable,
    batch_statements,
    change_statements,
    select_sql,
    snapshot_statements,
)
from .recovery import CONFIG_TABLES, startup_reset_statements
from .schema import AGENTS, COLUMN_NAMES, MEMBERS, TABLES, TIERS, migrate, quote

log = logging.getLogger("ccfast.store")

Statements = list[tuple[str, list[tuple] | None]]  # (sql, executemany args | None = run once)


class _Ops:
    """schema.SchemaOps over an engine and an open connection (asyncio side)."""

    def __init__(self, store: "Store", conn: Any) -> None:
        self.store, self.conn = store, conn

    async def columns(self, table: str) -> list[str] | None:
        return await self.store._aio_columns(self.conn, table)

    async def execute(self, sql: str) -> None:
        await self.store._aio_exec(self.conn, sql, None)

    async def rename_instance_column(self, table: str, old_columns: list[str]) -> None:
        await self.store._aio_rename_instance_column(self.conn, table, old_columns)


class Store:
    engine = "?"
    dollar = False  # placeholder style: $1 (PostgreSQL) or ? (SQLite)

    def __init__(self, *, op_timeout: float = 30.0, connect_timeout: float = 5.0) -> None:
        self.op_timeout = op_timeout
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._lock = trio.Lock()
        self.connects = 0  # connections opened (for metrics: > 1 means reconnects happened)
        self.failures = 0  # operations that failed (each also raised or was retried once)

    # -- description, for messages ---------------------------------------------------------
    def describe(self) -> str:
        """The target without secrets, e.g. ``PostgreSQL 127.0.0.1:5432/db as user``."""
        raise NotImplementedError

    # -- connection ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def connect(self) -> None:
        """Open the connection if needed; :class:`StoreUnavailable` with the reason if impossible."""
        async with self._lock:
            await self._ensure()

    async def connect_with_retry(
        self, *, initial: float = 0.5, maximum: float = 10.0, attempts: int | None = None
    ) -> None:
        """Connect, retrying with exponential backoff; each failure is logged once with its reason.

        ``attempts=None`` retries forever (the service at start: a database that is down is not a
        reason to crash-loop); otherwise the last :class:`StoreUnavailable` is raised.
        """
        delay, n = initial, 0
        while True:
            try:
                await self.connect()
                if n:
                    log.warning("store: connected to %s after %d failed attempt(s)", self.describe(), n)
                return
            except StoreUnavailable as exc:
                n += 1
                if attempts is not None and n >= attempts:
                    raise
                log.error("store: %s — retrying in %.2f s", exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, maximum)

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def _ensure(self) -> Any:
        if self._conn is None:
            try:
                self._conn = await aio.run(self._aio_connect, timeout=self.connect_timeout + 1)
                self.connects += 1
            except StoreUnavailable as exc:
                raise StoreUnavailable(f"cannot connect to {self.describe()}: {exc}") from exc
            except aio.NoLoop:
                raise  # not the database's fault: retrying would wait forever
            except Exception as exc:
                raise StoreUnavailable(f"cannot connect to {self.describe()}: {self._reason(exc)}") from exc
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await aio.run(self._aio_drop, conn, timeout=5)
            except Exception as exc:  # closing a broken connection may fail; it is gone either way
                log.debug("store: error while dropping connection: %r", exc)

    @staticmethod
    def _reason(exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text

    # -- running one operation ---------------------------------------------------------------
    async def _run(self, body: Callable[[Any], Awaitable[Any]] | None, *, transaction: bool = True,
                   direct: Callable[[Any], Awaitable[Any]] | None = None) -> Any:
        """Run ``body(conn)`` (asyncio coroutine fn) as one operation, in a transaction.

        ``direct(conn)`` instead: a trio coroutine fn that runs the whole operation itself (an
        engine's shortcut past the asyncio loop; it must be shielded and bounded like aio.run)."""

        async def op(conn: Any) -> Any:
            if not transaction:
                return await body(conn)
            await self._aio_begin(conn)
            try:
                result = await body(conn)
                await self._aio_commit(conn)
            except BaseException:
                await self._aio_abort(conn)
                raise
            return result

        async with self._lock:
            for attempt in (1, 2):
                reused = self._conn is not None and not self._is_closed(self._conn)
                if self._conn is not None and not reused:
                    await self._drop()  # closed while idle (server restart, pg_terminate_backend)
                conn = await self._ensure()
                try:
                    if direct is not None:
                        return await direct(conn)
                    return await aio.run(op, conn, timeout=self.op_timeout)
                except Exception as exc:
                    self.failures += 1
                    err = self._classify(exc)
                    if isinstance(err, StoreUnavailable) or self.drop_on_data_error:
                        await self._drop()
                    # a connection that died while idle is only noticed on use: every operation
                    # here is idempotent, so one retry on a fresh connection is safe
                    if attempt == 1 and reused and isinstance(err, StoreUnavailable):
                        log.warning("store: %s; retrying once on a new connection", err)
                        continue
                    raise err from exc

    def _is_closed(self, conn: Any) -> bool:
        return False

    drop_on_data_error = False

    async def _aio_schema_lock(self, conn: Any) -> None:
        """Serialise concurrent migrations across processes (engines that can)."""

    def _classify(self, exc: BaseException) -> StoreError:
        raise NotImplementedError

    async def _exec_all(self, conn: Any, statements: Statements) -> None:
        for sql, args in statements:
            await self._aio_exec(conn, sql, args)

    # -- public operations -------------------------------------------------------------------
    async def ensure_schema(self) -> list[str]:
        """Create the tables if missing, migrate old ones (§1.4); return the actions taken."""

        async def body(conn: Any) -> list[str]:
            await self._aio_schema_lock(conn)
            return await migrate(_Ops(self, conn))

        done = await self._run(body)
        for line in done:
            # a table created because it was missing is how every new database starts: INFO;
            # a migration or a re-created old table is worth an operator's attention: WARNING
            level = logging.INFO if line.endswith(": created (missing)") else logging.WARNING
            log.log(level, "store: schema of %s: %s", self.describe(), line)
        return done

    async def write_changes(self, changes: list[Change], *, replay: bool = False) -> None:
        """Write one batch of coalesced changes in one transaction (idempotent: an insert is
        delete-by-key + insert, so ``replay`` needs nothing more).

        The values go as they are (:func:`change_statements`); a batch the database refuses is
        tried once more with values converted to the column types (:func:`batch_statements`)
        before :class:`DataRejected` reaches the caller."""
        try:
            await self._transaction(change_statements(changes, self.dollar))
        except DataRejected:
            await self._transaction(batch_statements(changes, self.dollar, replay))

    async def write_snapshot(self, rows: Rows) -> None:
        """Replace the content of the three tables with ``rows`` in one transaction."""
        await self._transaction(snapshot_statements(rows, self.dollar))

    async def _transaction(self, statements: Statements) -> None:
        async def body(conn: Any) -> None:
            await self._aio_transaction(conn, statements)

        await self._run(body, transaction=False)

    async def _aio_transaction(self, conn: Any, statements: Statements) -> None:
        """BEGIN, the statements, COMMIT (abort on failure); engines may do it in fewer hops."""
        await self._aio_begin(conn)
        try:
            await self._exec_all(conn, statements)
            await self._aio_commit(conn)
        except BaseException:
            await self._aio_abort(conn)
            raise

    async def load_rows(self) -> Rows:
        """All rows of agents (by name), tiers (by queue, agent) and members (by joined_epoch).

        Member ties keep the database's order (SQLite: insertion order by rowid).
        """
        order = {
            AGENTS: f" ORDER BY {quote('name')}",
            TIERS: f" ORDER BY {quote('queue')}, {quote('agent')}",
            MEMBERS: f" ORDER BY {quote('joined_epoch')}" + self._member_tiebreak,
        }

        async def body(conn: Any) -> Rows:
            out: Rows = {}
            for table in TABLES:
                records = await self._aio_fetch(conn, select_sql(table) + order[table], None)
                names = COLUMN_NAMES[table]
                out[table] = [dict(zip(names, rec)) for rec in records]
            return out

        return await self._run(body)

    _member_tiebreak = ""

    async def startup_reset(
        self, instance_id: str, *, truncate_agents: bool = False, truncate_tiers: bool = False, reset: bool = True
    ) -> None:
        """mod_callcenter's startup reset and optional truncation (§1.5), in one transaction
        (``reset=False``: the truncation only)."""
        statements = startup_reset_statements(
            instance_id, truncate_agents=truncate_agents, truncate_tiers=truncate_tiers, dollar=self.dollar,
            reset=reset,
        )
        if not statements:
            return

        await self._transaction(statements)

    async def fetch_config_tables(
        self, tables: Iterable[str] = CONFIG_TABLES, *, required: bool = True
    ) -> dict[str, list[dict] | None]:
        """Rows of the "config in database" tables (``cc_queues`` …) as dicts, ordered by ``id``.

        A missing table raises :class:`StoreError` naming it, or maps to None if not ``required``.
        """
        tables = list(tables)

        async def body(conn: Any) -> dict[str, list[dict] | None]:
            out: dict[str, list[dict] | None] = {}
            for table in tables:
                cols = await self._aio_columns(conn, table)
                if cols is None:
                    out[table] = None
                    continue
                order = f" ORDER BY {quote('id')}" if "id" in cols else ""
                records = await self._aio_fetch(
                    conn, f"SELECT {', '.join(map(quote, cols))} FROM {quote(table)}{order}", None
                )
                out[table] = [dict(zip(cols, rec)) for rec in records]
            return out

        result = await self._run(body, transaction=False)
        missing = [t for t, v in result.items() if v is None]
        if missing and required:
            raise StoreError(f"config table(s) {', '.join(missing)} not found in {self.describe()}")
        return result

    async def execute(self, statements: Statements) -> None:
        """Run raw statements in one transaction (tests, tools)."""

        await self._transaction(statements)

    async def fetch(self, sql: str, args: tuple | None = None) -> list[tuple]:
        """Run one query and return its rows as tuples (tests, tools)."""

        async def body(conn: Any) -> list[tuple]:
            return [tuple(r) for r in await self._aio_fetch(conn, sql, args)]

        return await self._run(body, transaction=False)

    async def columns(self, table: str) -> list[str] | None:
        async def body(conn: Any) -> list[str] | None:
            return await self._aio_columns(conn, table)

        return await self._run(body, transaction=False)

    async def ping(self) -> None:
        await self.fetch("SELECT 1")
