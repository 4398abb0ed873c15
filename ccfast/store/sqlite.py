"""SQLite engine (aiosqlite): in RAM by default, a file in WAL mode when a path is given.

``SqliteStore(None)`` / ``SqliteStore(":memory:")`` is a private in-memory database that lives as
long as the store's connection (mod_callcenter's "RAM disk" advice, without the disk). A path
(e.g. ``/dev/shm/callcenter.db``, mod_callcenter's ``dbname``) opens that file with
``journal_mode=WAL`` and ``synchronous=NORMAL`` so readers (dashboards) never block the writer.
The connection runs in autocommit mode; transactions are explicit BEGIN/COMMIT, and a failed one is
rolled back before the error is reported.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

import aiosqlite
import trio

from . import aio
from .base import DataRejected, SchemaMissing, StoreError, StoreUnavailable
from .engine import Store
from .schema import create_table_sql, copy_columns_sql, quote

MEMORY = ":memory:"


def _direct_ok(db: Any) -> bool:
    """aiosqlite's worker queue and raw connection are there (the private parts it has had
    since 0.17: ``_tx`` takes ``(future, fn)``; the thread reports through
    ``future.get_loop().call_soon_threadsafe``)."""
    return db is not None and getattr(db, "_connection", None) is not None and hasattr(db, "_tx")


def _transaction_job(raw: sqlite3.Connection, statements) -> Callable[[], None]:
    def transaction() -> None:
        raw.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                if args is None:
                    raw.execute(sql)
                else:
                    raw.executemany(sql, args)
            raw.execute("COMMIT")
        except BaseException:
            try:
                raw.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # BEGIN itself failed: nothing to undo
            raise

    return transaction


class _Done:
    """The "future" aiosqlite's thread completes: it calls ``get_loop().call_soon_threadsafe(
    set_result, fut, value)``; here that is trio's ``run_sync_soon`` and an Event."""

    __slots__ = ("_token", "event", "value", "exc")

    def __init__(self, token: Any) -> None:
        self._token = token
        self.event = trio.Event()
        self.value: Any = None
        self.exc: BaseException | None = None

    def get_loop(self) -> "_Done":
        return self

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        self._token.run_sync_soon(fn, *args)

    def done(self) -> bool:
        return self.event.is_set()

    def set_result(self, value: Any) -> None:
        self.value = value
        self.event.set()

    def set_exception(self, exc: BaseException) -> None:
        self.exc = exc
        self.event.set()


class SqliteStore(Store):
    engine = "sqlite"
    dollar = False
    _member_tiebreak = ', "rowid"'

    def __init__(self, path: str | None = None, *, busy_timeout_ms: int = 5000, **kw: Any) -> None:
        super().__init__(**kw)
        self.path = path or MEMORY
        self.busy_timeout_ms = busy_timeout_ms

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY

    def describe(self) -> str:
        return "SQLite in memory" if self.in_memory else f"SQLite file {self.path}"

    # -- asyncio side --------------------------------------------------------------------------
    async def _aio_connect(self) -> Any:
        db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if not self.in_memory:
                cur = await db.execute("PRAGMA journal_mode = WAL")
                mode = (await cur.fetchone())[0]
                if str(mode).lower() != "wal":
                    raise StoreUnavailable(f"{self.path}: cannot switch to WAL (journal_mode is {mode})")
                await db.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            await db.close()
            raise
        return db

    async def _aio_drop(self, db: Any) -> None:
        await db.close()

    async def _aio_begin(self, db: Any) -> None:
        await db.execute("BEGIN IMMEDIATE")

    async def _aio_commit(self, db: Any) -> None:
        await db.execute("COMMIT")

    async def _aio_abort(self, db: Any) -> None:
        try:
            await db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction active (BEGIN itself failed): nothing to undo

    async def _aio_exec(self, db: Any, sql: str, args: list[tuple] | None) -> None:
        if args is None:
            await db.execute(sql)
        else:
            await db.executemany(sql, args)

    async def _transaction(self, statements) -> None:
        """A write transaction (BEGIN, the statements, COMMIT) in ONE job on aiosqlite's thread,
        handed over from trio directly: no asyncio task, no trio-asyncio round trip (that costs
        ~10x the CPU of the hop itself, and the writer writes ~20 batches a second)."""

        async def direct(db: Any) -> None:
            if _direct_ok(db):
                await self._in_thread(db, _transaction_job(db._connection, statements))
            else:
                await aio.run(self._aio_transaction, db, statements, timeout=self.op_timeout)

        await self._run(None, direct=direct)

    async def _aio_transaction(self, db: Any, statements) -> None:
        # the asyncio path (another aiosqlite): one job all the same
        run, raw = getattr(db, "_execute", None), getattr(db, "_connection", None)
        if run is None or raw is None:
            await super()._aio_transaction(db, statements)
        else:
            await run(_transaction_job(raw, statements))

    async def _in_thread(self, db: Any, job: Callable[[], Any]) -> Any:
        """Run ``job`` on aiosqlite's thread (its queue, in order with its own jobs) and wait in
        trio, shielded: a trio cancel never interrupts a transaction. After ``op_timeout`` the
        running statement is interrupted (the job rolls back) and StoreUnavailable is raised."""
        done = _Done(trio.lowlevel.current_trio_token())
        db._tx.put_nowait((done, job))
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.op_timeout):
                await done.event.wait()
            if not done.event.is_set():
                db._connection.interrupt()
                await done.event.wait()  # the interrupted statement returns at once
                if done.exc is not None:
                    raise StoreUnavailable(f"database operation timed out after {self.op_timeout:g} s")
        if done.exc is not None:
            raise done.exc
        return done.value

    async def _aio_fetch(self, db: Any, sql: str, args: tuple | None) -> list[tuple]:
        cur = await db.execute(sql, args or ())
        return list(await cur.fetchall())

    async def _aio_columns(self, db: Any, table: str) -> list[str] | None:
        cur = await db.execute(f"PRAGMA table_info({quote(table)})")
        names = [row[1] for row in await cur.fetchall()]
        return names or None

    async def _aio_rename_instance_column(self, db: Any, table: str, old_columns: list[str]) -> None:
        # copy through a temporary table by column name: the new table has the §1.1 order
        old = f"{table}_ccfast_old"
        await db.execute(f"DROP TABLE IF EXISTS {quote(old)}")
        await db.execute(f"ALTER TABLE {quote(table)} RENAME TO {quote(old)}")
        await db.execute(create_table_sql(table))
        await db.execute(copy_columns_sql(table, old, old_columns))
        await db.execute(f"DROP TABLE {quote(old)}")

    def _classify(self, exc: BaseException) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, sqlite3.OperationalError) and ("no such table" in str(exc) or "no such column" in str(exc)):
            return SchemaMissing(f"{self.describe()}: {self._reason(exc)}")
        if isinstance(exc, sqlite3.OperationalError):  # locked, busy, I/O, disk full: may pass
            return StoreUnavailable(f"{self.describe()}: {self._reason(exc)}")
        if isinstance(exc, (sqlite3.DatabaseError, ValueError, TypeError, OverflowError)):
            return DataRejected(f"{self.describe()} refused the data: {self._reason(exc)}")
        return StoreUnavailable(f"{self.describe()}: {self._reason(exc)}")
