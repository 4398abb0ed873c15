"""Engine-neutral parts of the store: errors, the coalesced row change, and the batch SQL.

A journal entry from the core is ``(table, op, key, cols)`` with op ``insert``/``update``/
``delete`` (docs/core-contract.md). The writer coalesces entries per ``(table, key)`` into one
:class:`Change` whose ``kind`` is:

* ``PUT``    — the row with this key is now exactly ``cols`` (key columns filled from the key,
  absent columns take their defaults). Written as DELETE of the key + INSERT, so every change is
  idempotent: a replayed batch (a commit whose outcome was unknown) or a stale row left in the
  database never produces a duplicate row. ``had_row`` records whether a row may exist in the
  database already; only then may a later delete not be coalesced away.
* ``UPDATE`` — set these columns on the row(s) with this key.
* ``DELETE`` — delete the row(s) with this key.

Inside one batch every ``(table, key)`` appears at most once, so the statements of a batch can be
grouped by shape (all deletes, then inserts, then updates) without changing the result; a batch is
one transaction.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

from .schema import COLUMN_NAMES, INT_COLUMNS, KEY_COLUMNS, quote

PUT = "put"
UPDATE = "update"
DELETE = "delete"

OP_INSERT = "insert"
OP_UPDATE = "update"
OP_DELETE = "delete"
OPS = (OP_INSERT, OP_UPDATE, OP_DELETE)

Rows = dict[str, list[dict[str, Any]]]


class StoreError(Exception):
    """Base class of store errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or the connection broke; the operation may be retried."""


class SchemaMissing(StoreUnavailable):
    """A table or column ccfast writes is missing (dropped behind its back): recreate, resync."""


class DataRejected(StoreError):
    """The database refused the data of an operation (retrying the same data will fail again)."""


class _ChangePy:
    """One coalesced row change (see module docstring); ``Change`` is the compiled twin when
    ``ccfast.store._fast`` is built."""

    __slots__ = ("table", "key", "kind", "cols", "had_row")

    def __init__(self, table: str, key: tuple, kind: str, cols: dict, had_row: bool) -> None:
        self.table = table
        self.key = key
        self.kind = kind
        self.cols = cols
        self.had_row = had_row

    def __repr__(self) -> str:
        return f"Change({self.table}, {self.key!r}, {self.kind}, {self.cols!r}, had_row={self.had_row})"


try:  # the compiled hot loops (ccfast/store/_fast.pyx); the pure-Python code below is the fallback
    from . import _fast
except ImportError:  # pragma: no cover - not built
    _fast = None
Change: Any = _fast.Change if _fast is not None else _ChangePy


def row_values(table: str, cols: Iterable[str], row: dict) -> tuple:
    """``row``'s values for ``cols`` as the column types want them: None stays None, integer
    columns become ``int``, the others ``str`` (the writer converts ~15 rows per call)."""
    ints = INT_COLUMNS[table]
    out = []
    for c in cols:
        v = row[c]
        if v is not None:
            if c in ints:
                if type(v) is not int:
                    v = int(v)
            elif type(v) is not str:
                v = str(v)
        out.append(v)
    return tuple(out)


@lru_cache(maxsize=512)
def _sql(kind: str, table: str, cols: tuple[str, ...], dollar: bool) -> str:
    def ph(i: int) -> str:
        return f"${i}" if dollar else "?"

    keys = KEY_COLUMNS[table]
    t = quote(table)
    if kind == DELETE:
        where = " AND ".join(f"{quote(k)} = {ph(i + 1)}" for i, k in enumerate(keys))
        return f"DELETE FROM {t} WHERE {where}"
    if kind == PUT:
        return (
            f"INSERT INTO {t} ({', '.join(map(quote, cols))}) "
            f"VALUES ({', '.join(ph(i + 1) for i in range(len(cols)))})"
        )
    sets = ", ".join(f"{quote(c)} = {ph(i + 1)}" for i, c in enumerate(cols))
    where = " AND ".join(f"{quote(k)} = {ph(len(cols) + i + 1)}" for i, k in enumerate(keys))
    return f"UPDATE {t} SET {sets} WHERE {where}"


def batch_statements(changes: Iterable[Change], dollar: bool, replay: bool) -> list[tuple[str, list[tuple]]]:
    """Group a batch into ``(sql, [args, …])`` executemany calls: deletes, inserts, updates."""
    deletes: dict[str, list[tuple]] = {}
    inserts: dict[tuple[str, tuple[str, ...]], list[tuple]] = {}
    updates: dict[tuple[str, tuple[str, ...]], list[tuple]] = {}
    for ch in changes:
        table, key = ch.table, ch.key
        keys = KEY_COLUMNS[table]
        if ch.kind != UPDATE:  # PUT always clears the key first: idempotent, never a duplicate row
            deletes.setdefault(table, []).append(row_values(table, keys, dict(zip(keys, key))))
        if ch.kind == PUT:
            row = dict(ch.cols)
            for k, v in zip(keys, key):
                row.setdefault(k, v)
            cols = tuple([c for c in COLUMN_NAMES[table] if c in row])
            inserts.setdefault((table, cols), []).append(row_values(table, cols, row))
        elif ch.kind == UPDATE:
            cols = tuple([c for c in COLUMN_NAMES[table] if c in ch.cols and c not in keys])
            if not cols:
                continue
            args = row_values(table, cols, ch.cols) + row_values(table, keys, dict(zip(keys, key)))
            updates.setdefault((table, cols), []).append(args)
    out: list[tuple[str, list[tuple]]] = []
    for table, args in deletes.items():
        out.append((_sql(DELETE, table, (), dollar), args))
    for (table, cols), args in inserts.items():
        out.append((_sql(PUT, table, cols, dollar), args))
    for (table, cols), args in updates.items():
        out.append((_sql(UPDATE, table, cols, dollar), args))
    return out


# (kind, table, shape, dollar) -> (sql, plan): the statement of one change shape (see change_statements)
_SHAPES: dict[tuple[str, str, tuple, bool], tuple[str, Any]] = {}


def _shape(kind: str, table: str, shape: tuple, dollar: bool) -> tuple[str, Any]:
    """SQL and value plan for a PUT/UPDATE whose cols dict has the keys ``shape`` (in its order).

    Plans: PUT — ``None`` (every key column is in the dict: the values as they are), ``True`` (no
    key column: values + key), or the key indexes to append; UPDATE — ``None`` (no key column
    in the dict: values + key), or the non-key columns to take (``()``: nothing to set).
    ValueError names columns the table does not have (the writer's submit refuses them earlier)."""
    known = COLUMN_NAMES.get(table)
    if known is None:
        raise ValueError(f"change for unknown table {table!r}")
    bad = [c for c in shape if c not in known]
    if bad:
        raise ValueError(f"change for {table} has unknown column(s) {sorted(bad)}")
    keys = KEY_COLUMNS[table]
    if kind == PUT:
        missing = tuple(i for i, k in enumerate(keys) if k not in shape)
        cols = shape + tuple(keys[i] for i in missing)
        plan: Any = None if not missing else True if len(missing) == len(keys) else missing
        return _sql(PUT, table, cols, dollar), plan
    sets = tuple(c for c in shape if c not in keys)
    plan = None if len(sets) == len(shape) else sets
    return (_sql(UPDATE, table, sets, dollar) if sets else ""), plan


def change_statements(changes: Iterable[Change], dollar: bool) -> list[tuple[str, list[tuple]]]:
    """The fast form of :func:`batch_statements` for the write-behind: the same statements
    (deletes, inserts, updates, grouped by shape), but the values are bound as they are (no
    per-value conversion) and a shape's columns are in its cols dict's order.

    The core's journal is typed already (str / int / None per column type: tests check it), so
    this is what the writer sends first; a batch the database refuses is retried with
    :func:`batch_statements` (converted values) before it is split (``Store.write_changes``).
    SQLite would convert by column affinity anyway; PostgreSQL is strict."""
    if _fast is not None:
        return _fast.change_statements(changes, dollar, _SHAPES, _shape, lambda t: _sql(DELETE, t, (), dollar))
    return _change_statements_py(changes, dollar)


def _change_statements_py(changes: Iterable[Change], dollar: bool) -> list[tuple[str, list[tuple]]]:
    deletes: dict[str, list[tuple]] = {}
    groups: dict[tuple[str, str, tuple], tuple[str, Any, list[tuple]]] = {}  # -> (sql, plan, args)
    shapes = _SHAPES
    for ch in changes:
        kind, table, key, cols = ch.kind, ch.table, ch.key, ch.cols
        if kind != UPDATE:  # PUT always clears the key first: idempotent, never a duplicate row
            d = deletes.get(table)
            if d is None:
                d = deletes[table] = []
            d.append(key)
            if kind != PUT:
                continue
        shape = tuple(cols)
        g = groups.get((kind, table, shape))
        if g is None:
            sk = (kind, table, shape, dollar)
            sp = shapes.get(sk)
            if sp is None:
                sp = shapes[sk] = _shape(kind, table, shape, dollar)
            g = groups[(kind, table, shape)] = (sp[0], sp[1], [])
        plan = g[1]
        if plan is None:
            g[2].append(tuple(cols.values()) + key if kind == UPDATE else tuple(cols.values()))
        elif kind == PUT:
            g[2].append(tuple(cols.values()) + (key if plan is True else tuple(key[i] for i in plan)))
        elif plan:
            g[2].append(tuple(cols[c] for c in plan) + key)
    out: list[tuple[str, list[tuple]]] = []
    for table, args in deletes.items():
        out.append((_sql(DELETE, table, (), dollar), args))
    for (kind, _, _), (sql, _, args) in groups.items():
        if kind == PUT and args:
            out.append((sql, args))
    for (kind, _, _), (sql, _, args) in groups.items():
        if kind == UPDATE and args:
            out.append((sql, args))
    return out


def snapshot_statements(rows: Rows, dollar: bool) -> list[tuple[str, list[tuple] | None]]:
    """Replace the three tables' content with ``rows`` (deletes first, then inserts in row order).

    Statements are ``(sql, [args, …])`` for executemany, or ``(sql, None)``: run once, no params.
    """
    out: list[tuple[str, list[tuple] | None]] = []
    for table in COLUMN_NAMES:
        out.append((f"DELETE FROM {quote(table)}", None))
    for table, table_rows in rows.items():
        if table not in COLUMN_NAMES:
            raise ValueError(f"snapshot: unknown table {table!r}")
        groups: list[tuple[tuple[str, ...], list[tuple]]] = []
        for row in table_rows:
            cols = tuple(c for c in COLUMN_NAMES[table] if c in row)
            if not groups or groups[-1][0] != cols:  # keep row order: consecutive runs of one shape
                groups.append((cols, []))
            groups[-1][1].append(row_values(table, cols, row))
        for cols, args in groups:
            out.append((_sql(PUT, table, cols, dollar), args))
    return out


def select_sql(table: str) -> str:
    return f"SELECT {', '.join(map(quote, COLUMN_NAMES[table]))} FROM {quote(table)}"
