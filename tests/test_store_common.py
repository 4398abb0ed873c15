"""Shared fixtures of the store tests (imported by test_store_*.py) and the pure store tests.

PostgreSQL: ``pg_dsn`` creates a fresh database ``ccfast_test_<random>`` per test module through
the ``postgres`` database of ``CCFAST_TEST_PG_DSN`` and drops it afterwards. It skips (with the
reason) only when the server is unreachable and ``CI`` is not ``true``; under ``CI=true`` it fails.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import uuid
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio

from ccfast import strings as S
from ccfast.store import PostgresStore, SqliteStore, aio, startup_reset
from ccfast.store.base import DELETE, PUT, UPDATE, batch_statements
from ccfast.store.schema import COLUMNS
from ccfast.store.writer import Backlog, validate_entry

PG_DSN = os.environ.get("CCFAST_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"

# reference mod_callcenter.md §1.1, verbatim
SPEC_DDL = """
CREATE TABLE members (
   queue            VARCHAR(255),
   instance_id      VARCHAR(255),
   uuid             VARCHAR(255) NOT NULL DEFAULT '',
   session_uuid     VARCHAR(255) NOT NULL DEFAULT '',
   cid_number       VARCHAR(255),
   cid_name         VARCHAR(255),
   system_epoch     INTEGER NOT NULL DEFAULT 0,
   joined_epoch     INTEGER NOT NULL DEFAULT 0,
   rejoined_epoch   INTEGER NOT NULL DEFAULT 0,
   bridge_epoch     INTEGER NOT NULL DEFAULT 0,
   abandoned_epoch  INTEGER NOT NULL DEFAULT 0,
   base_score       INTEGER NOT NULL DEFAULT 0,
   skill_score      INTEGER NOT NULL DEFAULT 0,
   serving_agent    VARCHAR(255),
   serving_system   VARCHAR(255),
   state            VARCHAR(255)
);

