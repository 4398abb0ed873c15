"""``config-source = database``: the service's queues/agents/tiers come from the ``cc_*`` tables.

On SQLite (file) and on the real PostgreSQL (a fresh database per module, see test_store_common):
start from the tables (the XML's queues/agents/tiers are ignored), a call through a queue whose
name is full of SQL metacharacters, rows equal to the core afterwards, reload at runtime re-reads
the tables, and bad rows are refused with an error naming table and row while nothing changes.
"""

from __future__ import annotations

import pytest
import trio

from ccfast import config as configmod
from ccfast import serve
from ccfast.store import aio
from ccfast.store.config_source import DbConfigSource, check_config_rows, rereads_config
from ccfast.sim import AgentProfile

from . import e2e_harness
from .e2e_harness import conf, open_callcenter
from .test_store_common import pg_dsn  # noqa: F401  (fixture)
from .test_store_common import PostgresStore, SqliteStore, free_port
from .test_store_engines import PG_CONFIG_DDL

Q = "support@default"
BAD_Q = "sales'; DROP TABLE agents;--"
# a caller's cc_queue ends at the first space (as in mod_callcenter), and a quote in a queue name
# breaks the agent originate's {cc_queue='...'} (as in mod_callcenter): the call goes through this one
CALL_Q = "sales;DELETE_FROM_tiers;--"
AGENT = "1000@default"
CONFIG_TABLES = ("cc_queues", "cc_agents", "cc_tiers", "cc_settings")


def ddl(kind: str) -> list[tuple[str, None]]:
    """The brief's cc_* DDL (PostgreSQL enums; on SQLite plain columns), after dropping old ones."""
    stmts = [x.strip() for x in PG_CONFIG_DDL.split(";") if x.strip()]
    drops = [(f"DROP TABLE IF EXISTS {t}", None) for t in CONFIG_TABLES]
    if kind == "pg":
        drops += [(f"DROP TYPE IF EXISTS {t}", None) for t in ("queue_strategy", "agent_type", "agent_status")]
    else:
        stmts = [x.replace("SERIAL PRIMARY KEY", "INTEGER PRIMARY KEY") for x in stmts if "CREATE TYPE" not in x]
        for enum in ("queue_strategy", "agent_type", "agent_status"):
            stmts = [x.replace(f" {enum},", " varchar,") for x in stmts]
    return drops + [(x, None) for x in stmts]


def ph(kind: str, n: int) -> str:
    return ", ".join(f"${i + 1}" for i in range(n)) if kind == "pg" else ", ".join("?" * n)


def seed(kind: str) -> list:
    p = lambda n: ph(kind, n)  # noqa: E731
    return ddl(kind) + [
        (f"INSERT INTO cc_queues (name, strategy, max_wait_time) VALUES ({p(3)})",
         [(Q, "longest-idle-agent", 0), (BAD_Q, "top-down", 0), (CALL_Q, "round-robin", 0)]),
        (f"INSERT INTO cc_agents (name, type, contact, status, wrap_up_time) VALUES ({p(5)})",
         [(AGENT, "callback", "sim/agent/a1", "Available", 0)]),
        (f"INSERT INTO cc_tiers (agent, queue, level, position) VALUES ({p(4)})",
         [(AGENT, Q, 1, 1), (AGENT, BAD_Q, 1, 1), (AGENT, CALL_Q, 1, 1)]),
    ]


@pytest.fixture(params=["sqlite-file", "pg"])
def db(request, tmp_path):
    """(kind, XML <settings> naming the store, factory of a store on the same database)."""
    if request.param == "pg":
        dsn = request.getfixturevalue("pg_dsn")
        return "pg", f'<param name="odbc-dsn" value="{dsn}"/>', lambda: PostgresStore(dsn)
    path = str(tmp_path / "cc.db")
    return "sqlite", f'<param name="dbname" value="{path}"/>', lambda: SqliteStore(path)


def xml(settings: str) -> str:
    # an XML queue/agent that must be ignored: the tables are the configuration
    return conf('<queue name="xml-only@default"/>', '<agent name="xml-agent" type="callback" contact="x"/>',
                settings=settings)


