"""A real ``python -m ccfast serve`` process: SIGKILL under traffic and restart, SIGTERM, and a
database that is down at start — on an SQLite file and on the real PostgreSQL.

The simulated FreeSWITCH box runs in the test process (see tests/serve_process.py); ccfast is a
child process. Issue 5 §2 promises checked after a SIGKILL with one caller bridged and three waiting:

* every agent is back in a definite state (``Waiting``, tiers ``Ready``) and the rows in the
  database equal the restarted core's state (its ``callcenter_config … list`` replies);
* members whose channel is gone stay ended (``Abandoned``, no session);
* callers still up come back through the dialplan fallback after ``socket`` on the same channel
  and are re-adopted with their member uuid and ``joined_epoch``, in their original order;
* SIGTERM: exit status 0, the flushed rows equal the last state, waiting callers fall through to
  the dialplan.
"""

from __future__ import annotations

import signal

import pytest
import trio

from ccfast import strings as S
from ccfast.esl.inbound import InboundClient
from ccfast.esl._link import ConnectionLost
from ccfast.sim import AgentProfile, Simulator, Timings
from ccfast.store import PostgresStore, SqliteStore, aio

from .serve_process import Redialer, ServeProcess, api_table, as_text, caller
from .test_store_common import PG_DSN, Proxy, free_port  # noqa: F401
from .test_store_common import pg_dsn  # noqa: F401  (fixture)

Q = "support@default"
AGENT = "1000@default"
TABLES = ("agents", "tiers", "members")

CONF = """<configuration name="callcenter.conf">
  <settings>{db}</settings>
  <queues><queue name="{q}">
    <param name="strategy" value="longest-idle-agent"/>
    <param name="discard-abandoned-after" value="60"/>
  </queue></queues>
  <agents>{agents}</agents>
  <tiers>{tiers}</tiers>
  <ccfast>
    <settings>
      <param name="outbound-listen" value="127.0.0.1:{out}"/>
      <param name="control-listen" value="127.0.0.1:{ctl}"/>
      <param name="control-password" value="secret"/>
      <param name="metrics-listen" value=""/>
      <param name="store-batch-ms" value="50"/>
    </settings>
    <boxes><box name="sim" host="127.0.0.1" port="{sim}" password="ClueCon"/></boxes>
  </ccfast>
</configuration>
"""


@pytest.fixture(params=["sqlite-file", "pg"])
def engine(request, tmp_path):
    """(XML <settings> naming the store, factory of a reading store on the same database)."""
    if request.param == "pg":
        dsn = request.getfixturevalue("pg_dsn")
        return f'<param name="odbc-dsn" value="{dsn}"/>', lambda: PostgresStore(dsn)
    path = str(tmp_path / "callcenter.db")
    return f'<param name="dbname" value="{path}"/>', lambda: SqliteStore(path)


class Box:
    """The simulated box, ccfast's ports and config file, and helpers to observe both."""

    def __init__(self, nursery, tmp_path, db_settings: str, reader, *, agents: int = 1, talk: float = 30.0) -> None:
        self.nursery = nursery
        self.agents = [AGENT] + [f"{1000 + i}@default" for i in range(1, agents)]
        self.sim = Simulator(timings=Timings.fast(), profiles={f"a{i + 1}": AgentProfile(f"a{i + 1}", talk_time=talk)
                                                              for i in range(agents)})
        self.out, self.ctl = free_port(), free_port()
        self.sim.dial_to = ("127.0.0.1", self.out)
        self.tmp_path = tmp_path
        self.db_settings = db_settings
        self.reader = reader
        self.control: InboundClient | None = None
        self._control_scope: trio.CancelScope | None = None

    async def start_sim(self) -> None:
        port = await self.nursery.start(self.sim.serve)
        agents = "".join(f'<agent name="{name}" type="callback" contact="sim/agent/a{i + 1}" status="Available" '
                         f'wrap-up-time="0"/>' for i, name in enumerate(self.agents))
        tiers = "".join(f'<tier agent="{name}" queue="{Q}" level="1" position="{i + 1}"/>' for i, name in enumerate(self.agents))
        conf = CONF.format(db=self.db_settings, q=Q, agents=agents, tiers=tiers, out=self.out, ctl=self.ctl, sim=port)
        self.conf_path = str(self.tmp_path / "callcenter.conf.xml")
        with open(self.conf_path, "w") as f:
            f.write(conf)

    async def connect_control(self) -> None:
        if self._control_scope is not None:
            self._control_scope.cancel()
        self.control = InboundClient("127.0.0.1", self.ctl, "secret", reconnect=False, liveness_interval=None)

        async def run(task_status=trio.TASK_STATUS_IGNORED):
            with trio.CancelScope() as scope:
                self._control_scope = scope
                try:
                    await self.control.run(task_status=task_status)
                except ConnectionLost:
                    pass  # ccfast was killed; connect_control() after the restart

        await self.nursery.start(run)

    async def cc(self, args: str) -> str:
        with trio.fail_after(5):
            return await self.control.api("callcenter_config", args)

    async def api_rows(self) -> dict[str, list[tuple]]:
        """The core's rows as the control port lists them."""
        return {
            "agents": as_text(api_table(await self.cc("agent list"))),
            "tiers": as_text(api_table(await self.cc("tier list"))),
            "members": as_text(api_table(await self.cc("queue list members")), drop=("score",)),
        }

    async def db_rows(self) -> dict[str, list[tuple]]:
        rows = await self.reader.load_rows()
        return {t: as_text(rows[t]) for t in TABLES}

    async def rows_settle_equal(self, timeout: float = 5.0) -> dict[str, list[dict]]:
        """Wait until the database equals the core's state (write-behind: one batch window)."""
        with trio.move_on_after(timeout):
            while True:
                api = await self.api_rows()
                if await self.db_rows() == api:
                    return {t: [dict(r) for r in api[t]] for t in TABLES}
                await trio.sleep(0.05)
        assert await self.db_rows() == await self.api_rows()
        raise AssertionError("unreachable")

    async def members(self) -> dict[str, dict]:
        """Member rows by session_uuid ('' rows by member uuid), from the control port."""
        rows = api_table(await self.cc("queue list members"))
        return {r["session_uuid"] or r["uuid"]: r for r in rows}