CREATE TABLE agents (
   name                  VARCHAR(255),
   instance_id           VARCHAR(255),
   uuid                  VARCHAR(255),
   type                  VARCHAR(255),
   contact               VARCHAR(1024),
   status                VARCHAR(255),
   state                 VARCHAR(255),
   max_no_answer         INTEGER NOT NULL DEFAULT 0,
   wrap_up_time          INTEGER NOT NULL DEFAULT 0,
   reject_delay_time     INTEGER NOT NULL DEFAULT 0,
   busy_delay_time       INTEGER NOT NULL DEFAULT 0,
   no_answer_delay_time  INTEGER NOT NULL DEFAULT 0,
   last_bridge_start     INTEGER NOT NULL DEFAULT 0,
   last_bridge_end       INTEGER NOT NULL DEFAULT 0,
   last_offered_call     INTEGER NOT NULL DEFAULT 0,
   last_status_change    INTEGER NOT NULL DEFAULT 0,
   no_answer_count       INTEGER NOT NULL DEFAULT 0,
   calls_answered        INTEGER NOT NULL DEFAULT 0,
   talk_time             INTEGER NOT NULL DEFAULT 0,
   ready_time            INTEGER NOT NULL DEFAULT 0,
   external_calls_count  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE tiers (
   queue    VARCHAR(255),
   agent    VARCHAR(255),
   state    VARCHAR(255),
   level    INTEGER NOT NULL DEFAULT 1,
   position INTEGER NOT NULL DEFAULT 1
);
"""


def parse_spec() -> dict[str, list[tuple[str, str, bool, str | None]]]:
    """{table: [(name, TYPE, not_null, default)]} from SPEC_DDL."""
    out: dict[str, list] = {}
    for m in re.finditer(r"CREATE TABLE (\w+) \((.*?)\);", SPEC_DDL, re.S):
        cols = []
        for line in m.group(2).strip().splitlines():
            cm = re.match(r"\s*(\w+)\s+(\w+(?:\(\d+\))?)(\s+NOT NULL)?(?:\s+DEFAULT\s+(\S+?))?,?$", line)
            assert cm, line
            cols.append((cm.group(1), cm.group(2), bool(cm.group(3)), cm.group(4)))
        out[m.group(1)] = cols
    return out


SPEC = parse_spec()
METACHARS = "O'Brien; DROP TABLE agents;--"


# -- PostgreSQL database per module ---------------------------------------------------------------
def _with_db(dsn: str, db: str) -> str:
    u = urlsplit(dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_with_db(PG_DSN, "postgres"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def pg_dsn():
    name = f"ccfast_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncio.TimeoutError) as exc:
        msg = f"PostgreSQL at {PG_DSN} is unreachable ({type(exc).__name__}: {exc})"
        if IN_CI:
            pytest.fail(msg + " — CI=true requires it")
        pytest.skip(msg + "; start it or set CCFAST_TEST_PG_DSN")
    try:
        yield _with_db(PG_DSN, name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


ENGINES = ["sqlite-mem", "sqlite-file", "pg"]


@pytest.fixture(params=ENGINES)
def target(request, tmp_path):
    """(kind, factory) — factory() builds a fresh store on a clean database for that engine."""
    kind = request.param
    if kind == "pg":
        dsn = request.getfixturevalue("pg_dsn")
        return kind, lambda **kw: PostgresStore(dsn, **kw)
    if kind == "sqlite-file":
        path = str(tmp_path / "callcenter.db")
        return kind, lambda **kw: SqliteStore(path, **kw)
    return kind, lambda **kw: SqliteStore(None, **kw)


@asynccontextmanager
async def opened(target, *, clean=True, schema=True, **kw):
    """Inside a trio-asyncio loop: a store on ``target``, tables dropped first, schema ensured."""
    _, factory = target
    async with aio.open_loop():
        store = factory(**kw)
        try:
            if clean:
                await store.execute([(f"DROP TABLE IF EXISTS {t}", None) for t in ("agents", "tiers", "members",
                                                                                 "agents_ccfast_old", "members_ccfast_old")])
            if schema:
                await store.ensure_schema()
            yield store
        finally:
            await store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """A TCP proxy to PostgreSQL: start late (server down at start), ``kill()`` every connection
    (server restart), ``pause``/``resume`` accepting."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.scopes: set[trio.CancelScope] = set()
        self.accepted = 0

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED):
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client):
        self.accepted += 1
        with trio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                upstream = await trio.open_tcp_stream(*self.target)
                async with client, upstream, trio.open_nursery() as n:
                    n.start_soon(self._pump, client, upstream, n.cancel_scope)
                    n.start_soon(self._pump, upstream, client, n.cancel_scope)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                self.scopes.discard(scope)
        await trio.aclose_forcefully(client)

    @staticmethod
    async def _pump(src, dst, scope):
        try:
            async for data in src:
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    def kill(self) -> int:
        n = len(self.scopes)
        for s in list(self.scopes):
            s.cancel()
        return n


def proxied_dsn(dsn: str, port: int) -> str:
    u = urlsplit(dsn)
    netloc = u.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit((u.scheme, (netloc[0] + "@" + host) if len(netloc) == 2 else host, u.path, u.query, u.fragment))


# -- a model of the tables: what the DB must hold after the journal --------------------------------
class Model:
    """Applies journal entries to dict rows exactly as an unbatched database would."""

    def __init__(self):
        self.rows = {"agents": {}, "tiers": {}, "members": {}}

    def apply(self, entries):
        from ccfast.store.schema import COLUMNS as C
        from ccfast.store.schema import KEY_COLUMNS

        for table, op, key, cols in entries:
            t = self.rows[table]
            if op == "insert":
                row = {c.name: (int(c.default) if c.is_int else (None if c.default is None else "")) for c in C[table]}
                row.update(zip(KEY_COLUMNS[table], key))
                row.update(cols)
                t[key] = row
            elif op == "update":
                if key in t:
                    t[key].update(cols)
            else:
                t.pop(key, None)

    def table(self, table):
        keyf = {"agents": lambda r: r["name"], "tiers": lambda r: (r["queue"], r["agent"]),
                "members": lambda r: r["uuid"]}[table]
        return sorted(self.rows[table].values(), key=keyf)

    def as_rows(self):
        return {t: self.table(t) for t in self.rows}


def db_tables(rows):
    keyf = {"agents": lambda r: r["name"], "tiers": lambda r: (r["queue"], r["agent"]),
            "members": lambda r: r["uuid"]}
    return {t: sorted(rows[t], key=keyf[t]) for t in rows}


