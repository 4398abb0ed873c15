"""Several FreeSWITCH boxes: offers go out on the member's own box; a dropped link is reconciled."""

from __future__ import annotations

import trio

from ccfast import config as configmod
from ccfast.esl.inbound import InboundClient
from ccfast.serve import run
from ccfast.sim import AgentProfile, CallerSpec, Simulator, Timings

QUEUE = '<queue name="support@default"><param name="strategy" value="longest-idle-agent"/></queue>'
AGENTS = "".join(
    f'<agent name="{n}@default" type="callback" contact="sim/agent/a{n}" status="Available"/>' for n in (1, 2)
)
TIERS = "".join(f'<tier agent="{n}@default" queue="support@default" level="1" position="{n}"/>' for n in (1, 2))


def two_box_conf(port1: int, port2: int) -> str:
    return (
        '<configuration name="callcenter.conf"><settings/>'
        f"<queues>{QUEUE}</queues><agents>{AGENTS}</agents><tiers>{TIERS}</tiers>"
        "<ccfast><settings><param name=\"metrics-listen\" value=\"\"/></settings><boxes>"
        f'<box name="fs1" host="127.0.0.1" port="{port1}" password="ClueCon"/>'
        f'<box name="fs2" host="127.0.0.1" port="{port2}" password="ClueCon"/>'
        "</boxes></ccfast></configuration>"
    )


async def start_one_box(nursery: trio.Nursery, profiles: dict):
    """One simulated box with agent 1@default, and ccfast connected to it: (sim, running)."""
    sim = Simulator(timings=Timings.fast(), profiles=profiles)
    port = await nursery.start(sim.serve)
    sim.switch.global_vars["core_uuid"] = sim.switch.host.core_uuid
    xml = two_box_conf(port, port).replace(
        f'<box name="fs2" host="127.0.0.1" port="{port}" password="ClueCon"/>', ""
    ).replace(TIERS, TIERS.split("<tier agent=\"2")[0])
    cfg = configmod.load_config("one.xml", text=xml)
    cfg.ccfast.outbound_listen = configmod.Address("127.0.0.1", 0)
    cfg.ccfast.control_listen = None
    running = await nursery.start(run, cfg)
    sim.dial_to = ("127.0.0.1", running.outbound_port)
    return sim, running


async def test_each_caller_is_served_on_its_own_box():
    profiles = {"a1": AgentProfile("a1", talk_time=0.1), "a2": AgentProfile("a2", talk_time=0.1)}
    async with trio.open_nursery() as nursery:
        sims = [Simulator(timings=Timings.fast(), profiles=profiles, hostname=f"fs{i}") for i in (1, 2)]
        ports = [await nursery.start(sim.serve) for sim in sims]
        for sim in sims:
            sim.switch.global_vars["core_uuid"] = sim.switch.host.core_uuid
        cfg = configmod.load_config("two.xml", text=two_box_conf(*ports))
        cfg.ccfast.outbound_listen = configmod.Address("127.0.0.1", 0)
        cfg.ccfast.control_listen = None
        running = await nursery.start(run, cfg)
        for sim in sims:
            sim.dial_to = ("127.0.0.1", running.outbound_port)
        records = [sims[0].spawn_caller(CallerSpec()), sims[1].spawn_caller(CallerSpec(cid_number="5552000"))]
        with trio.fail_after(5):
            for record in records:
                await record.done.wait()
        assert [r.outcome for r in records] == ["bridged", "bridged"]
        # each box originated exactly the leg of its own caller
        assert [sim.switch.stats["originates"] for sim in sims] == [1, 1]
        nursery.cancel_scope.cancel()


async def test_link_drop_during_a_bridged_call_is_reconciled():
    profiles = {"a1": AgentProfile("a1", talk_time=0.6)}
    async with trio.open_nursery() as nursery:
        sim, running = await start_one_box(nursery, profiles)
        record = sim.spawn_caller(CallerSpec())
        service = running.service
        with trio.fail_after(3):
            while record.bridged_at is None:
                await trio.sleep(0.01)
        # the inbound link drops while the call is up; the agent hangs up before it is back
        sim.refuse_connections = True
        assert sim.drop_connections(inbound=True) >= 1
        with trio.fail_after(5):
            await record.done.wait()  # the agent hung up while ccfast could not see it
        assert service.offers, "the bridged offer must still be open while the link is down"
        sim.refuse_connections = False
        with trio.fail_after(15):
            while service.offers:
                await trio.sleep(0.02)
        agent = service.core.rows("agents")[0]
        assert agent["state"] == "Waiting" and agent["calls_answered"] == 1
        assert service.core.rows("members") == []
        nursery.cancel_scope.cancel()


