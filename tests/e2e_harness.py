"""Run the simulator and ccfast together over loopback TCP, for the service tests.

``open_callcenter(conf_xml, profiles=...)`` starts a simulated FreeSWITCH box and ccfast
(configured from the given callcenter.conf.xml body plus the ports of the simulator) and yields
an ``Env`` with both, a control-port client, and ``check_invariants()`` — the end-of-test checks of
issue 4: no agent left Receiving/Reserved, no tier Offering, no member Trying, no live channel.

Observation helpers (they only read what the simulator and the control port show):
``Env.spawn`` (a caller; its member channel object stays readable after hang-up), ``Env.channel``,
``Env.api_log`` (every api/bgapi command the simulated box ran, with its trio time),
``Env.watch_events``/``Env.wait_event`` (``CUSTOM callcenter::info`` from the control port),
``Env.legs``/``Env.leg_vars`` (originated agent legs and the variables they were created with),
``Env.hangup_caller``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import trio

from ccfast import config as configmod
from ccfast import strings as S
from ccfast.esl.inbound import InboundClient
from ccfast.serve import Running, run
from ccfast.sim import CallerSpec, Simulator, Timings
from ccfast.sim import api as sim_api
from ccfast.sim.dialstring import parse_originate

CCFAST_BLOCK = """
  <ccfast>
    <settings>
      <param name="control-password" value="secret"/>
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
    nursery: trio.Nursery | None = None
    api_log: list = dataclasses.field(default_factory=list)  # (trio time, command, args)
    events: list = dataclasses.field(default_factory=list)  # CC events seen on the control port
    channels: dict = dataclasses.field(default_factory=dict)  # every sim channel ever created
    _event_arrived: Any = None

    @property
    def core(self):
        return self.running.service.core

    @property
    def service(self):
        return self.running.service

    # -- callers and channels --------------------------------------------------------------
    def spawn(self, spec):
        """Start a caller; returns its CallRecord (``Env.channel(rec.member_uuid)`` is its channel)."""
        return self.sim.spawn_caller(spec)

    def channel(self, uuid: str):
        """The simulator's Channel object for ``uuid``, also after it hung up."""
        return self.channels[uuid]

    def hangup_caller(self, record, cause: str = "NORMAL_CLEARING") -> None:
        """The caller hangs up (the loopback -a leg, as a real phone would)."""
        self.sim.switch.hangup(self.channels[record.caller_uuid], cause)

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> None:
        self.sim.switch.hangup(self.channels[uuid], cause)

    def epoch(self, trio_time: float) -> float:
        """A simulator timestamp (trio time) as the service's epoch seconds."""
        return self.service.clock._offset + trio_time

    def api_calls(self, command: str) -> list:
        return [(t, args) for t, cmd, args in self.api_log if cmd == command]

    # -- agent legs ------------------------------------------------------------------------
    def legs(self, endpoint_part: str | None = None) -> list:
        """LegRecords of originated legs in creation order (optionally whose endpoint contains)."""
        legs = sorted(self.sim.switch.legs.values(), key=lambda r: r.created)
        return [r for r in legs if endpoint_part is None or endpoint_part in r.endpoint]

    def leg_vars(self, leg_uuid: str) -> dict:
        """The variables the originate gave this leg (``[]`` then ``{}``; ``{}`` wins, as in FS)."""
        rec = self.sim.switch.legs[leg_uuid]
        orig = parse_originate(self.sim.switch.jobs[rec.job_uuid].arg)
        for group in orig.groups:
            for leg in group:
                merged = orig.leg_vars(leg)
                if merged.get("origination_uuid") == leg_uuid or leg.endpoint == rec.endpoint:
                    return merged
        raise KeyError(leg_uuid)

    async def wait_for(self, predicate, timeout: float = 5.0, what: str = "condition") -> None:
        with trio.fail_after(timeout):
            while not predicate():
                await trio.sleep(0.005)

    # -- events ----------------------------------------------------------------------------
    async def watch_events(self) -> None:
        """Subscribe to ``CUSTOM callcenter::info`` on the control port; collect into ``events``."""
        assert self.control is not None and self.nursery is not None
        self._event_arrived = trio.Event()
        await self.control.subscribe(["CUSTOM"], [S.EVENT_SUBCLASS])

        async def collect() -> None:
            while True:
                event = await self.control.events.get()
                if event.get("Event-Subclass") == S.EVENT_SUBCLASS:
                    self.events.append(event)
                    self._event_arrived.set()
                    self._event_arrived = trio.Event()

        self.nursery.start_soon(collect)

    def find_events(self, action: str | None = None, **headers: str) -> list:
        """Collected events with this CC-Action and headers (``CC_Cause="Cancel"`` → CC-Cause)."""
        want = {k.replace("_", "-"): v for k, v in headers.items()}
        return [e for e in self.events
                if (action is None or e.get("CC-Action") == action)
                and all(e.get(k) == v for k, v in want.items())]

    async def wait_event(self, action: str | None = None, timeout: float = 5.0, **headers: str):
        """The first collected event matching (waits for it)."""
        with trio.fail_after(timeout):
            while True:
                found = self.find_events(action, **headers)
                if found:
                    return found[0]
                await self._event_arrived.wait()

    def actions(self, member_uuid: str | None = None) -> list[str]:
        return [e.get("CC-Action") for e in self.events
                if member_uuid is None or e.get("CC-Member-UUID") == member_uuid]

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

    async def bridged_call(self, queue: str = "support@default", timeout: float = 5.0):
        """One caller into ``queue`` that must be bridged; returns after the service settled."""
        record = self.sim.spawn_caller(CallerSpec(queue=queue))
        with trio.fail_after(timeout):
            await record.done.wait()
        assert record.outcome == "bridged", record.outcome
        await self.quiesce()
        return record

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
        if not self.live_channels():
            # every caller has gone, so every member must have been ended with a cause: only
            # Abandoned rows (until discarded) may remain (§3.6)
            for member in core.rows("members"):
                assert member["state"] == S.MEMBER_ABANDONED, member
        assert not self.running.service.members, "a member session outlived its channel"
        assert not self.running.service.offers
        assert not self.live_channels(), "a channel was left up in the simulator"


