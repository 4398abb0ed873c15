"""Store behaviour on every engine: SQLite in memory, SQLite file (WAL), PostgreSQL (fresh database)."""

from __future__ import annotations

import random

import pytest
import trio

from ccfast import strings as S
from ccfast.store import StoreError, Writer, WriterConfig, open_writer, startup_reset
from ccfast.store.schema import COLUMN_NAMES, INDEXES

from tests.test_store_common import (  # noqa: F401  (pg_dsn, target are fixtures)
    METACHARS,
    SPEC,
    Model,
    db_tables,
    opened,
    pg_dsn,
    random_journal,
    target,
)

PG_TYPES = {"VARCHAR(255)": ("character varying", 255), "VARCHAR(1024)": ("character varying", 1024),
            "INTEGER": ("integer", None)}
PG_DEFAULTS = {None: None, "''": "''::character varying", "0": "0", "1": "1"}


async def catalog(store, kind, table):
    """[(name, TYPE, not_null, default)] as the database's catalog describes the table, in order."""
    if kind == "pg":
        rows = await store.fetch(
            "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 "
            "ORDER BY ordinal_position", (table,))
        back = {v: k for k, v in PG_TYPES.items()}
        dback = {v: k for k, v in PG_DEFAULTS.items()}
        return [(n, back[(t, ln)], nullable == "NO", dback[d]) for n, t, ln, nullable, d in rows]
    rows = await store.fetch(f"PRAGMA table_info({table})")
    return [(name, typ, bool(notnull), dflt) for _cid, name, typ, notnull, dflt, _pk in rows]


async def index_names(store, kind):
    if kind == "pg":
        rows = await store.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
    else:
        rows = await store.fetch("SELECT name FROM sqlite_master WHERE type = 'index'")
    return {r[0] for r in rows}


async def test_schema_identity_with_spec(target):
    kind = target[0]
    async with opened(target) as store:
        for table, spec_cols in SPEC.items():
            assert await catalog(store, kind, table) == spec_cols, table
        assert {name for name, _, _ in INDEXES} <= await index_names(store, kind)
        assert await store.ensure_schema() == []  # idempotent: nothing to do the second time


# -- migration ----------------------------------------------------------------------------------
def legacy_ddl(table):
    """§1.1 DDL with the legacy `system` column where instance_id is now."""
    cols = [(("system" if n == "instance_id" else n), t, nn, d) for n, t, nn, d in SPEC[table]]
    body = ", ".join(f"{n} {t}" + (" NOT NULL" if nn else "") + (f" DEFAULT {d}" if d else "") for n, t, nn, d in cols)
    return f"CREATE TABLE {table} ({body})"


# sample rows of the brief (deployment-notes.md), pipe-separated, old `system` layout
BRIEF_MEMBER = ("testcc@default|single_box|6f3cbada-ffd6-428d-aa61-ee783ddad25b|414a9b82-c8fd-49f0-a97f-3d83d6f3671d|"
                "+79219981138|D.Khlevnoy|1556203331|1556203331|0|0|0|0|0|ring-all||Trying")
BRIEF_AGENT = ("6666@default|single_box||callback|user/6666@132.123.123.123|Available|Receiving|3|10|3|60|0|"
               "1556203356|1556203356|1556203643|1556092161|0|4|1178|0|0")
BRIEF_TIERS = ["testcc@default|6666@default|No Answer|1|1", "testcc@default|2668@default|Offering|1|2"]


def typed(table, text):
    vals = text.split("|")
    out = []
    for (name, typ, _, _), v in zip(SPEC[table], vals):
        out.append(int(v) if typ == "INTEGER" else v)
    return tuple(out)


def insert_sql(kind, table, n):
    ph = ", ".join(f"${i + 1}" for i in range(n)) if kind == "pg" else ", ".join("?" * n)
    return f"INSERT INTO {table} VALUES ({ph})"