def random_journal(rng: random.Random, n: int, live: dict | None = None, *, names=None):
    """n journal entries over a small key space (lots of coalescing), always valid transitions.

    ``live`` (kept by the caller across calls) holds the keys that exist."""
    names = names or [f"{i}@default" for i in range(12)] + [METACHARS]
    if live is None:
        live = {}
    for t in ("agents", "tiers", "members"):
        live.setdefault(t, set())
    out = []
    for i in range(n):
        table = rng.choice(("agents", "tiers", "members"))
        if table == "agents":
            key = (rng.choice(names),)
        elif table == "tiers":
            key = (rng.choice(["q1@default", METACHARS]), rng.choice(names))
        else:
            key = (f"m-{rng.randrange(20)}",)
        if key not in live[table]:
            op = "insert"
        else:
            op = rng.choice(("update", "update", "update", "delete", "delete_insert"))
        if op == "delete_insert":
            out.append((table, "delete", key, {}))
            op = "insert"
        if op == "insert":
            live[table].add(key)
            cols = {"agents": {"status": S.STATUS_LOGGED_OUT, "state": S.STATE_WAITING, "type": S.TYPE_CALLBACK,
                               "contact": f"[leg_timeout=10]user/{i}@default", "instance_id": S.SINGLE_BOX},
                    "tiers": {"state": S.TIER_READY, "level": rng.randrange(1, 4)},
                    "members": {"queue": METACHARS, "instance_id": "single_box", "session_uuid": f"s{i}",
                                "cid_name": "O'Brien", "joined_epoch": 1700000000 + i, "state": S.MEMBER_WAITING}}[table]
            out.append((table, "insert", key, cols))
        elif op == "update":
            cols = {"agents": {"state": rng.choice(S.AGENT_STATES), "last_offered_call": i,
                               "calls_answered": rng.randrange(100)},
                    "tiers": {"state": rng.choice(S.TIER_STATES), "position": rng.randrange(1, 9)},
                    "members": {"state": rng.choice(S.MEMBER_STATES), "serving_agent": rng.choice(names),
                                "bridge_epoch": i}}[table]
            keys = list(cols)
            rng.shuffle(keys)
            out.append((table, "update", key, {k: cols[k] for k in keys[: rng.randrange(1, len(keys) + 1)]}))
        else:
            live[table].discard(key)
            out.append((table, "delete", key, {}))
    return out


# -- pure tests ---------------------------------------------------------------------------------
def test_schema_columns_equal_spec_ddl():
    for table, spec_cols in SPEC.items():
        ours = [(c.name, c.type, c.not_null, c.default) for c in COLUMNS[table]]
        assert ours == spec_cols, table


def test_backlog_coalescing_rules():
    b = Backlog()
    b.add("agents", "insert", ("a",), {"status": "Available"})
    b.add("agents", "update", ("a",), {"state": "Waiting"})
    b.add("agents", "update", ("a",), {"state": "Receiving", "talk_time": 5})
    b.add("agents", "update", ("b",), {"state": "Idle"})
    b.add("agents", "update", ("b",), {"state": "Waiting"})
    b.add("members", "insert", ("m",), {"queue": "q"})
    b.add("members", "update", ("m",), {"state": "Trying"})
    b.add("members", "delete", ("m",), {})  # insert…delete → nothing
    b.add("tiers", "update", ("q", "a"), {"state": "Offering"})
    b.add("tiers", "delete", ("q", "a"), {})  # update+delete → delete
    b.add("tiers", "insert", ("q", "b"), {"state": "Ready"})
    b.add("agents", "delete", ("c",), {})
    b.add("agents", "insert", ("c",), {"status": "On Break"})  # delete+insert → put replacing the row
    b.add("agents", "update", ("c",), {"state": "Idle"})
    assert len(b) == 5 and b.coalesced == 8
    got = [(c.table, c.key, c.kind, c.cols, c.had_row) for c in b.take(10)]
    assert got == [
        ("agents", ("a",), PUT, {"status": "Available", "state": "Receiving", "talk_time": 5}, False),
        ("agents", ("b",), UPDATE, {"state": "Waiting"}, True),
        ("tiers", ("q", "a"), DELETE, {}, True),
        ("tiers", ("q", "b"), PUT, {"state": "Ready"}, False),
        ("agents", ("c",), PUT, {"status": "On Break", "state": "Idle"}, True),
    ]
    assert len(b) == 0