@pytest.fixture
def db_source(monkeypatch):
    block = e2e_harness.CCFAST_BLOCK.replace(
        '<param name="control-password" value="secret"/>',
        '<param name="control-password" value="secret"/><param name="config-source" value="database"/>')
    monkeypatch.setattr(e2e_harness, "CCFAST_BLOCK", block)


def _table(rows: list[dict]) -> list[tuple]:
    return sorted(tuple(sorted(r.items())) for r in rows)


async def db_rows(store) -> dict:
    return await store.load_rows()


async def test_service_runs_from_the_tables_and_reloads_them(db, db_source):
    kind, settings, factory = db
    async with aio.open_loop():
        store = factory()
        try:
            await store.execute(seed(kind))
            profiles = {"a1": AgentProfile("a1", talk_time=0.05)}
            async with open_callcenter(xml(settings), profiles=profiles) as env:
                core = env.core
                assert sorted(core.queue_names()) == sorted([Q, BAD_Q, CALL_Q])  # not the XML's queue
                assert [a["name"] for a in core.rows("agents")] == [AGENT]
                # a call through the queue named with SQL metacharacters
                await env.bridged_call(queue=CALL_Q)
                await env.running.writer.flush()
                rows = await db_rows(store)
                for table in ("agents", "tiers", "members"):
                    assert _table(rows[table]) == _table(core.rows(table)), table
                assert rows["agents"][0]["calls_answered"] == 1

                # reload at runtime re-reads the tables
                p = lambda n: ph(kind, n)  # noqa: E731
                await store.execute([
                    (f"UPDATE cc_queues SET max_wait_time = {ph(kind, 1)} WHERE name = {'$2' if kind == 'pg' else '?'}",
                     [(45, Q)]),
                    (f"INSERT INTO cc_queues (name, strategy) VALUES ({p(2)})", [("new@default", "ring-all")]),
                    (f"INSERT INTO cc_tiers (agent, queue, level, position) VALUES ({p(4)})",
                     [(AGENT, "new@default", 2, 3)]),
                ])
                assert core.queue_params(Q).max_wait_time == 0
                assert await env.cc(f"queue reload {Q}") == "+OK\n"
                assert core.queue_params(Q).max_wait_time == 45
                assert await env.cc("queue load new@default") == "+OK\n"
                assert core.queue_params("new@default").strategy == "ring-all"
                assert ("new@default", AGENT, 2, 3) in [(t["queue"], t["agent"], t["level"], t["position"])
                                                         for t in core.rows("tiers")]

                where = "$1" if kind == "pg" else "?"
                await store.execute([
                    (f"UPDATE cc_agents SET contact = {where}", [("sim/agent/a9",)]),
                    (f"UPDATE cc_tiers SET position = {where}", [(7,)]),
                ])
                assert await env.cc(f"agent reload {AGENT}") == "+OK\n"
                assert core.rows("agents")[0]["contact"] == "sim/agent/a9"
                assert await env.cc(f"tier reload {Q} {AGENT}") == "+OK\n"
                positions = {t["queue"]: t["position"] for t in core.rows("tiers")}
                assert (positions[Q], positions[BAD_Q]) == (7, 1)  # only the reloaded tier

                # bad rows: a specific error naming table and row; nothing changes
                await store.execute([
                    (f"UPDATE cc_queues SET max_wait_time = {ph(kind, 1)} WHERE name = {'$2' if kind == 'pg' else '?'}",
                     [(99, Q)]),
                    (f"INSERT INTO cc_tiers (agent, queue) VALUES ({p(2)})", [(AGENT, "nope@default")]),
                ])
                before = {t: core.rows(t) for t in ("agents", "tiers", "members")}
                reply = await env.cc(f"queue reload {Q}")
                assert reply.startswith("-ERR ") and "cc_tiers id=5" in reply and "nope@default" in reply, reply
                assert core.queue_params(Q).max_wait_time == 45  # not unloaded, not changed
                assert await env.cc(f"agent reload {AGENT}") == reply
                assert {t: core.rows(t) for t in before} == before
                assert await env.cc("queue list") != ""  # the control port still answers
                await e2e_harness.finish(env)
        finally:
            await store.close()