@contextlib.contextmanager
def _recording_api(envs: list):
    """Log every api/bgapi the simulator runs (for the Env whose switch ran it)."""
    original = sim_api.execute

    def execute(sw, command, args, done, job_uuid=None):
        for env in envs:
            if env.sim.switch is sw:
                env.api_log.append((trio.current_time(), command, args))
        return original(sw, command, args, done, job_uuid=job_uuid)

    sim_api.execute = execute
    try:
        yield
    finally:
        sim_api.execute = original


def _recording_channels(sim: Simulator, channels: dict) -> None:
    switch = sim.switch
    original = switch.new_channel

    def new_channel(uuid, name, **kw):
        ch = original(uuid, name, **kw)
        channels[uuid] = ch
        return ch

    switch.new_channel = new_channel


_ENVS: list = []


@contextlib.asynccontextmanager
async def open_callcenter(conf_xml: str, *, timings: Timings | None = None, **sim_kwargs):
    with _recording_api(_ENVS) if not _ENVS else contextlib.nullcontext():
        async with _open_callcenter(conf_xml, timings=timings, **sim_kwargs) as env:
            yield env


@contextlib.asynccontextmanager
async def _open_callcenter(conf_xml: str, *, timings: Timings | None = None, **sim_kwargs):
    async with trio.open_nursery() as nursery:
        sim = Simulator(timings=timings or Timings.fast(), **sim_kwargs)
        channels: dict = {}
        _recording_channels(sim, channels)
        port = await nursery.start(sim.serve)
        cfg = configmod.load_config("test.xml", text=conf_xml.replace("{ccfast}", CCFAST_BLOCK.format(port=port)))
        # port 0: let the OS choose (tests run in parallel with other listeners)
        cfg.ccfast.outbound_listen = configmod.Address("127.0.0.1", 0)
        cfg.ccfast.control_listen = configmod.Address("127.0.0.1", 0)
        cfg.ccfast.metrics_listen = configmod.Address("127.0.0.1", 0)
        running: Running = await nursery.start(run, cfg)
        sim.dial_to = ("127.0.0.1", running.outbound_port)
        control = InboundClient("127.0.0.1", running.control_port, "secret", reconnect=False, liveness_interval=None)
        await nursery.start(control.run)
        env = Env(sim, running, control, nursery=nursery, channels=channels)
        _ENVS.append(env)
        try:
            yield env
        finally:
            _ENVS.remove(env)
            nursery.cancel_scope.cancel()


# -- small builders and end-of-test steps shared by the service tests ---------------------------

Q = "support@default"


def queue(*params: tuple[str, str], strategy: str = "longest-idle-agent", name: str = Q) -> str:
    body = "".join(f'<param name="{k}" value="{v}"/>' for k, v in params)
    return f'<queue name="{name}"><param name="strategy" value="{strategy}"/>{body}</queue>'


def agent(name: str, contact: str, status: str = "Available", agent_type: str = "callback", **attrs: str) -> str:
    """An XML agent; ``busy_delay_time="5"`` → ``busy-delay-time="5"``. Values are XML-escaped."""
    from xml.sax.saxutils import quoteattr

    extra = "".join(f' {k.replace("_", "-")}={quoteattr(str(v))}' for k, v in attrs.items())
    return (f'<agent name="{name}" type="{agent_type}" contact={quoteattr(contact)} '
            f'status="{status}"{extra}/>')


def tier(agent_name: str, level: int = 1, position: int = 1, queue_name: str = Q) -> str:
    return f'<tier agent="{agent_name}" queue="{queue_name}" level="{level}" position="{position}"/>'


async def finish(env) -> None:
    """Hang up whoever is still up, then the end-of-test invariants."""
    for ch in env.live_channels():
        if ch.role in ("caller", "agent"):
            env.sim.switch.hangup(ch, "NORMAL_CLEARING")
    await env.quiesce()
    env.check_invariants()


async def wait_playing(env, uuid: str, timeout: float = 3.0):
    """The application the member channel is running once it runs one."""
    ch = env.channel(uuid)
    await env.wait_for(lambda: ch.current_app() is not None, timeout)
    return ch.current_app()