async def test_migrates_legacy_system_column(target):
    kind = target[0]
    async with opened(target, schema=False) as store:
        await store.execute([(legacy_ddl(t), None) for t in ("members", "agents", "tiers")])
        member, agent = typed("members", BRIEF_MEMBER), typed("agents", BRIEF_AGENT)
        await store.execute([
            (insert_sql(kind, "members", len(member)), [member]),
            (insert_sql(kind, "agents", len(agent)), [agent]),
            (insert_sql(kind, "tiers", 5), [typed("tiers", t) for t in BRIEF_TIERS]),
        ])
        done = await store.ensure_schema()
        assert "agents: renamed column system to instance_id" in done
        assert "members: renamed column system to instance_id" in done
        for table, spec_cols in SPEC.items():  # layout identical to a fresh one, order included
            assert await catalog(store, kind, table) == spec_cols, table
        rows = await store.load_rows()
        assert [tuple(r.values()) for r in rows["members"]] == [member]
        assert [tuple(r.values()) for r in rows["agents"]] == [agent]
        assert rows["agents"][0]["instance_id"] == S.SINGLE_BOX
        assert sorted(tuple(r.values()) for r in rows["tiers"]) == sorted(typed("tiers", t) for t in BRIEF_TIERS)
        assert await store.ensure_schema() == []


async def test_migrates_old_agents_by_alter_and_recreates_broken_tables(target):
    kind = target[0]
    old_agent_cols = ["name", "system", "uuid", "type", "contact", "status", "state", "max_no_answer",
                      "wrap_up_time", "last_bridge_start", "last_bridge_end", "last_offered_call",
                      "last_status_change", "no_answer_count", "calls_answered", "talk_time"]
    ddl = ", ".join(f"{c} VARCHAR(255)" if c in ("name", "system", "uuid", "type", "contact", "status", "state")
                    else f"{c} INTEGER NOT NULL DEFAULT 0" for c in old_agent_cols)
    async with opened(target, schema=False) as store:
        await store.execute([
            (f"CREATE TABLE agents ({ddl})", None),
            ("CREATE TABLE members (queue VARCHAR(255), uuid VARCHAR(255))", None),  # no session_uuid
            ("CREATE TABLE tiers (agent VARCHAR(255))", None),  # no queue
            (insert_sql(kind, "members", 2), [("q", "m1")]),
            (insert_sql(kind, "agents", len(old_agent_cols)),
             [(METACHARS, "single_box", "", "Callback", "user/1@d", "Available", "Waiting", 3, 10, 0, 0, 5, 0, 0, 2, 99)]),
        ])
        done = await store.ensure_schema()
        assert "members: created (no session_uuid column)" in done
        assert "tiers: created (no queue column)" in done
        for col in ("ready_time", "reject_delay_time", "busy_delay_time", "no_answer_delay_time", "external_calls_count"):
            assert f"agents: added column {col}" in done
        cols = await store.columns("agents")
        assert sorted(cols) == sorted(COLUMN_NAMES["agents"])
        if kind == "pg":  # renamed in place; the ALTER path appends (as mod_callcenter's does)
            assert cols[:2] == ["name", "instance_id"]
            assert cols[-5:] == ["ready_time", "reject_delay_time", "busy_delay_time", "no_answer_delay_time",
                                 "external_calls_count"]
        else:  # SQLite rename copies into a fresh §1.1 table, by name
            assert tuple(cols) == COLUMN_NAMES["agents"]
        rows = await store.load_rows()
        assert rows["members"] == [] and rows["tiers"] == []
        (a,) = rows["agents"]
        assert (a["name"], a["instance_id"], a["max_no_answer"], a["wrap_up_time"], a["last_offered_call"],
                a["calls_answered"], a["talk_time"], a["ready_time"]) == (METACHARS, "single_box", 3, 10, 5, 2, 99, 0)


# -- writing ------------------------------------------------------------------------------------
async def test_writer_random_journal_equals_model(target):
    """Batches (small, many), coalescing and order across batches: the tables equal the journal
    applied entry by entry. Names include SQL metacharacters."""
    rng = random.Random(1234)
    model, live = Model(), {}
    async with opened(target) as store:
        async with open_writer(store, WriterConfig(max_delay=0.002, max_batch_rows=7, max_backlog=10_000)) as w:
            for _ in range(60):
                chunk = random_journal(rng, rng.randrange(1, 40), live)
                model.apply(chunk)
                w.submit(chunk)
                if rng.random() < 0.5:
                    await trio.sleep(rng.choice((0, 0.001, 0.003)))
            await w.flush()
            assert w.backlog == 0 and w.stats.batches > 5 and w.metrics()["coalesced"] > 0
            assert db_tables(await store.load_rows()) == model.as_rows()
        # the metacharacter names did nothing but be names
        assert await store.columns("agents") is not None
        names = {r["name"] for r in (await store.load_rows())["agents"]}
        assert METACHARS in names or METACHARS not in {k[0] for k in model.rows["agents"]}