async def test_bad_rows_at_start_stop_the_start(db, db_source):
    kind, settings, factory = db
    async with aio.open_loop():
        store = factory()
        try:
            await store.execute(seed(kind) + [
                (f"INSERT INTO cc_queues (name) VALUES ({ph(kind, 1)})", [("Support@Default",)])])
            cfg = configmod.load_config("test.xml", text=xml(settings).replace(
                "{ccfast}", e2e_harness.CCFAST_BLOCK.format(port=free_port())))
            with pytest.raises(configmod.ConfigError) as info:
                await serve.load_config_source(cfg)
            assert "cc_queues id=4" in str(info.value) and "duplicate queue name" in str(info.value)
        finally:
            await store.close()


async def test_database_down_at_start_is_waited_for(pg_dsn, caplog):  # noqa: F811
    """config-dsn at a port where nothing listens yet: logged retries with backoff, no crash;
    once the database is reachable (a proxy to PostgreSQL starts there) the tables are read."""
    from urllib.parse import urlsplit, urlunsplit

    from .test_store_common import Proxy

    real = urlsplit(pg_dsn)
    proxy = Proxy(real.hostname, real.port or 5432)
    base = configmod.load_config("test.xml", text=xml("").replace(
        "{ccfast}", e2e_harness.CCFAST_BLOCK.format(port=free_port())))
    base.ccfast.config_source = "database"
    base.ccfast.config_dsn = urlunsplit((real.scheme, f"postgres@127.0.0.1:{proxy.port}", real.path, "", ""))
    async with aio.open_loop():
        seeder = PostgresStore(pg_dsn)
        await seeder.execute(seed("pg"))
        await seeder.close()
        source = DbConfigSource.open(base, lambda target: PostgresStore(None, connect_timeout=1, **target.connect_kwargs))
        assert not source.shared
        async with trio.open_nursery() as nursery:
            async def proxy_later():
                with trio.fail_after(10):
                    while len(retries()) < 2:
                        await trio.sleep(0.05)
                await nursery.start(proxy.serve)

            def retries():
                return [r for r in caplog.records if r.name == "ccfast.store" and "retrying in" in r.getMessage()]

            nursery.start_soon(proxy_later)
            with trio.fail_after(15):
                cfg = await source.load()
            nursery.cancel_scope.cancel()
        assert f"127.0.0.1:{proxy.port}" in retries()[0].getMessage()
        assert "cannot connect" in retries()[0].getMessage()
        assert sorted(cfg.queues) == sorted([Q, BAD_Q, CALL_Q]) and proxy.accepted >= 1
        await source.close()


# -- pure checks --------------------------------------------------------------------------------


def _tables(**over):
    tables = {"cc_queues": [{"id": 1, "name": Q}], "cc_agents": [{"id": 1, "name": AGENT, "type": "callback"}],
              "cc_tiers": [{"id": 1, "agent": AGENT, "queue": Q, "level": 1, "position": 1}], "cc_settings": []}
    tables.update(over)
    columns = {"cc_queues": ["id", "name"], "cc_agents": ["id", "name", "type"],
               "cc_tiers": ["id", "agent", "queue", "level", "position"], "cc_settings": ["id"]}
    return tables, columns


@pytest.mark.parametrize("over, message", [
    ({"cc_tiers": None}, "database: cc_tiers: table not found"),
    ({"cc_queues": [{"id": 7, "name": None}]}, "database:cc_queues id=7: name: queue without a name"),
    ({"cc_queues": [{"id": 1, "name": Q}, {"id": 2, "name": Q.upper()}]}, "cc_queues id=2: queue SUPPORT@DEFAULT: duplicate"),
    ({"cc_agents": [{"id": 1, "name": AGENT, "type": "callback"}, {"id": 5, "name": AGENT, "type": "callback"}]},
     "cc_agents id=5: agent 1000@default: duplicate agent name"),
    ({"cc_agents": [{"id": 3, "name": AGENT, "type": None}]}, "cc_agents id=3: agent 1000@default: type: NULL"),
    ({"cc_tiers": [{"id": 9, "agent": AGENT, "queue": "gone"}]}, "cc_tiers id=9: tier 1000@default/gone: queue 'gone' is not in cc_queues"),
    ({"cc_tiers": [{"id": 2, "agent": AGENT, "queue": Q, "level": "x"}]}, "cc_tiers id=2: tier 1000@default/support@default: level: 'x' is not an integer"),
])
def test_check_config_rows_names_table_and_row(over, message):
    tables, columns = _tables(**over)
    with pytest.raises(configmod.ConfigError) as info:
        check_config_rows(tables, columns, "database")
    assert message in str(info.value)


