"""Start after a crash: definite agent states, and a caller whose channel comes back is re-adopted.

The crashed process is represented by the rows it left in the database (a SIGKILL leaves whatever
the last write-behind batch wrote): an agent `Receiving` with its tier `Offering`, and a member
`Trying` with its channel uuid. ccfast must start with the agent `Waiting`/`Ready` and, when the
caller re-enters through the dialplan fallback after `socket` with the same channel, put it back
at its old place in line (same member uuid and joined_epoch).
"""

from __future__ import annotations

import sqlite3
import time

import trio

from ccfast import strings as S
from ccfast.sim import AgentProfile, CallerSpec
from ccfast.sim import switch as sim_switch
from ccfast.store.schema import create_table_sql

from .e2e_harness import conf, open_callcenter

QUEUE = '<queue name="support@default"><param name="strategy" value="longest-idle-agent"/></queue>'
AGENT = '<agent name="1000@default" type="callback" contact="sim/agent/a1" status="Available"/>'
TIER = '<tier agent="1000@default" queue="support@default" level="1" position="1"/>'
SESSION = "6f3cbada-ffd6-428d-aa61-ee783ddad25b"


def _crashed_database(path, joined: int) -> None:
    with sqlite3.connect(path) as db:
        for table in ("agents", "tiers", "members"):
            db.execute(create_table_sql(table))
        cols = ", ".join(S.AGENTS_COLUMNS)
        db.execute(
            f"INSERT INTO agents ({cols}) VALUES ({', '.join('?' * len(S.AGENTS_COLUMNS))})",
            ("1000@default", S.SINGLE_BOX, "", "callback", "sim/agent/a1", "Available", S.STATE_RECEIVING,
             0, 0, 0, 0, 0, 0, 0, joined, joined, 0, 0, 0, 0, 0),
        )
        db.execute("INSERT INTO tiers VALUES (?, ?, ?, 1, 1)", ("support@default", "1000@default", S.TIER_OFFERING))
        db.execute(
            "INSERT INTO members (queue, instance_id, uuid, session_uuid, cid_number, cid_name, system_epoch,"
            " joined_epoch, serving_agent, serving_system, state) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            ("support@default", S.SINGLE_BOX, "member-1", SESSION, "5551000", "Alice", joined, joined,
             "1000@default", S.SINGLE_BOX, S.MEMBER_TRYING),
        )


async def test_restart_after_a_crash_frees_the_agent_and_readopts_the_returning_caller(tmp_path, monkeypatch):
    db = tmp_path / "callcenter.db"
    joined = int(time.time()) - 30
    _crashed_database(db, joined)
    xml = conf(QUEUE, AGENT, TIER, settings=f'<param name="dbname" value="{db}"/>')
    profiles = {"a1": AgentProfile("a1", talk_time=0.1)}
    async with open_callcenter(xml, profiles=profiles) as env:
        agent = env.core.rows("agents")[0]
        assert agent["state"] == S.STATE_WAITING
        assert env.core.rows("tiers")[0]["state"] == S.TIER_READY
        member = env.core.rows("members")[0]
        assert member["state"] == S.MEMBER_ABANDONED and member["session_uuid"] == ""
        assert env.core.readopt_sessions(env.running.service.clock.now()) == {SESSION: "member-1"}

        # the caller comes back on the same channel (the dialplan's fallback re-enters ccfast)
        uuids = iter(["caller-a-leg", SESSION])
        monkeypatch.setattr(sim_switch, "new_uuid", lambda: next(uuids))
        await env.control.subscribe(["CUSTOM"], [S.EVENT_SUBCLASS])
        record = env.sim.spawn_caller(CallerSpec(queue="support@default", cid_number="5551000"))
        monkeypatch.undo()
        first = None
        with trio.fail_after(5):
            while first is None or first.get("CC-Action") not in (S.ACTION_MEMBER_QUEUE_RESUME,
                                                                  S.ACTION_MEMBER_QUEUE_START):
                first = await env.control.events.get()
        assert first.get("CC-Action") == S.ACTION_MEMBER_QUEUE_RESUME
        assert first.get("CC-Member-UUID") == "member-1"
        with trio.fail_after(5):
            await record.done.wait()
        assert record.outcome == "bridged"
        await env.quiesce()
        assert env.core.rows("agents")[0]["calls_answered"] == 1
        env.check_invariants()


async def test_restart_forgets_callers_whose_channel_is_gone(tmp_path, monkeypatch):
    """A caller that hung up while ccfast was down is not waited for until discard-abandoned-after:
    once the boxes are asked (uuid_exists), its session is no longer re-adoptable."""
    from ccfast.service import app as service_app

    monkeypatch.setattr(service_app, "READOPT_CHECK_DELAY", 0.2)
    db = tmp_path / "callcenter.db"
    _crashed_database(db, int(time.time()) - 30)
    xml = conf(QUEUE, AGENT, TIER, settings=f'<param name="dbname" value="{db}"/>')
    async with open_callcenter(xml) as env:
        service = env.running.service
        assert env.core.readopt_sessions(service.clock.now()) == {SESSION: "member-1"}
        with trio.fail_after(5):
            while env.core.readopt_sessions(service.clock.now()):
                await trio.sleep(0.05)
        assert env.api_calls("uuid_exists")  # the box was asked
        member = env.core.rows("members")[0]
        assert member["state"] == S.MEMBER_ABANDONED