async def test_delete_then_reinsert_same_key_across_batches(target):
    async with opened(target) as store:
        async with open_writer(store, WriterConfig(max_delay=0, max_batch_rows=1)) as w:
            key = (METACHARS,)
            w.submit([("agents", "insert", key, {"status": "Available"})])
            await w.flush()
            w.submit([("agents", "delete", key, {}), ("agents", "insert", key, {"status": "On Break"}),
                      ("agents", "update", key, {"state": "Idle"})])
            await w.flush()
        rows = (await store.load_rows())["agents"]
        assert [(r["name"], r["status"], r["state"]) for r in rows] == [(METACHARS, "On Break", "Idle")]


async def test_snapshot_replaces_tables(target):
    async with opened(target) as store:
        async with open_writer(store, WriterConfig(max_delay=0)) as w:
            w.submit([("agents", "insert", ("old",), {"status": "Available"}),
                      ("members", "insert", ("m-old",), {"queue": "q"})])
            await w.flush()
            w.submit([("agents", "update", ("old",), {"state": "Idle"})])  # superseded by the snapshot
            snap = {"agents": [{"name": METACHARS, "status": "On Break", "talk_time": 3}],
                    "tiers": [{"queue": "q", "agent": METACHARS, "state": "Ready", "level": 2, "position": 1}],
                    "members": []}
            w.snapshot(snap)
            w.submit([("agents", "update", (METACHARS,), {"state": "Waiting"})])  # after the snapshot
            await w.flush()
            assert w.stats.snapshots == 1 and w.stats.superseded >= 1
        rows = await store.load_rows()
        assert [(r["name"], r["status"], r["state"], r["talk_time"]) for r in rows["agents"]] == [
            (METACHARS, "On Break", "Waiting", 3)]
        assert [(r["agent"], r["level"]) for r in rows["tiers"]] == [(METACHARS, 2)]
        assert rows["members"] == []
        with pytest.raises(ValueError, match="unknown table"):
            Writer(store).snapshot({"queues": []})


async def test_startup_reset_sql_equals_pure_function(target):
    async with opened(target) as store:
        entries = [
            ("agents", "insert", ("a",), {"instance_id": "single_box", "state": "Receiving", "uuid": "u", "external_calls_count": 2}),
            ("agents", "insert", ("b",), {"instance_id": "nodeB", "state": "Receiving", "uuid": "u2", "external_calls_count": 1}),
            ("tiers", "insert", ("q", "a"), {"state": "Offering"}),
            ("tiers", "insert", ("q", "b"), {"state": "Offering"}),
            ("members", "insert", ("m1",), {"instance_id": "box1", "state": "Trying", "session_uuid": "s1", "joined_epoch": 5}),
            ("members", "insert", ("m2",), {"instance_id": "box2", "state": "Waiting", "session_uuid": "s2", "joined_epoch": 6}),
        ]
        async with open_writer(store, WriterConfig(max_delay=0)) as w:
            w.submit(entries)
        before = await store.load_rows()
        await store.startup_reset("box1")
        after = await store.load_rows()
        assert after == startup_reset(before, "box1")
        assert after != before
        await store.startup_reset("box1", truncate_agents=True, truncate_tiers=True)
        after = await store.load_rows()
        assert after["agents"] == [] and after["tiers"] == [] and len(after["members"]) == 2


async def test_load_rows_orders_members_by_joined_epoch(target):
    async with opened(target) as store:
        async with open_writer(store, WriterConfig(max_delay=0)) as w:
            w.submit([("members", "insert", (f"m{i}",), {"joined_epoch": e}) for i, e in enumerate([30, 10, 20, 10])])
        rows = (await store.load_rows())["members"]
        assert [r["uuid"] for r in rows][:1] in (["m1"], ["m3"]) and [r["joined_epoch"] for r in rows] == [10, 10, 20, 30]