def test_check_config_rows_missing_column():
    tables, columns = _tables()
    columns["cc_agents"] = ["id", "name"]
    with pytest.raises(configmod.ConfigError, match="database:cc_agents: type: column missing"):
        check_config_rows(tables, columns, "database")
    check_config_rows(*_tables(), "database")  # the good tables pass


def test_rereads_config():
    assert rereads_config("callcenter_config", "queue reload q")
    assert rereads_config("CALLCENTER_CONFIG", "Tier Reload all")
    assert rereads_config("callcenter_config", "agent reload a")
    assert rereads_config("callcenter_config", "queue load q")
    assert not rereads_config("callcenter_config", "queue list")
    assert not rereads_config("callcenter_config", "queue unload q")
    assert not rereads_config("callcenter_break", "agent x")


def test_db_settings_win_over_the_xml_settings():
    base = configmod.load_config("t.xml", text=conf("", settings='<param name="cc-instance-id" value="box7"/>'
                                                     '<param name="reserve-agents" value="true"/>').replace("{ccfast}", ""))
    cfg = configmod.config_from_db_rows([], [{"id": 1, "name": "a", "reserve_agents": "false"}], [], [{"id": 1, "dbname": None}],
                                        base.ccfast, base_settings=base.settings)
    assert cfg.settings.cc_instance_id == "box7" and cfg.settings.reserve_agents is False


async def test_reload_while_the_config_database_is_down(pg_dsn, db_source, tmp_path, monkeypatch):  # noqa: F811
    """config-dsn (PostgreSQL) unreachable at reload time: -ERR naming the database, nothing
    changes, the service keeps answering; once it is back, reload works again."""
    from urllib.parse import urlsplit

    from .test_store_common import Proxy, proxied_dsn
    from .test_store_faults import _serve_in_scope

    real = urlsplit(pg_dsn)
    proxy = Proxy(real.hostname, real.port or 5432)
    block = e2e_harness.CCFAST_BLOCK.replace(
        '<param name="config-source" value="database"/>',
        f'<param name="config-source" value="database"/><param name="config-dsn" value="{proxied_dsn(pg_dsn, proxy.port)}"/>')
    monkeypatch.setattr(e2e_harness, "CCFAST_BLOCK", block)
    async with aio.open_loop(), trio.open_nursery() as nursery:
        scope = await nursery.start(_serve_in_scope, proxy)
        store = PostgresStore(pg_dsn)
        try:
            await store.execute(seed("pg"))
            # the store itself is an SQLite file: only the configuration is on PostgreSQL
            async with open_callcenter(xml(f'<param name="dbname" value="{tmp_path / "cc.db"}"/>')) as env:
                assert sorted(env.core.queue_names()) == sorted([Q, BAD_Q, CALL_Q])
                scope.cancel()
                proxy.kill()
                await store.execute([("UPDATE cc_queues SET max_wait_time = 30", None)])
                reply = await env.cc(f"queue reload {Q}")
                assert reply.startswith("-ERR config-dsn PostgreSQL 127.0.0.1:") and "cannot read" in reply, reply
                assert env.core.queue_params(Q).max_wait_time == 0
                scope = await nursery.start(_serve_in_scope, proxy)
                assert await env.cc(f"queue reload {Q}") == "+OK\n"
                assert env.core.queue_params(Q).max_wait_time == 30
        finally:
            await store.close()
            nursery.cancel_scope.cancel()
