"""Run the simulator and ccfast together over loopback TCP, for the service tests.

``open_callcenter(conf_xml, profiles=...)`` starts a simulated FreeSWITCH box and ccfast
(configured from the given callcenter.conf.xml body plus the ports of the simulator) and yields
an ``Env`` with both, a control-port client, and ``check_invariants()`` — the end-of-test checks of
issue 4: no agent left Receiving/Reserved, no tier Offering, no member Trying, no live channel.
"""

from __future__ import annotations

import contextlib
import dataclasses

import trio

from ccfast import config as configmod
from ccfast import strings as S
from ccfast.esl.inbound import InboundClient
from ccfast.serve import Running, run
from ccfast.sim import Simulator, Timings

CCFAST_BLOCK = """
  <ccfast>
    <settings>
      <param name="control-password" value="secret"/>
      <param name="metrics-listen" value=""/>
    </settings>
    <boxes><box name="sim" host="127.0.0.1" port="{port}" password="ClueCon"/></boxes>
  </ccfast>
"""


def conf(queues: str, agents: str = "", tiers: str = "", settings: str = "") -> str:
    return (
        '<configuration name="callcenter.conf">'
        f"<settings>{settings}</settings><queues>{queues}</queues>"
        f"<agents>{agents}</agents><tiers>{tiers}</tiers>{{ccfast}}</configuration>"
    )


@dataclasses.dataclass
class Env:
    sim: Simulator
    running: Running
    control: InboundClient | None

    @property
    def core(self):
        return self.running.service.core

    async def cc(self, args: str) -> str:
        assert self.control is not None
        return await self.control.api("callcenter_config", args)

    async def settle(self, timeout: float = 5.0) -> None:
        """Until no member is in the service and no offer is live."""
        service = self.running.service
        with trio.fail_after(timeout):
            while service.members or service.offers:
                await trio.sleep(0.01)

    def live_channels(self) -> list:
        return [c for c in self.sim.switch.channels.values() if c.alive]

    async def quiesce(self, timeout: float = 5.0) -> None:
        """settle(), then until the simulator has no live channel (hang-ups propagate in ms)."""
        await self.settle(timeout)
        with trio.move_on_after(timeout):
            while self.live_channels():
                await trio.sleep(0.01)

    def check_invariants(self) -> None:
        core = self.core
        for agent in core.rows("agents"):
            assert agent["state"] not in (S.STATE_RECEIVING, S.STATE_RESERVED), agent
        for tier in core.rows("tiers"):
            assert tier["state"] != S.TIER_OFFERING, tier
        for member in core.rows("members"):
            assert member["state"] != S.MEMBER_TRYING or member["serving_agent"] in S.RING_STRATEGIES, member
        assert not self.running.service.offers
        assert not self.live_channels(), "a channel was left up in the simulator"


@contextlib.asynccontextmanager
async def open_callcenter(conf_xml: str, *, timings: Timings | None = None, **sim_kwargs):
    async with trio.open_nursery() as nursery:
        sim = Simulator(timings=timings or Timings.fast(), **sim_kwargs)
        port = await nursery.start(sim.serve)
        cfg = configmod.load_config("test.xml", text=conf_xml.replace("{ccfast}", CCFAST_BLOCK.format(port=port)))
        # port 0: let the OS choose (tests run in parallel with other listeners)
        cfg.ccfast.outbound_listen = configmod.Address("127.0.0.1", 0)
        cfg.ccfast.control_listen = configmod.Address("127.0.0.1", 0)
        running: Running = await nursery.start(run, cfg)
        sim.dial_to = ("127.0.0.1", running.outbound_port)
        control = InboundClient("127.0.0.1", running.control_port, "secret", reconnect=False, liveness_interval=None)
        await nursery.start(control.run)
        try:
            yield Env(sim, running, control)
        finally:
            nursery.cancel_scope.cancel()