PG_CONFIG_DDL = """
CREATE TYPE queue_strategy AS ENUM ('ring-all','longest-idle-agent','round-robin','top-down',
  'agent-with-least-talk-time','agent-with-fewest-calls','sequentially-by-agent-order','random',
  'ring-progressively');
CREATE TABLE cc_queues (
    id SERIAL PRIMARY KEY, name character varying, strategy queue_strategy,
    moh_sound character varying NOT NULL DEFAULT '$${hold_music}', record_template character varying,
    time_base_score character varying NOT NULL DEFAULT 'queue', max_wait_time integer NOT NULL DEFAULT 0,
    max_wait_time_wna integer NOT NULL DEFAULT 0, max_wait_time_wna_tr integer NOT NULL DEFAULT 5,
    tier_rules_apply character varying NOT NULL DEFAULT 'false', tier_rule_wait_second integer NOT NULL DEFAULT 300,
    tier_rule_wait_ml character varying NOT NULL DEFAULT 'true',
    tier_rule_no_agent_no_wait character varying NOT NULL DEFAULT 'false',
    discard_abandoned_after integer NOT NULL DEFAULT 60,
    abandoned_resume_allowed character varying NOT NULL DEFAULT 'false',
    ring_progressively_delay integer NOT NULL DEFAULT 10);
CREATE TABLE cc_settings (id SERIAL PRIMARY KEY, odbc_dsn character varying(1024), dbname character varying);
CREATE TYPE agent_type AS ENUM ('callback','uuid-standby');
CREATE TYPE agent_status AS ENUM ('Logged Out','Available','Available (On Demand)','On Break');
CREATE TABLE cc_agents (
    id SERIAL PRIMARY KEY, name character varying, type agent_type, contact character varying NOT NULL,
    status agent_status, max_no_answer integer NOT NULL DEFAULT 3, wrap_up_time integer NOT NULL DEFAULT 10,
    reject_delay_time integer NOT NULL DEFAULT 3, busy_delay_time integer NOT NULL DEFAULT 60,
    no_answer_delay_time integer NOT NULL DEFAULT 5, reserve_agents character varying NOT NULL DEFAULT 'false',
    truncate_agents_on_load character varying NOT NULL DEFAULT 'false',
    truncate_tiers_on_load character varying NOT NULL DEFAULT 'false');
CREATE TABLE cc_tiers (id SERIAL PRIMARY KEY, agent character varying NOT NULL, queue character varying NOT NULL,
    level integer NOT NULL DEFAULT 1, position integer NOT NULL DEFAULT 1);
"""


async def test_fetch_config_tables(target):
    kind = target[0]
    async with opened(target, schema=False) as store:
        drops = [(f"DROP TABLE IF EXISTS {t}", None) for t in ("cc_queues", "cc_agents", "cc_tiers", "cc_settings")]
        with pytest.raises(StoreError, match="cc_queues"):
            await store.execute(drops)
            await store.fetch_config_tables()
        part = await store.fetch_config_tables(required=False)
        assert part == {"cc_queues": None, "cc_agents": None, "cc_tiers": None, "cc_settings": None}
        stmts = [x.strip() for x in PG_CONFIG_DDL.split(";") if x.strip()]
        if kind == "pg":
            await store.execute(drops + [(f"DROP TYPE IF EXISTS {t}", None)
                                         for t in ("queue_strategy", "agent_type", "agent_status")])
        else:  # SQLite: no enum types, no SERIAL
            stmts = [x.replace("SERIAL PRIMARY KEY", "INTEGER PRIMARY KEY") for x in stmts if "CREATE TYPE" not in x]
            for enum in ("queue_strategy", "agent_type", "agent_status"):
                stmts = [x.replace(f" {enum},", " varchar,") for x in stmts]
        await store.execute([(x, None) for x in stmts])
        p = (lambda n: ", ".join(f"${i + 1}" for i in range(n))) if kind == "pg" else (lambda n: ", ".join("?" * n))
        await store.execute([
            (f"INSERT INTO cc_queues (name, strategy) VALUES ({p(2)})", [("support@default", "ring-all"), (METACHARS, "top-down")]),
            (f"INSERT INTO cc_agents (name, type, contact, status) VALUES ({p(4)})",
             [("1000@default", "callback", "[leg_timeout=10]user/1000@default", "Available")]),
            (f"INSERT INTO cc_tiers (agent, queue) VALUES ({p(2)})", [("1000@default", "support@default")]),
            (f"INSERT INTO cc_settings (odbc_dsn) VALUES ({p(1)})",
             [("pgsql://hostaddr=127.0.0.1 dbname=DB  user=USER password='PASS'",)]),
        ])
        cfg = await store.fetch_config_tables()
        q = cfg["cc_queues"]
        assert [(r["id"], r["name"], r["strategy"], r["moh_sound"], r["max_wait_time_wna_tr"]) for r in q] == [
            (1, "support@default", "ring-all", "$${hold_music}", 5), (2, METACHARS, "top-down", "$${hold_music}", 5)]
        assert cfg["cc_agents"][0]["contact"] == "[leg_timeout=10]user/1000@default"
        assert cfg["cc_agents"][0]["wrap_up_time"] == 10 and cfg["cc_agents"][0]["type"] == "callback"
        assert cfg["cc_tiers"] == [{"id": 1, "agent": "1000@default", "queue": "support@default", "level": 1, "position": 1}]
        assert cfg["cc_settings"][0]["odbc_dsn"].endswith("password='PASS'")