async def test_leg_ringing_when_the_link_drops_is_hung_up_after_reconnect():
    profiles = {"a1": AgentProfile("a1", outcome="no_answer")}
    async with trio.open_nursery() as nursery:
        sim, running = await start_one_box(nursery, profiles)
        sim.spawn_caller(CallerSpec())
        with trio.fail_after(3):
            while not sim.switch.legs:
                await trio.sleep(0.01)
        leg = next(iter(sim.switch.legs.values()))
        sim.refuse_connections = True
        sim.drop_connections(inbound=True)
        await trio.sleep(0.3)
        # the lost offer was failed without penalty; the next one waits for the link
        agent = running.service.core.rows("agents")[0]
        assert agent["no_answer_count"] == 0 and agent["ready_time"] == 0
        assert len(sim.switch.legs) == 1, "no originate can be sent while the link is down"
        sim.refuse_connections = False
        with trio.fail_after(10):
            await leg.done.wait()  # the orphaned leg is killed once the link is back
        assert leg.cause == "ORIGINATOR_CANCEL"
        nursery.cancel_scope.cancel()


async def test_leg_answered_while_the_link_is_down_is_hung_up_after_reconnect():
    """The link drops while the originate is pending and the agent answers before it is back:
    the answered leg must not stay up (no zombie agent call), the agent must not stay Receiving."""
    profiles = {"a1": AgentProfile("a1", ring_time=0.3, talk_time=0.2)}
    async with trio.open_nursery() as nursery:
        sim, running = await start_one_box(nursery, profiles)
        record = sim.spawn_caller(CallerSpec(patience=1.5))
        with trio.fail_after(3):
            while not sim.switch.legs:
                await trio.sleep(0.005)
        leg = next(iter(sim.switch.legs.values()))
        await trio.sleep(0.05)
        sim.refuse_connections = True
        sim.drop_connections(inbound=True)
        with trio.fail_after(3):
            while leg.answered_at is None:  # the agent answers while ccfast cannot see it
                await trio.sleep(0.01)
        await trio.sleep(0.3)
        sim.refuse_connections = False
        with trio.fail_after(10):
            await leg.done.wait()  # killed once the link is back, not left talking to nobody
            await record.done.wait()  # the caller is then offered again (and served) or gives up
            while running.service.offers or running.service.members:
                await trio.sleep(0.02)
        assert leg.cause == "ORIGINATOR_CANCEL" and leg.bridged_at is None
        agent = running.service.core.rows("agents")[0]
        assert agent["state"] == "Waiting"
        with trio.move_on_after(3):  # hang-ups propagate in a few ms
            while [c for c in sim.switch.channels.values() if c.alive]:
                await trio.sleep(0.01)
        left = [(c.name, c.role, c.uuid == leg.uuid) for c in sim.switch.channels.values() if c.alive]
        assert not left
        nursery.cancel_scope.cancel()


async def test_a_box_that_is_down_at_start_does_not_keep_the_others_waiting(monkeypatch):
    """fs2 does not answer: ccfast opens its listeners after START_WAIT and serves fs1's callers;
    fs2 joins when it comes up (its Core-UUID learned then)."""
    from ccfast.service import links

    monkeypatch.setattr(links, "START_WAIT", 0.3)
    profiles = {"a1": AgentProfile("a1", talk_time=0.1), "a2": AgentProfile("a2", talk_time=0.1)}
    async with trio.open_nursery() as nursery:
        with trio.socket.socket() as placeholder:  # a port nobody listens on yet
            await placeholder.bind(("127.0.0.1", 0))
            port2 = placeholder.getsockname()[1]
        sims = [Simulator(timings=Timings.fast(), profiles=profiles, hostname=f"fs{i}", port=p)
                for i, p in ((1, 0), (2, port2))]
        port1 = await nursery.start(sims[0].serve)
        for sim in sims:
            sim.switch.global_vars["core_uuid"] = sim.switch.host.core_uuid
        cfg = configmod.load_config("two.xml", text=two_box_conf(port1, port2))
        cfg.ccfast.outbound_listen = configmod.Address("127.0.0.1", 0)
        cfg.ccfast.control_listen = None
        with trio.fail_after(3):
            running = await nursery.start(run, cfg)
        boxes = running.service.boxes
        assert boxes["fs1"].up and not boxes["fs2"].up
        sims[0].dial_to = ("127.0.0.1", running.outbound_port)
        record = sims[0].spawn_caller(CallerSpec())
        with trio.fail_after(5):
            await record.done.wait()
        assert record.outcome == "bridged"
        # fs2 comes up on its configured port: the link connects and learns its identity
        await nursery.start(sims[1].serve)
        with trio.fail_after(5):
            while boxes["fs2"].core_uuid != sims[1].switch.host.core_uuid:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