def test_backlog_does_not_alias_caller_dicts():
    b = Backlog()
    cols = {"state": "Waiting"}
    b.add("agents", "update", ("a",), cols)
    b.add("agents", "update", ("a",), {"state": "Idle"})
    assert cols == {"state": "Waiting"}


def test_validate_entry_errors():
    with pytest.raises(ValueError, match="unknown table"):
        validate_entry(("queues", "insert", ("a",), {}))
    with pytest.raises(ValueError, match="op must be"):
        validate_entry(("agents", "upsert", ("a",), {}))
    with pytest.raises(ValueError, match="tuple of"):
        validate_entry(("tiers", "delete", ("q",), {}))
    with pytest.raises(ValueError, match="unknown column"):
        validate_entry(("agents", "update", ("a",), {"system": "x"}))
    with pytest.raises(ValueError, match="must be"):
        validate_entry(("agents", "insert"))


def test_batch_statements_parameterised_and_grouped():
    b = Backlog()
    b.add("agents", "insert", (METACHARS,), {"status": "Available"})
    b.add("agents", "update", ("x",), {"state": "Idle"})
    b.add("agents", "update", ("y",), {"state": "Waiting"})
    stmts = batch_statements(b.take(9), dollar=True, replay=False)
    assert [s for s, _ in stmts] == [
        'DELETE FROM "agents" WHERE "name" = $1',
        'INSERT INTO "agents" ("name", "status") VALUES ($1, $2)',
        'UPDATE "agents" SET "state" = $1 WHERE "name" = $2',
    ]
    assert stmts[1][1] == [(METACHARS, "Available")] and stmts[2][1] == [("Idle", "x"), ("Waiting", "y")]
    assert stmts[0] == ('DELETE FROM "agents" WHERE "name" = $1', [(METACHARS,)])  # insert clears its key
    b.add("agents", "insert", ("z",), {"talk_time": "7"})
    stmts = batch_statements(b.take(9), dollar=False, replay=True)
    assert stmts[0] == ('DELETE FROM "agents" WHERE "name" = ?', [("z",)])
    assert stmts[1][1] == [("z", 7)]  # integer column coerced


def test_startup_reset_pure():
    rows = {
        "agents": [
            {"name": "a", "instance_id": "single_box", "state": "Receiving", "uuid": "u1", "external_calls_count": 2},
            {"name": "b", "instance_id": "other", "state": "Receiving", "uuid": "u2", "external_calls_count": 1},
        ],
        "tiers": [{"queue": "q", "agent": "a", "state": "Offering"}, {"queue": "q", "agent": "b", "state": "Offering"}],
        "members": [
            {"uuid": "m1", "instance_id": "box1", "state": "Trying", "session_uuid": "s1", "abandoned_epoch": 0},
            {"uuid": "m2", "instance_id": "box2", "state": "Waiting", "session_uuid": "s2", "abandoned_epoch": 0},
        ],
    }
    out = startup_reset(rows, "box1")
    assert out["agents"][0] | {} == {"name": "a", "instance_id": "single_box", "state": "Waiting", "uuid": "",
                                     "external_calls_count": 0}
    assert out["agents"][1] == rows["agents"][1]
    assert [t["state"] for t in out["tiers"]] == ["Ready", "Offering"]
    assert out["members"][0] == {"uuid": "m1", "instance_id": "box1", "state": "Abandoned", "session_uuid": "",
                                 "abandoned_epoch": 0}
    assert out["members"][1] == rows["members"][1]
    assert rows["agents"][0]["state"] == "Receiving"  # input untouched
    out = startup_reset(rows, "box1", truncate_agents=True, truncate_tiers=True)
    assert out["agents"] == [] and out["tiers"] == [] and len(out["members"]) == 2


def test_model_matches_backlog_semantics():
    """Coalescing a random journal then applying the changes = applying the journal entry by entry."""
    rng = random.Random(7)
    for _ in range(30):
        journal = random_journal(rng, 60, {})
        direct = Model()
        direct.apply(journal)
        b = Backlog()
        for e in journal:
            b.add(*e)
        via = Model()
        for ch in b.take(10**6):
            table, key = ch.table, ch.key
            if ch.kind == DELETE:
                via.apply([(table, "delete", key, {})])
            elif ch.kind == PUT:
                via.apply([(table, "insert", key, ch.cols)])
            else:
                via.apply([(table, "update", key, ch.cols)])
        assert via.rows == direct.rows
