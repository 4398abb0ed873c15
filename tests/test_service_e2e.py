"""The service end to end over real TCP against the simulator."""

from __future__ import annotations

import trio

from ccfast import strings as S
from ccfast.sim import AgentProfile, CallerSpec

from .e2e_harness import conf, open_callcenter

QUEUE = '<queue name="support@default"><param name="strategy" value="longest-idle-agent"/></queue>'
AGENT = '<agent name="1000@default" type="callback" contact="sim/agent/a1" status="Available"/>'
TIER = '<tier agent="1000@default" queue="support@default" level="1" position="1"/>'


async def test_one_call_is_offered_bridged_and_ended():
    profiles = {"a1": AgentProfile("a1", talk_time=0.2)}
    async with open_callcenter(conf(QUEUE, AGENT, TIER), profiles=profiles) as env:
        record = env.sim.spawn_caller(CallerSpec(queue="support@default"))
        with trio.fail_after(5):
            await record.done.wait()
        assert record.outcome == "bridged"
        await env.settle()
        agent = env.core.rows("agents")[0]
        assert agent["calls_answered"] == 1 and agent["state"] == S.STATE_WAITING
        assert env.core.rows("members") == []
        env.check_invariants()
