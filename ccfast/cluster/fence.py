"""Fenced writes of member rows: a stale queue owner's late writes match nothing.

``FencedStore(store, node, generations)`` wraps a ``PostgresStore`` for the write-behind ``Writer``
(it has the methods the writer calls). Per batch, in ONE transaction (``store.execute``):

1. ``SELECT … FROM ccfast_queue_owner WHERE node = me AND queue = ANY(owned) FOR SHARE`` — locks the
   owner rows, so a takeover (``UPDATE … generation + 1``) waits for this batch to commit, and a
   batch that starts after a takeover sees the new generation;
2. agents/tiers changes as the plain store writes them (shared rows, see docs/cluster.md);
3. member changes, each conditional on ``ccfast_queue_owner.generation = <my generation of that
   queue>`` (``INSERT … SELECT … WHERE EXISTS``, ``UPDATE/DELETE … AND EXISTS``), keyed by the
   row's queue (INSERT: the row's ``queue`` value; UPDATE/DELETE: the stored row's ``queue``).

Members of queues this node does not own are dropped before SQL (``stats["rejected"]``); the SQL
guard catches the race where ownership moved after the batch was built. ``serving_system`` values
``single_box`` are written as the node id (W9: members carry the real node id).

``write_snapshot(rows)`` never wipes other nodes' data: agents/tiers rows are replaced key by key;
members of the queues this node owns are replaced (fenced); other members are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import strings as S
from ..store.base import PUT, UPDATE, Change, batch_statements, row_values
from ..store.schema import AGENTS, COLUMN_NAMES, INT_COLUMNS, KEY_COLUMNS, MEMBERS, TIERS, quote
from .keys import NS_ROWS
from .pg import OWNER_TABLE

_GUARD = (f"EXISTS (SELECT 1 FROM {OWNER_TABLE} o JOIN unnest(${{a}}::text[], ${{b}}::bigint[]) AS f(q, g) "
          f"ON o.queue = f.q AND o.generation = f.g WHERE o.queue = m.queue AND o.node = ${{c}})")


def _guard(first: int) -> str:
    return _GUARD.format(a=first, b=first + 1, c=first + 2)


def _cast(col: str) -> str:
    return "::integer" if col in INT_COLUMNS[MEMBERS] else "::varchar"


class FencedStore:
    """A store facade for the writer in cluster mode (see module docstring)."""

    def __init__(self, store: Any, node: str, generations: Callable[[], dict[str, int]]) -> None:
        if not getattr(store, "dollar", False):
            raise ValueError("FencedStore needs a PostgreSQL store (the cluster model is PostgreSQL-only)")
        self.store = store
        self.node = node
        self.generations = generations
        self.stats = {"rejected": 0, "member_rows": 0}

    def __getattr__(self, name: str) -> Any:  # describe, connect, ensure_schema, close, fetch, …
        return getattr(self.store, name)

    # -- statements ----------------------------------------------------------------------------
    def _member_cols(self, cols: dict) -> dict:
        if cols.get("serving_system") == S.SINGLE_BOX:
            cols = dict(cols, serving_system=self.node)
        return cols

    def statements(self, changes: list[Change], *, replay: bool = False,
                   replace_queues: list[str] | None = None) -> list[tuple[str, list[tuple]]]:
        owned = dict(self.generations())
        qs, gs = list(owned), [owned[q] for q in owned]
        fence = (qs, gs, self.node)
        out: list[tuple[str, list[tuple]]] = []
        plain = [c for c in changes if c.table != MEMBERS]
        if any(c.kind == PUT for c in plain):
            # agents/tiers have no primary key: two nodes writing the same row as DELETE + INSERT
            # at once (start-up snapshots, `agent add` on two nodes) would leave it twice
            out.append(("SELECT pg_advisory_xact_lock($1::int4, $2::int4)", [(NS_ROWS, 0)]))
        out.append((f"SELECT 1 FROM {OWNER_TABLE} WHERE node = $1 AND queue = ANY($2::text[]) FOR SHARE",
                    [(self.node, qs)]))
        out.extend(batch_statements(plain, True, replay))
        if replace_queues:
            mine = [q for q in replace_queues if q in owned]
            out.append((f"DELETE FROM {quote(MEMBERS)} m WHERE m.queue = ANY($1::text[]) AND {_guard(2)}",
                        [(mine,) + fence]))
        deletes: list[tuple] = []
        inserts: dict[tuple[str, ...], list[tuple]] = {}
        updates: dict[tuple[str, ...], list[tuple]] = {}
        for ch in changes:
            if ch.table != MEMBERS:
                continue
            (uuid,) = ch.key
            if ch.kind != UPDATE:
                deletes.append((uuid,) + fence)
            if ch.kind == PUT:
                row = self._member_cols(dict(ch.cols))
                row.setdefault("uuid", uuid)
                queue = row.get("queue")
                if queue not in owned:
                    self.stats["rejected"] += 1
                    continue
                cols = tuple(c for c in COLUMN_NAMES[MEMBERS] if c in row)
                inserts.setdefault(cols, []).append(row_values(MEMBERS, cols, row) + (queue, owned[queue], self.node))
            elif ch.kind == UPDATE:
                cols = tuple(c for c in COLUMN_NAMES[MEMBERS] if c in ch.cols and c not in KEY_COLUMNS[MEMBERS])
                if cols:
                    vals = self._member_cols({c: ch.cols[c] for c in cols})
                    updates.setdefault(cols, []).append(row_values(MEMBERS, cols, vals) + (uuid,) + fence)
        self.stats["member_rows"] += len(deletes) + sum(map(len, inserts.values())) + sum(map(len, updates.values()))
        if deletes:
            out.append((f"DELETE FROM {quote(MEMBERS)} m WHERE m.uuid = $1 AND {_guard(2)}", deletes))
        for cols, args in inserts.items():
            n = len(cols)
            sel = ", ".join(f"${i + 1}{_cast(c)}" for i, c in enumerate(cols))
            out.append((
                f"INSERT INTO {quote(MEMBERS)} ({', '.join(map(quote, cols))}) SELECT {sel} WHERE EXISTS "
                f"(SELECT 1 FROM {OWNER_TABLE} o WHERE o.queue = ${n + 1} AND o.generation = ${n + 2} "
                f"AND o.node = ${n + 3})", args))
        for cols, args in updates.items():
            n = len(cols)
            sets = ", ".join(f"{quote(c)} = ${i + 1}{_cast(c)}" for i, c in enumerate(cols))
            out.append((f"UPDATE {quote(MEMBERS)} m SET {sets} WHERE m.uuid = ${n + 1} AND {_guard(n + 2)}", args))
        return out

    # -- the writer's interface --------------------------------------------------------------------
    async def write_changes(self, changes: list[Change], *, replay: bool = False) -> None:
        await self.store.execute(self.statements(changes, replay=replay))

    async def write_snapshot(self, rows: dict[str, list[dict]]) -> None:
        changes: list[Change] = []
        for table in (AGENTS, TIERS, MEMBERS):
            keys = KEY_COLUMNS[table]
            for row in rows.get(table) or []:
                if table == MEMBERS and row.get("instance_id") != self.node:
                    continue  # not this node's member: its owner writes it
                changes.append(Change(table, tuple(row[k] for k in keys), PUT, dict(row), True))
        await self.store.execute(self.statements(changes, replace_queues=list(self.generations())))
