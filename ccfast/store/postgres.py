"""PostgreSQL engine (asyncpg).

``PostgresStore(dsn=None, **connect_kwargs)`` takes either a ``postgresql://`` URL or asyncpg's
``connect()`` keyword arguments (``host``, ``port``, ``user``, ``password``, ``database``, …) —
what ``ccfast.dsn`` produces from mod_callcenter's ``odbc-dsn`` value.

One connection. A transaction is BEGIN … COMMIT inside one asyncio coroutine; on any failure
(including an asyncio-side timeout) the connection is *terminated* rather than rolled back: the
server rolls the transaction back when the session ends, and a connection whose ROLLBACK could have
been interrupted is never reused. The schema migration takes a transaction-scoped advisory lock so
two ccfast processes starting together do not migrate at once.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import asyncpg.exceptions as pgx

from .base import DataRejected, SchemaMissing, StoreError, StoreUnavailable
from .engine import Store
from .schema import LEGACY_INSTANCE_COLUMN, quote

_TRANSIENT = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    pgx.PostgresConnectionError,  # 08xxx, ConnectionDoesNotExistError
    pgx.InterfaceError,  # "connection is closed", "another operation is in progress"
    pgx.OperatorInterventionError,  # 57xxx: admin shutdown, pg_terminate_backend, cannot connect now
    pgx.InsufficientResourcesError,  # 53xxx: too many connections, disk full
    pgx.TransactionRollbackError,  # 40xxx: deadlock / serialization — retry the batch
    pgx.InvalidCatalogNameError,  # the database does not exist (yet): say so, retry
    pgx.InvalidAuthorizationSpecificationError,
    pgx.InvalidPasswordError,
)

SCHEMA_LOCK_KEY = 0x63636661  # "ccfa": pg_advisory_xact_lock key for schema migration


class PostgresStore(Store):
    engine = "postgresql"
    dollar = True
    drop_on_data_error = True  # the server aborted the transaction; start clean

    def __init__(self, dsn: str | None = None, *, op_timeout: float = 30.0, connect_timeout: float = 5.0,
                 **connect_kwargs: Any) -> None:
        super().__init__(op_timeout=op_timeout, connect_timeout=connect_timeout)
        if dsn is None and not connect_kwargs:
            raise ValueError("PostgresStore needs a dsn or asyncpg connect keyword arguments")
        self.dsn = dsn
        self.connect_kwargs = connect_kwargs

    def describe(self) -> str:
        if self.dsn is not None:
            u = urlsplit(self.dsn)
            host = u.hostname or "localhost"
            port = u.port or 5432
            db = u.path.lstrip("/") or (u.username or "")
            user = u.username or ""
        else:
            kw = self.connect_kwargs
            host = kw.get("host") or "localhost"
            port = kw.get("port") or 5432
            db = kw.get("database") or kw.get("user") or ""
            user = kw.get("user") or ""
        return f"PostgreSQL {host}:{port}/{db}" + (f" as {user}" if user else "")

    # -- asyncio side --------------------------------------------------------------------------
    async def _aio_connect(self) -> Any:
        kw = dict(self.connect_kwargs)
        kw.setdefault("timeout", self.connect_timeout)
        kw.setdefault("server_settings", {"application_name": "ccfast"})
        return await asyncpg.connect(self.dsn, **kw)

    def _is_closed(self, conn: Any) -> bool:
        return conn.is_closed()

    async def _aio_drop(self, conn: Any) -> None:
        conn.terminate()

    async def _aio_begin(self, conn: Any) -> None:
        await conn.execute("BEGIN")

    async def _aio_commit(self, conn: Any) -> None:
        await conn.execute("COMMIT")

    async def _aio_abort(self, conn: Any) -> None:
        conn.terminate()  # see module docstring: never ROLLBACK on a possibly interrupted connection

    async def _aio_exec(self, conn: Any, sql: str, args: list[tuple] | None) -> None:
        if args is None:
            await conn.execute(sql)
        elif len(args) == 1:
            await conn.execute(sql, *args[0])
        else:
            await conn.executemany(sql, args)

    async def _aio_fetch(self, conn: Any, sql: str, args: tuple | None) -> list[tuple]:
        return await conn.fetch(sql, *(args or ()))

    async def _aio_schema_lock(self, conn: Any) -> None:
        await conn.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")

    async def _aio_columns(self, conn: Any, table: str) -> list[str] | None:
        rows = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            table,
        )
        return [r[0] for r in rows] or None

    async def _aio_rename_instance_column(self, conn: Any, table: str, old_columns: list[str]) -> None:
        # RENAME COLUMN keeps the column's position
        await conn.execute(
            f"ALTER TABLE {quote(table)} RENAME COLUMN {quote(LEGACY_INSTANCE_COLUMN)} TO {quote('instance_id')}"
        )

    async def server_pid(self) -> int | None:
        """The backend pid of the current connection (tests: pg_terminate_backend), or None."""
        conn = self._conn
        return None if conn is None else conn.get_server_pid()

    def _classify(self, exc: BaseException) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, (pgx.UndefinedTableError, pgx.UndefinedColumnError)):
            return SchemaMissing(f"{self.describe()}: {self._reason(exc)}")
        if isinstance(exc, _TRANSIENT):
            return StoreUnavailable(f"{self.describe()}: {self._reason(exc)}")
        if isinstance(exc, (pgx.PostgresError, ValueError, TypeError, OverflowError)):
            return DataRejected(f"{self.describe()} refused the data: {self._reason(exc)}")
        return StoreUnavailable(f"{self.describe()}: {self._reason(exc)}")
