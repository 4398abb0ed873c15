"""The ``agents``, ``tiers`` and ``members`` tables of mod_callcenter, and their migration.

Contract:

* ``COLUMNS[table]`` is the exact column list of reference §1.1 in physical order: name, SQL
  type, NOT NULL, default (SQL literal text). Column names come from :mod:`ccfast.strings`.
* ``create_table_sql(table)`` is the DDL (the same text for SQLite and PostgreSQL).
* ``KEY_COLUMNS[table]`` are the columns the core's journal key tuple holds, in order
  (``agents``: name; ``tiers``: queue, agent; ``members``: uuid). They are never updated.
* ``INDEXES`` are ccfast's additions (mod_callcenter has none): one non-unique index per key so
  the write-behind ``UPDATE … WHERE key`` does not scan. Non-unique because old databases may hold
  duplicates that mod_callcenter tolerated.
* :func:`migrate` runs §1.4 in its order on an engine-neutral :class:`SchemaOps` (an asyncio-side
  object; each engine runs the whole migration as one transaction), then adds the indexes and
  verifies that every §1.1 column exists (else :class:`SchemaError`).

Migration differences from mod_callcenter (documented in docs/store.md): tests are catalog
lookups, not failing queries (a failed query aborts a PostgreSQL transaction); each ALTER adds only
columns that are missing; the legacy ``system`` column is renamed in place on PostgreSQL
(``ALTER TABLE … RENAME COLUMN`` keeps its position) and on SQLite by copying through a temporary
table **by column name** (mod_callcenter copies with ``SELECT *``, which scrambles tables whose
columns were appended by the ALTER path); the rebuilt SQLite table has the §1.1 order.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from .. import strings as S

VARCHAR = "VARCHAR(255)"
VARCHAR_1024 = "VARCHAR(1024)"
INTEGER = "INTEGER"


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # VARCHAR(255) / VARCHAR(1024) / INTEGER, as written in §1.1
    not_null: bool = False
    default: str | None = None  # SQL literal text: "''", "0", "1"

    @property
    def is_int(self) -> bool:
        return self.type == INTEGER

    def ddl(self) -> str:
        text = f'"{self.name}" {self.type}'
        if self.not_null:
            text += " NOT NULL"
        if self.default is not None:
            text += f" DEFAULT {self.default}"
        return text


def _text(name: str) -> Column:
    return Column(name, VARCHAR)


def _text_nn(name: str) -> Column:
    return Column(name, VARCHAR, True, "''")


def _int(name: str, default: int = 0) -> Column:
    return Column(name, INTEGER, True, str(default))


# exceptions to the two common column shapes, per table
_MEMBERS_SPECIAL = {"uuid": _text_nn("uuid"), "session_uuid": _text_nn("session_uuid")}
_MEMBERS_TEXT = {"queue", "instance_id", "cid_number", "cid_name", "serving_agent", "serving_system", "state"}
_AGENTS_TEXT = {"name", "instance_id", "uuid", "type", "status", "state"}


def _build(columns: tuple[str, ...], text: set[str], special: dict[str, Column]) -> tuple[Column, ...]:
    out = []
    for name in columns:
        if name in special:
            out.append(special[name])
        elif name in text:
            out.append(_text(name))
        else:
            out.append(_int(name))
    return tuple(out)


AGENTS = "agents"
TIERS = "tiers"
MEMBERS = "members"
TABLES = (AGENTS, TIERS, MEMBERS)  # the order snapshots are written and loads are returned in

COLUMNS: dict[str, tuple[Column, ...]] = {
    MEMBERS: _build(S.MEMBERS_COLUMNS, _MEMBERS_TEXT, _MEMBERS_SPECIAL),
    AGENTS: _build(S.AGENTS_COLUMNS, _AGENTS_TEXT, {"contact": Column("contact", VARCHAR_1024)}),
    TIERS: _build(
        S.TIERS_COLUMNS, {"queue", "agent", "state"}, {"level": _int("level", 1), "position": _int("position", 1)}
    ),
}
COLUMN_NAMES: dict[str, tuple[str, ...]] = {t: tuple(c.name for c in cols) for t, cols in COLUMNS.items()}
INT_COLUMNS: dict[str, frozenset[str]] = {t: frozenset(c.name for c in cols if c.is_int) for t, cols in COLUMNS.items()}
KEY_COLUMNS: dict[str, tuple[str, ...]] = {AGENTS: ("name",), TIERS: ("queue", "agent"), MEMBERS: ("uuid",)}

INDEXES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ccfast_agents_name", AGENTS, KEY_COLUMNS[AGENTS]),
    ("ccfast_tiers_queue_agent", TIERS, KEY_COLUMNS[TIERS]),
    ("ccfast_members_uuid", MEMBERS, KEY_COLUMNS[MEMBERS]),
)

LEGACY_INSTANCE_COLUMN = "system"  # renamed to instance_id in current FreeSWITCH (§1.4 step 7)


class SchemaError(Exception):
    """The database holds a table ccfast cannot use (after migration), with what is wrong."""


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier (valid in SQLite and PostgreSQL)."""
    return '"' + identifier.replace('"', '""') + '"'


