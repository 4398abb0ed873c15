"""The write-behind writer: one trio task that persists the core's journal in batches.

The hot path calls :meth:`Writer.submit` with ``core.drain_journal()``'s entries; it never awaits,
never touches the database and costs O(entries). The writer task takes the pending changes in
order, at most ``max_batch_rows`` at a time, at most ``max_delay`` seconds after the oldest pending
one arrived (or at once when a full batch is pending), and writes each batch in ONE transaction.

Coalescing (bounded memory): pending changes are kept one per ``(table, key)`` in order of first
appearance; a new entry for a key already pending is merged into it — update+update: later column
values win; insert+update → insert; insert+delete → nothing; update+delete → delete;
delete+insert → insert that first deletes the old row (see :mod:`ccfast.store.base`). So the
backlog never holds more changes than distinct rows touched since the last write, and the state
after a batch is exactly the state after the journal entries it covers.

When the database is slower than the journal: the backlog grows (one change per touched row) up
to ``max_backlog``. Beyond that the writer *overflows*: it says so loudly (error log, ``overflows``
counter, ``state``), drops the backlog, and — when it has a ``resync_source`` (a callable returning
the core's current rows of the three tables) — replaces it with a full snapshot of the core's state,
written in one transaction that replaces the tables' content; entries submitted afterwards are
written after it. Without a resync source it stays in ``overflow`` state and counts the entries it
drops (``dropped``) until :meth:`snapshot` is called. Nothing is lost silently; memory stays
bounded by ``max_backlog`` changes plus one snapshot.

The snapshot contract: the rows must reflect every journal entry already submitted and none
submitted later. That holds when the service submits each core call's journal right after the call,
with no await in between (then calling ``core.rows()`` from any task is consistent).

Faults: a batch whose write fails because the database is unreachable (connection lost, server
restarted, ``pg_terminate_backend``, timeout) is retried with exponential backoff and replayed in
the same order; replays are idempotent (insert = delete-by-key + insert), so a commit whose outcome
was unknown is harmless. New entries keep coalescing behind the failed batch. A batch the database
refuses (bad data) is split and written change by change; each refused change is logged and counted
(``rejected``) and skipped. Tables that disappeared are recreated (``ensure_schema``) and, with a
resync source, refilled from a snapshot.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Iterable

import trio

from .base import (
    _fast,
    DELETE,
    OP_DELETE,
    OP_INSERT,
    OP_UPDATE,
    PUT,
    UPDATE,
    Change,
    DataRejected,
    Rows,
    SchemaMissing,
    StoreError,
    StoreUnavailable,
)
from .schema import COLUMN_NAMES, INT_COLUMNS, KEY_COLUMNS, TABLES

log = logging.getLogger("ccfast.store.writer")

STATE_OK = "ok"
STATE_RETRYING = "retrying"
STATE_OVERFLOW = "overflow"
STATE_RESYNC = "resync"

_COLSETS = {t: frozenset(c) for t, c in COLUMN_NAMES.items()}
_KEYLEN = {t: len(k) for t, k in KEY_COLUMNS.items()}
_INFO = {t: (_KEYLEN[t], _COLSETS[t]) for t in COLUMN_NAMES}


@dataclasses.dataclass
class WriterConfig:
    max_delay: float = 0.05  # batch window: seconds after the oldest pending change
    max_batch_rows: int = 5000  # changes per transaction
    max_backlog: int = 100_000  # hard bound on pending changes; above it: overflow
    retry_initial: float = 0.1  # backoff after a failed write, doubling …
    retry_max: float = 5.0  # … up to this
    db_latency: float = 0.0  # test/bench knob: seconds slept before every database write

    def __post_init__(self) -> None:
        if self.max_delay < 0 or self.db_latency < 0:
            raise ValueError("max_delay and db_latency must be >= 0")
        if self.max_batch_rows < 1 or self.max_backlog < self.max_batch_rows:
            raise ValueError("need 1 <= max_batch_rows <= max_backlog")
        if not 0 < self.retry_initial <= self.retry_max:
            raise ValueError("need 0 < retry_initial <= retry_max")


@dataclasses.dataclass
class WriterStats:
    """Counters for metrics. Times: ``last_write_time`` is wall-clock epoch seconds."""

    submitted: int = 0  # journal entries accepted
    coalesced: int = 0  # entries merged into a pending change
    rows_written: int = 0  # changes committed
    batches: int = 0  # batch transactions committed
    snapshots: int = 0  # snapshot transactions committed
    snapshot_rows: int = 0
    retries: int = 0  # failed write attempts that will be retried
    rejected: int = 0  # changes the database refused (logged, skipped)
    overflows: int = 0  # times the backlog passed max_backlog
    superseded: int = 0  # pending changes replaced by a snapshot (not lost)
    dropped: int = 0  # entries discarded in overflow with no snapshot yet (lost until resync)
    last_write_time: float | None = None
    last_batch_seconds: float = 0.0
    batch_seconds_total: float = 0.0
    batch_seconds_max: float = 0.0
    recent_batch_seconds: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=1024)
    )
    last_error: str | None = None


class Backlog:
    """Pending changes, one per (table, key), in order of first appearance (see module doc)."""

    def __init__(self) -> None:
        # a plain dict keeps insertion order and is cheaper than an OrderedDict per entry
        self._pending: dict[tuple[str, tuple], Change] = {}
        self.coalesced = 0  # entries merged into a pending change
        self.accepted = 0  # entries taken (merged or new)

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, table: str, op: str, key: tuple, cols: dict) -> None:
        """Merge one (already validated) entry; see :meth:`add_many`."""
        self.add_many(((table, op, key, cols),), check=False)

    def add_many(self, entries: Iterable[Any], check: bool = True) -> int:
        """Validate (``check``) and merge journal entries in order; returns how many.

        A malformed entry raises ValueError (:func:`validate_entry`'s message); the entries
        before it are merged. The cols dicts are kept, not copied (a merge builds a new dict, so
        the caller's dicts are never changed): the caller must not change them afterwards — the
        core never does, its journal is handed over by ``drain_journal``.
        """
        if _fast is not None:
            return _fast.add_many(self, self._pending, entries, check, _INFO, validate_entry)
        return self._add_many_py(entries, check)

    def _add_many_py(self, entries: Iterable[Any], check: bool = True) -> int:
        pending = self._pending
        get = pending.get
        info = _INFO
        n = merged = 0
        try:
            for entry in entries:
                if check:
                    try:
                        table, op, key, cols = entry
                        keylen, colset = info[table]
                        ok = type(key) is tuple and len(key) == keylen and cols.keys() <= colset
                    except Exception:
                        ok = False
                    if not ok:
                        validate_entry(entry)  # raises the specific error
                        raise ValueError(f"malformed journal entry {entry!r}")  # pragma: no cover
                else:
                    table, op, key, cols = entry
                k = (table, key)
                ch = get(k)
                if ch is None:
                    if op == OP_UPDATE:
                        pending[k] = Change(table, key, UPDATE, cols, True)
                    elif op == OP_INSERT:
                        pending[k] = Change(table, key, PUT, cols, False)
                    elif op == OP_DELETE:
                        pending[k] = Change(table, key, DELETE, {}, True)
                    else:
                        validate_entry(entry)
                    n += 1
                    continue
                if op == OP_UPDATE:
                    if ch.kind != DELETE:  # an update after a delete touches no row
                        ch.cols = {**ch.cols, **cols}  # a new dict: never the caller's
                elif op == OP_INSERT:
                    if ch.kind != PUT:
                        ch.had_row = True  # the row existed (update) or may still exist (delete pending)
                    ch.kind, ch.cols = PUT, cols
                elif op == OP_DELETE:
                    if ch.kind == PUT and not ch.had_row:
                        del pending[k]  # inserted and deleted before reaching the database
                    else:
                        ch.kind, ch.cols = DELETE, {}
                else:
                    validate_entry(entry)
                merged += 1
                n += 1
        finally:
            self.coalesced += merged
            self.accepted += n
        return n

    def take(self, n: int) -> list[Change]:
        """The ``n`` oldest pending changes (all of them, usually), removed from the backlog."""
        pending = self._pending
        if n >= len(pending):
            out = list(pending.values())
            pending.clear()
            return out
        keys = list(itertools.islice(pending, n))
        return [pending.pop(k) for k in keys]

    def clear(self) -> int:
        n = len(self._pending)
        self._pending.clear()
        return n


def validate_entry(entry: Any, *, types: bool = False) -> tuple[str, str, tuple, dict]:
    """Check one journal entry's shape; ValueError naming the problem.

    ``types``: also check that every value is what the column binds without conversion — None,
    ``int`` (not bool) for integer columns, ``str`` otherwise, and ``str`` key parts. The writer
    binds values as they are (``base.change_statements``); tests check the core's journal with
    this, the writer itself only checks shapes (a refused batch is retried converted)."""
    try:
        table, op, key, cols = entry
    except (TypeError, ValueError):
        raise ValueError(f"journal entry must be (table, op, key, cols), got {entry!r}") from None
    if table not in _COLSETS:
        raise ValueError(f"journal entry for unknown table {table!r}")
    if op not in (OP_INSERT, OP_UPDATE, OP_DELETE):
        raise ValueError(f"journal entry op must be insert/update/delete, got {op!r}")
    if type(key) is not tuple or len(key) != _KEYLEN[table]:
        raise ValueError(f"journal key for {table} must be a tuple of {KEY_COLUMNS[table]}, got {key!r}")
    if not cols.keys() <= _COLSETS[table]:
        bad = sorted(set(cols) - _COLSETS[table])
        raise ValueError(f"journal entry for {table} has unknown column(s) {bad}")
    if types:
        for name, v in zip(KEY_COLUMNS[table], key):
            if type(v) is not str:
                raise ValueError(f"journal {table} key {name} must be str, got {type(v).__name__} {v!r}")
        ints = INT_COLUMNS[table]
        for c, v in cols.items():
            want = int if c in ints else str
            if v is not None and type(v) is not want:
                raise ValueError(f"journal {table}.{c} must be {want.__name__}, got {type(v).__name__} {v!r}")
    return table, op, key, cols


class Writer:
    """Write-behind of journal entries into a :class:`~ccfast.store.engine.Store` (module doc)."""

    def __init__(
        self,
        store: Any,
        config: WriterConfig | None = None,
        *,
        resync_source: Callable[[], Rows] | None = None,
    ) -> None:
        self.store = store
        self.config = config or WriterConfig()
        self.resync_source = resync_source
        self.stats = WriterStats()
        self._backlog = Backlog()
        self._inflight: list[Change] = []
        self._replay = False
        self._resync: Rows | None = None
        self._state = STATE_OK
        self._first_at: float | None = None  # trio time the oldest pending change arrived
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._flush_requested = False
        self._running = False

    # -- hot path (sync, never awaits) ---------------------------------------------------------
    def submit(self, entries: Iterable[tuple[str, str, tuple, dict]]) -> None:
        """Queue journal entries for writing. Never blocks; ValueError on a malformed entry."""
        if self._state == STATE_OVERFLOW:
            n = sum(1 for e in entries if validate_entry(e))
            self.stats.dropped += n
            return
        backlog = self._backlog
        pending = backlog._pending
        size0 = len(pending)
        before = backlog.accepted
        try:
            backlog.add_many(entries)
        finally:  # a malformed entry raises; the entries before it are pending and accounted
            n = backlog.accepted - before
            if n:
                self.stats.submitted += n
                size = len(pending)
                if not size0 and size:
                    self._first_at = trio.current_time()
                    self._wake.set()
                config = self.config
                if size >= config.max_batch_rows:
                    self._wake.set()
                if size > config.max_backlog:
                    self._overflow()

    def snapshot(self, rows: Rows) -> None:
        """Replace everything pending with a full resync to ``rows`` (the core's current rows).

        See the module doc for the consistency contract. Entries submitted after this call are
        written after the snapshot.
        """
        unknown = set(rows) - set(TABLES)
        if unknown:
            raise ValueError(f"snapshot: unknown table(s) {sorted(unknown)}")
        self._resync = {t: [dict(r) for r in rows.get(t, ())] for t in TABLES}
        self.stats.superseded += self._backlog.clear() + len(self._inflight)
        self._first_at = None
        self._state = STATE_RESYNC
        self._wake.set()

    def _overflow(self) -> None:
        self.stats.overflows += 1
        n = self._backlog.clear()
        self._first_at = None
        if self.resync_source is not None:
            rows = self.resync_source()
            self.snapshot(rows)
            log.error(
                "store: write-behind backlog passed %d changes (%s is slower than the journal); "
                "replaced by a snapshot of the core's state (%d rows)",
                self.config.max_backlog, self.store.describe(), sum(len(v) for v in rows.values()),
            )
        else:
            self.stats.dropped += n
            self._state = STATE_OVERFLOW
            log.error(
                "store: write-behind backlog passed %d changes (%s is slower than the journal) and no "
                "resync source is set: %d changes DROPPED, further changes are dropped until snapshot()",
                self.config.max_backlog, self.store.describe(), n,
            )
        self._wake.set()

    # -- introspection -------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Changes not yet committed (pending + in the batch being written)."""
        return len(self._backlog) + len(self._inflight)

    @property
    def state(self) -> str:
        return self._state

    @property
    def busy(self) -> bool:
        return bool(self._backlog or self._inflight or self._resync is not None)

    def metrics(self) -> dict[str, Any]:
        s = dataclasses.asdict(self.stats)
        s["recent_batch_seconds"] = list(self.stats.recent_batch_seconds)
        s.update(backlog=self.backlog, state=self._state, coalesced=self._backlog.coalesced,
                 store_connects=getattr(self.store, "connects", 0), store_failures=getattr(self.store, "failures", 0))
        return s

    # -- waiting ---------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (skips the batch window).

        Raises :class:`StoreError` in overflow state without a snapshot (it would never finish).
        """
        while self.busy or self._state == STATE_OVERFLOW:
            if self._state == STATE_OVERFLOW:
                raise StoreError("write-behind is in overflow: changes were dropped; call snapshot()")
            if not self._running:
                raise StoreError("write-behind task is not running")
            self._flush_requested = True
            self._wake.set()
            progress = self._progress
            await progress.wait()

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def _wait_wake(self) -> None:
        await self._wake.wait()
        self._wake = trio.Event()

    # -- the task --------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """The writer task; start it with ``nursery.start(writer.run)``. Runs until cancelled."""
        self._running = True
        try:
            task_status.started()
            while True:
                await self._wait_for_work()
                await self._write_next()
                self._signal_progress()
        finally:
            self._running = False
            self._signal_progress()

    async def _wait_for_work(self) -> None:
        while True:
            if self._resync is not None or self._inflight:
                return
            if self._backlog:
                if self._flush_requested or len(self._backlog) >= self.config.max_batch_rows:
                    return
                deadline = (self._first_at or trio.current_time()) + self.config.max_delay
                if trio.current_time() >= deadline:
                    return
                with trio.move_on_at(deadline):
                    await self._wait_wake()
                continue
            self._flush_requested = False
            self._signal_progress()
            await self._wait_wake()

    async def _write_next(self) -> None:
        if self._resync is not None:
            await self._write_snapshot()
            return
        if not self._inflight:
            self._inflight = self._backlog.take(self.config.max_batch_rows)
            self._replay = False
            if not self._backlog:
                self._first_at = None
                self._flush_requested = False
        if await self._write_changes(self._inflight):
            self._inflight = []

    async def _write_snapshot(self) -> None:
        delay = self.config.retry_initial
        while self._resync is not None:
            rows = self._resync
            n = sum(len(v) for v in rows.values())
            try:
                await self._timed(self.store.write_snapshot(rows), n)
            except StoreUnavailable as exc:
                delay = await self._failed(exc, delay, "snapshot")
                continue
            except DataRejected as exc:  # a core row the database refuses: nothing better to write
                self.stats.rejected += n
                self.stats.last_error = str(exc)
                log.error("store: snapshot of %d rows REJECTED: %s", n, exc)
            if self._resync is rows:
                self._resync = None
                self._inflight = []
                self._state = STATE_OK
                self.stats.snapshots += 1
                self.stats.snapshot_rows += n

    async def _write_changes(self, batch: list[Change]) -> bool:
        """Write ``batch`` until committed; False if a snapshot superseded it meanwhile."""
        delay = self.config.retry_initial
        while True:
            if self._resync is not None:
                return False
            try:
                await self._timed(self.store.write_changes(batch, replay=self._replay), len(batch))
            except StoreUnavailable as exc:
                self._replay = True  # the outcome of that commit is unknown
                if isinstance(exc, SchemaMissing):
                    await self._recreate_schema()
                delay = await self._failed(exc, delay, f"batch of {len(batch)}")
                continue
            except DataRejected as exc:
                if len(batch) == 1:
                    self.stats.rejected += 1
                    self.stats.last_error = str(exc)
                    log.error("store: change %r REJECTED and skipped: %s", batch[0], exc)
                    return True
                log.warning("store: batch of %d refused (%s); writing it change by change", len(batch), exc)
                for ch in batch:
                    if not await self._write_changes([ch]):
                        return False
                return True
            if self._state == STATE_RETRYING:
                self._state = STATE_OK
                log.warning("store: %s writable again; replayed the failed batch", self.store.describe())
            return True

    async def _timed(self, write: Any, n: int) -> None:
        if self.config.db_latency:
            await trio.sleep(self.config.db_latency)
        t0 = time.perf_counter()
        await write
        dt = time.perf_counter() - t0 + self.config.db_latency
        st = self.stats
        st.rows_written += n
        st.batches += 1
        st.last_write_time = time.time()
        st.last_batch_seconds = dt
        st.batch_seconds_total += dt
        st.batch_seconds_max = max(st.batch_seconds_max, dt)
        st.recent_batch_seconds.append(dt)

    async def _failed(self, exc: BaseException, delay: float, what: str) -> float:
        self.stats.retries += 1
        self.stats.last_error = str(exc)
        if self._state in (STATE_OK, STATE_RETRYING):
            self._state = STATE_RETRYING
        log.error("store: writing %s failed: %s — retrying in %.2f s (backlog %d)", what, exc, delay, self.backlog)
        await trio.sleep(delay)
        return min(delay * 2, self.config.retry_max)

    async def _recreate_schema(self) -> None:
        try:
            done = await self.store.ensure_schema()
        except StoreError as exc:
            log.error("store: cannot recreate the tables: %s", exc)
            return
        if done and self.resync_source is not None:
            log.error("store: tables were missing and were recreated (%s); resyncing from the core", "; ".join(done))
            self.snapshot(self.resync_source())


@asynccontextmanager
async def open_writer(
    store: Any,
    config: WriterConfig | None = None,
    *,
    resync_source: Callable[[], Rows] | None = None,
    flush_timeout: float = 10.0,
) -> AsyncIterator[Writer]:
    """Run a :class:`Writer` for the body's duration; on exit flush (at most ``flush_timeout``)."""
    writer = Writer(store, config, resync_source=resync_source)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        try:
            yield writer
        finally:
            with trio.move_on_after(flush_timeout) as scope:
                scope.shield = True
                try:
                    await writer.flush()
                except StoreError as exc:
                    log.error("store: final flush incomplete: %s", exc)
            if scope.cancelled_caught:
                log.error("store: final flush timed out with %d changes unwritten", writer.backlog)
            nursery.cancel_scope.cancel()