async def wait_for(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def _next_second() -> None:
    """Sleep into the next wall-clock second: joined_epoch has whole seconds."""
    import time

    await trio.sleep(1.0 - (time.time() % 1.0) + 0.02)


async def test_sigkill_under_traffic_then_restart_and_sigterm(engine, tmp_path):
    db_settings, reader_factory = engine
    async with aio.open_loop():
        reader = reader_factory()
        await reader.execute([(f"DROP TABLE IF EXISTS {t}", None) for t in TABLES])
        procs: list[ServeProcess] = []
        try:
            async with trio.open_nursery() as nursery:
                box = Box(nursery, tmp_path, db_settings, reader)
                await box.start_sim()
                sw = box.sim.switch
                redial = Redialer(box.sim)
                nursery.start_soon(redial.run)
                first = ServeProcess(box.conf_path)
                procs.append(first)
                await first.start(nursery)
                await box.connect_control()

                # traffic: c0 talks to the only agent, c1..c3 wait (joined in distinct seconds)
                c0 = box.sim.spawn_caller(caller(Q, "5550000"))
                await wait_for(lambda: c0.bridged_at is not None, what="c0 bridged")
                waiting = []
                for i in (1, 2, 3):
                    await _next_second()
                    rec = box.sim.spawn_caller(caller(Q, f"555000{i}"))
                    waiting.append(rec)
                    await wait_for(lambda rec=rec: sw.channels[rec.member_uuid].vars.get("cc_member_uuid"),
                                   what=f"c{i} joined")
                before = await box.rows_settle_equal()
                by_session = {dict(m)["session_uuid"]: dict(m) for m in before["members"]}
                assert dict(before["agents"][0])["state"] == S.STATE_IN_A_QUEUE_CALL
                assert by_session[c0.member_uuid]["state"] == S.MEMBER_ANSWERED
                for rec in waiting:
                    assert by_session[rec.member_uuid]["state"] == S.MEMBER_WAITING
                joined = [int(by_session[r.member_uuid]["joined_epoch"]) for r in waiting]
                assert joined == sorted(joined) and len(set(joined)) == 3

                # SIGKILL: callers fall through to the dialplan (parked there); c2 hangs up meanwhile
                first.kill(signal.SIGKILL)
                assert await first.wait(5) == -signal.SIGKILL
                await wait_for(lambda: all(not sw.channels[r.member_uuid].in_socket for r in waiting),
                               what="sockets closed")
                c1, c2, c3 = waiting
                sw.hangup(sw.channels[c2.caller_uuid], "NORMAL_CLEARING")
                await wait_for(lambda: sw.get(c2.member_uuid) is None, what="c2 gone")
                assert c0.ended_at is None  # the bridged call goes on without ccfast

                second = ServeProcess(box.conf_path)
                procs.append(second)
                await second.start(nursery)
                await box.connect_control()
                after = await box.rows_settle_equal()  # rows == the restarted core's state
                agent_row = dict(after["agents"][0])
                assert (agent_row["state"], agent_row["uuid"]) == (S.STATE_WAITING, "")
                assert [dict(t)["state"] for t in after["tiers"]] == [S.TIER_READY]
                members = [dict(m) for m in after["members"]]
                assert len(members) == 4
                assert all(m["state"] == S.MEMBER_ABANDONED and m["session_uuid"] == "" for m in members), members

                # callers come back on the same channel while the agent is on break: re-adopted
                assert await box.cc(f"agent set status {AGENT} 'On Break'") == "+OK\n"
                redial.enabled = True
                with trio.fail_after(5):
                    while True:
                        now = await box.members()
                        if all(now.get(r.member_uuid, {}).get("state") == S.MEMBER_WAITING for r in (c1, c3)):
                            break
                        await trio.sleep(0.05)
                for rec in (c1, c3):
                    row, old = now[rec.member_uuid], by_session[rec.member_uuid]
                    assert (row["uuid"], row["joined_epoch"]) == (old["uuid"], old["joined_epoch"])
                gone = [m for m in now.values() if m["uuid"] == by_session[c2.member_uuid]["uuid"]]
                assert [(m["state"], m["session_uuid"]) for m in gone] == [(S.MEMBER_ABANDONED, "")]

                # the agent is free again: the caller who joined first is offered first
                assert await box.cc(f"agent set status {AGENT} Available") == "+OK\n"
                await wait_for(lambda: c1.bridged_at is not None, what="c1 bridged")
                assert c3.bridged_at is None
                await wait_for(lambda: sw.channels[c1.member_uuid].bridged is not None, what="c1 in the bridge")
                last = await box.rows_settle_equal()
                assert {dict(m)["session_uuid"]: dict(m)["state"] for m in last["members"]
                        if dict(m)["session_uuid"]} == {c1.member_uuid: S.MEMBER_ANSWERED, c3.member_uuid: S.MEMBER_WAITING}

                # SIGTERM: clean exit, nothing lost; the waiting caller falls through to the dialplan
                redial.enabled = False
                state_before = await box.api_rows()
                second.kill(signal.SIGTERM)
                assert await second.wait(15) == 0, "\n".join(second.lines[-20:])
                assert any("SIGTERM received" in line for line in second.lines)
                assert await box.db_rows() == state_before
                await wait_for(lambda: not sw.channels[c3.member_uuid].in_socket, what="c3 back in the dialplan")
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for proc in procs:
                    await proc.stop()
                await reader.close()


async def test_database_down_at_start_then_reachable(pg_dsn, tmp_path):  # noqa: F811
    """odbc-dsn at a port where nothing listens: ccfast logs the error and retries with backoff
    (no exit, no crash loop); when PostgreSQL becomes reachable there, it starts serving."""
    from urllib.parse import urlsplit, urlunsplit

    real = urlsplit(pg_dsn)
    proxy = Proxy(real.hostname, real.port or 5432)
    dsn = urlunsplit((real.scheme, f"postgres@127.0.0.1:{proxy.port}", real.path, "", ""))
    proc = ServeProcess("")
    try:
        async with trio.open_nursery() as nursery:
            box = await _start_waiting_for_the_database(nursery, tmp_path, proc, dsn, retries=3)
            assert proc.proc.returncode is None  # still running, waiting for the database
            line = next(ln for ln in proc.lines if "retrying in" in ln)
            assert f"cannot connect to PostgreSQL 127.0.0.1:{proxy.port}" in line and "ERROR" in line, line
            await nursery.start(proxy.serve)
            await proc.ready(timeout=15)  # backoff is at most 10 s; here the 4th try is ≤ 4 s away
            await box.connect_control()
            assert Q in await box.cc("queue list")
            proc.kill(signal.SIGTERM)
            assert await proc.wait(15) == 0
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await proc.stop()


async def _start_waiting_for_the_database(nursery, tmp_path, proc, dsn: str, *, retries: int):
    """A simulated box and ``proc`` started against ``dsn``, once it has logged ``retries`` retries."""
    box = Box(nursery, tmp_path, f'<param name="odbc-dsn" value="{dsn}"/>', None)
    await box.start_sim()
    proc.conf_path = box.conf_path
    await proc.start(nursery, wait_ready=False)
    await wait_for(lambda: proc.count("retrying in") >= retries, timeout=10, what=f"{retries} logged retries")
    return box


async def test_sigterm_while_waiting_for_the_database_exits_cleanly(tmp_path):
    port = free_port()  # nothing listens there
    proc = ServeProcess("")
    try:
        async with trio.open_nursery() as nursery:
            await _start_waiting_for_the_database(nursery, tmp_path, proc, f"postgresql://u@127.0.0.1:{port}/x",
                                                  retries=1)
            proc.kill(signal.SIGTERM)
            assert await proc.wait(10) == 0
            assert any("before the service was up" in line for line in proc.lines)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await proc.stop()


async def test_database_outage_under_call_traffic(pg_dsn, tmp_path):  # noqa: F811
    """PostgreSQL connections killed (pg_terminate_backend), then the server unreachable for a
    second, while calls flow: calls go on being bridged from memory, and once the database is back
    the tables equal the core's state."""
    from urllib.parse import urlsplit

    from .test_store_common import proxied_dsn
    from .test_store_faults import _serve_in_scope

    real = urlsplit(pg_dsn)
    proxy = Proxy(real.hostname, real.port or 5432)
    async with aio.open_loop():
        reader = PostgresStore(pg_dsn)
        await reader.execute([(f"DROP TABLE IF EXISTS {t}", None) for t in TABLES])
        proc = ServeProcess("")
        try:
            async with trio.open_nursery() as nursery:
                scope = await nursery.start(_serve_in_scope, proxy)
                box = Box(nursery, tmp_path, f'<param name="odbc-dsn" value="{proxied_dsn(pg_dsn, proxy.port)}"/>',
                          reader, agents=3, talk=0.1)
                await box.start_sim()
                proc.conf_path = box.conf_path
                await proc.start(nursery)
                await box.connect_control()
                records = []

                async def traffic(seconds: float) -> None:
                    end = trio.current_time() + seconds
                    i = 0
                    while trio.current_time() < end:
                        records.append(box.sim.spawn_caller(caller(Q, f"556{i:04d}", park=False)))
                        i += 1
                        await trio.sleep(0.2)  # below the agents' capacity: no caller waits long

                async with trio.open_nursery() as load:
                    load.start_soon(traffic, 3.0)
                    await trio.sleep(0.7)
                    killed = await reader.fetch(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                    assert killed and all(ok for (ok,) in killed)
                    await trio.sleep(0.5)
                    scope.cancel()  # the server is unreachable ...
                    proxy.kill()
                    down_at = trio.current_time()
                    await trio.sleep(1.0)
                    scope = await nursery.start(_serve_in_scope, proxy)  # ... and back
                    up_at = trio.current_time()
                with trio.move_on_after(5):
                    for rec in records:
                        await rec.done.wait()
                assert all(rec.outcome == "bridged" for rec in records), [r.outcome for r in records]
                during = [r for r in records if r.bridged_at is not None and down_at < r.bridged_at < up_at]
                assert len(during) >= 3, len(during)  # dispatch went on while the database was unreachable
                await box.rows_settle_equal(timeout=15)  # the writer's retry backoff is at most 5 s
                agents = api_table(await box.cc("agent list"))
                assert sum(int(a["calls_answered"]) for a in agents) == len(records)
                assert any("writable again" in line for line in proc.lines)  # the outage was seen and replayed
                proc.kill(signal.SIGTERM)
                assert await proc.wait(15) == 0
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await proc.stop()
                await reader.close()


async def test_bad_config_rows_stop_the_start_with_status_2(tmp_path):
    """config-source = database and a tier of an unknown queue: one clear line, exit status 2."""
    import sqlite3

    path = str(tmp_path / "cc.db")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE cc_queues (id INTEGER PRIMARY KEY, name varchar, strategy varchar)")
        db.execute("CREATE TABLE cc_agents (id INTEGER PRIMARY KEY, name varchar, type varchar, contact varchar)")
        db.execute("CREATE TABLE cc_tiers (id INTEGER PRIMARY KEY, agent varchar, queue varchar)")
        db.execute("CREATE TABLE cc_settings (id INTEGER PRIMARY KEY, odbc_dsn varchar, dbname varchar)")
        db.execute("INSERT INTO cc_queues (name) VALUES (?)", (Q,))
        db.execute("INSERT INTO cc_tiers (id, agent, queue) VALUES (7, ?, 'nope')", (AGENT,))
    conf = tmp_path / "callcenter.conf.xml"
    conf.write_text(f'<configuration name="callcenter.conf"><settings><param name="dbname" value="{path}"/></settings>'
                    '<ccfast><settings><param name="config-source" value="database"/></settings></ccfast></configuration>')
    proc = ServeProcess(str(conf))
    try:
        async with trio.open_nursery() as nursery:
            await proc.start(nursery, wait_ready=False)
            assert await proc.wait(10) == 2  # the stderr reader ends at EOF: every line is read
        text = "\n".join(proc.lines)
        assert "configuration error: database:cc_tiers id=7: tier 1000@default/nope: queue 'nope' is not in cc_queues" in text
        assert "Traceback" not in text
    finally:
        with trio.CancelScope(shield=True):
            await proc.stop()
