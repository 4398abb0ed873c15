"""The service with its store: write-behind of the core's rows, and state kept across a restart."""

from __future__ import annotations

import sqlite3


from ccfast import strings as S
from ccfast.sim import AgentProfile

from .e2e_harness import conf, open_callcenter

QUEUE = '<queue name="support@default"><param name="strategy" value="longest-idle-agent"/></queue>'
AGENT = '<agent name="1000@default" type="callback" contact="sim/agent/a1" status="Available"/>'
TIER = '<tier agent="1000@default" queue="support@default" level="1" position="1"/>'


def _read(path) -> dict[str, list[dict]]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return {t: [dict(r) for r in conn.execute(f"SELECT * FROM {t}")] for t in ("agents", "tiers", "members")}


async def test_tables_follow_the_core_and_survive_a_restart(tmp_path):
    db = tmp_path / "callcenter.db"
    settings = f'<param name="dbname" value="{db}"/>'
    xml = conf(QUEUE, AGENT, TIER, settings=settings)
    profiles = {"a1": AgentProfile("a1", talk_time=0.05)}
    async with open_callcenter(xml, profiles=profiles) as env:
        await env.bridged_call()
        writer = env.running.writer
        await writer.flush()
        stored = _read(db)
        assert stored["agents"] == env.core.rows("agents")
        assert stored["tiers"] == env.core.rows("tiers")
        assert stored["agents"][0]["calls_answered"] == 1
    # a new process on the same database: counters kept, the XML status re-applied (§2.6)
    async with open_callcenter(xml, profiles=profiles) as env:
        agent = env.core.rows("agents")[0]
        assert agent["calls_answered"] == 1 and agent["state"] == S.STATE_WAITING
        await env.bridged_call()
        assert env.core.rows("agents")[0]["calls_answered"] == 2
        env.check_invariants()