async def test_sqlite_batch_goes_to_the_database_thread_in_one_hop():
    """A batch of several statements (deletes, inserts, updates) with its BEGIN and COMMIT is
    one job on aiosqlite's thread, with the same result as statement by statement."""
    from ccfast.store import SqliteStore

    jobs = []

    class Counting:  # aiosqlite's job queue, counted (its thread keeps reading the real one)
        def __init__(self, queue):
            self.queue = queue

        def put_nowait(self, item):
            jobs.append(getattr(item[1], "__name__", "?"))
            self.queue.put_nowait(item)

    async with opened(("sqlite", lambda **kw: SqliteStore(**kw))) as store:
        await store.connect()
        store._conn._tx = Counting(store._conn._tx)
        async with open_writer(store, WriterConfig(max_delay=0)) as w:
            w.submit([("agents", "insert", ("a1",), {"status": "Available"}),
                      ("agents", "insert", ("a2",), {"status": "On Break"}),
                      ("tiers", "insert", ("q", "a1"), {"state": "Ready"})])
            await w.flush()
            jobs.clear()
            w.submit([("agents", "update", ("a1",), {"state": "Idle"}), ("agents", "delete", ("a2",), {}),
                      ("tiers", "update", ("q", "a1"), {"level": 2})])
            await w.flush()
        assert jobs == ["transaction"]
        rows = await store.load_rows()
        assert [(r["name"], r["state"]) for r in rows["agents"]] == [("a1", "Idle")]
        assert [(r["queue"], r["agent"], r["level"]) for r in rows["tiers"]] == [("q", "a1", 2)]


async def test_a_store_used_outside_trio_asyncio_fails_at_once_instead_of_retrying():
    from ccfast.store import SqliteStore
    from ccfast.store.aio import NoLoop

    with trio.fail_after(2):
        with pytest.raises(NoLoop, match="trio-asyncio loop"):
            await SqliteStore().connect_with_retry()


async def test_sqlite_transaction_past_op_timeout_is_interrupted_and_rolled_back(tmp_path):
    """The direct (no asyncio) transaction path keeps the op_timeout bound: the running statement
    is interrupted, the transaction rolled back, StoreUnavailable raised, the store still usable
    (a file: a timeout drops the connection, which would drop an in-memory database)."""
    from ccfast.store import SqliteStore
    from ccfast.store.base import StoreUnavailable

    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000000000) "
            "SELECT count(*) FROM c")
    path = str(tmp_path / "callcenter.db")
    async with opened(("sqlite", lambda **kw: SqliteStore(path, op_timeout=0.2, **kw))) as store:
        t0 = trio.current_time()
        with pytest.raises(StoreUnavailable, match="timed out after 0.2 s"):
            await store.execute([("INSERT INTO agents (name) VALUES ('x')", None), (slow, None)])
        assert trio.current_time() - t0 < 5  # both attempts (a reused connection is retried once)
        assert await store.fetch("SELECT count(*) FROM agents") == [(0,)]  # rolled back
        await store.execute([("INSERT INTO agents (name) VALUES ('y')", None)])
        assert await store.fetch("SELECT name FROM agents") == [("y",)]