def create_table_sql(table: str, name: str | None = None) -> str:
    cols = ",\n   ".join(c.ddl() for c in COLUMNS[table])
    return f"CREATE TABLE {quote(name or table)} (\n   {cols}\n)"


def create_index_sql(index: str, table: str, columns: tuple[str, ...]) -> str:
    return f"CREATE INDEX IF NOT EXISTS {quote(index)} ON {quote(table)} ({', '.join(map(quote, columns))})"


def column(table: str, name: str) -> Column:
    for c in COLUMNS[table]:
        if c.name == name:
            return c
    raise KeyError(f"{table}.{name}")


class SchemaOps(Protocol):
    """What :func:`migrate` needs from an engine (asyncio side, inside one transaction)."""

    async def columns(self, table: str) -> list[str] | None:  # None: no such table
        ...

    async def execute(self, sql: str) -> None: ...

    async def rename_instance_column(self, table: str, old_columns: list[str]) -> None:
        """Rename ``system`` → ``instance_id`` keeping the §1.1 position."""


async def migrate(ops: SchemaOps) -> list[str]:
    """Create missing tables and migrate old ones per §1.4; return what was done (for the log)."""
    done: list[str] = []

    async def recreate(table: str, why: str) -> None:
        await ops.execute(f"DROP TABLE IF EXISTS {quote(table)}")
        await ops.execute(create_table_sql(table))
        done.append(f"{table}: created ({why})")

    async def add_missing(table: str, names: tuple[str, ...]) -> None:
        have = await ops.columns(table) or []
        for name in names:
            if name not in have:
                await ops.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {column(table, name).ddl()}")
                done.append(f"{table}: added column {name}")

    # 1. members without session_uuid (or missing): drop and create
    members = await ops.columns(MEMBERS)
    if members is None or "session_uuid" not in members:
        await recreate(MEMBERS, "missing" if members is None else "no session_uuid column")
    # 2., 3. agents gets the delay columns by ALTER
    agents = await ops.columns(AGENTS)
    if agents is not None and "ready_time" not in agents:
        await add_missing(AGENTS, ("ready_time", "reject_delay_time", "busy_delay_time"))
    agents = await ops.columns(AGENTS)
    if agents is not None and "no_answer_delay_time" not in agents:
        await add_missing(AGENTS, ("no_answer_delay_time",))
    # 4. agents still without ready_time (i.e. missing): create
    agents = await ops.columns(AGENTS)
    if agents is None or "ready_time" not in agents:
        await recreate(AGENTS, "missing" if agents is None else "no ready_time column")
    # 5. external_calls_count by ALTER
    await add_missing(AGENTS, ("external_calls_count",))
    # 6. tiers without queue (or missing): drop and create
    tiers = await ops.columns(TIERS)
    if tiers is None or "queue" not in tiers:
        await recreate(TIERS, "missing" if tiers is None else "no queue column")
    # 7. legacy system → instance_id
    for table in (AGENTS, MEMBERS):
        have = await ops.columns(table) or []
        if "instance_id" not in have:
            if LEGACY_INSTANCE_COLUMN in have:
                await ops.rename_instance_column(table, have)
                done.append(f"{table}: renamed column system to instance_id")
            else:
                await add_missing(table, ("instance_id",))
    for index, table, cols in INDEXES:
        await ops.execute(create_index_sql(index, table, cols))
    # verify: every §1.1 column must now exist
    problems = []
    for table in TABLES:
        have = set(await ops.columns(table) or [])
        missing = [c for c in COLUMN_NAMES[table] if c not in have]
        if missing:
            problems.append(f"table {table} lacks column(s) {', '.join(missing)}")
    if problems:
        raise SchemaError(
            "; ".join(problems)
            + " — this is not a mod_callcenter layout ccfast can migrate; drop the table or add the columns"
        )
    return done


def copy_columns_sql(table: str, old_name: str, old_columns: list[str]) -> str:
    """INSERT … SELECT from a renamed old table into the new §1.1 table, by column name."""
    targets, sources = [], []
    for name in COLUMN_NAMES[table]:
        if name in old_columns:
            targets.append(quote(name))
            sources.append(quote(name))
        elif name == "instance_id" and LEGACY_INSTANCE_COLUMN in old_columns:
            targets.append(quote(name))
            sources.append(quote(LEGACY_INSTANCE_COLUMN))
    return (
        f"INSERT INTO {quote(table)} ({', '.join(targets)}) "
        f"SELECT {', '.join(sources)} FROM {quote(old_name)}"
    )
