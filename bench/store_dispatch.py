"""Does a slow database slow dispatch? Dispatch latency with 0 ms vs 50 ms of injected DB latency.

The simulator and ccfast run in this process over loopback TCP; the store's writer sleeps
``db_latency`` seconds before every database write (``WriterConfig.db_latency``, the store's test
knob). Dispatch latency is measured as in ``bench.e2e``: the simulator receiving the member's
``execute answer`` → the simulator receiving the agent's ``originate``. The write-behind design
says it must not change: the hot path never awaits the database.
"""

from __future__ import annotations

import functools

import trio

from bench.e2e_sim import Probe, pct
from ccfast import config as configmod
from ccfast import serve
from ccfast.sim import AgentProfile, CallerSpec, Simulator, Timings
from ccfast.store import WriterConfig

AGENTS = 200  # enough that a caller always finds a free agent: the latency is ccfast's


def _conf(port: int) -> str:
    agents = "".join(
        f'<agent name="a{i}@default" type="callback" contact="sim/agent/a{i}" status="Available"/>'
        for i in range(AGENTS)
    )
    tiers = "".join(f'<tier agent="a{i}@default" queue="q@default" level="1" position="{i}"/>' for i in range(AGENTS))
    return (
        '<configuration name="callcenter.conf"><settings/>'
        '<queues><queue name="q@default"><param name="strategy" value="longest-idle-agent"/></queue></queues>'
        f"<agents>{agents}</agents><tiers>{tiers}</tiers>"
        f'<ccfast><boxes><box name="sim" host="127.0.0.1" port="{port}" password="ClueCon"/></boxes></ccfast>'
        "</configuration>"
    )


async def measure(db_latency: float, calls: int, cps: float) -> dict:
    """Dispatch latency percentiles (ms) for ``calls`` callers at ``cps`` with that DB latency."""
    profiles = {f"a{i}": AgentProfile(f"a{i}", talk_time=0.05) for i in range(AGENTS)}
    original = serve.WriterConfig
    serve.WriterConfig = functools.partial(WriterConfig, db_latency=db_latency)
    try:
        async with trio.open_nursery() as nursery:
            sim = Simulator(timings=Timings.fast(), profiles=profiles)
            probe = Probe(sim)
            port = await nursery.start(sim.serve)
            cfg = configmod.load_config("bench.xml", text=_conf(port))
            cfg.ccfast.outbound_listen = configmod.Address("127.0.0.1", 0)
            cfg.ccfast.control_listen = None
            cfg.ccfast.metrics_listen = None
            async with trio.open_nursery() as service_nursery:
                running = await service_nursery.start(serve.run, cfg)
                result = await _drive(sim, probe, running, db_latency, calls, cps)
                running.stop()  # serve.run flushes the journal and returns
            nursery.cancel_scope.cancel()
    finally:
        serve.WriterConfig = original
    return result


async def _drive(sim, probe, running, db_latency: float, calls: int, cps: float) -> dict:
    sim.dial_to = ("127.0.0.1", running.outbound_port)
    records = await sim.run_callers(cps, total=calls, make_spec=lambda i: CallerSpec(queue="q@default"))
    with trio.move_on_after(30):
        for record in records:
            await record.done.wait()
    writer = running.writer
    latencies = [(probe.offer[u] - t) * 1000 for u, t in probe.join.items() if u in probe.offer]
    return {
        "db_latency_ms": db_latency * 1000,
        "calls": calls,
        "offered": len(latencies),
        "bridged": sum(1 for r in records if r.outcome == "bridged"),
        "dispatch_p50_ms": pct(latencies, 50),
        "dispatch_p99_ms": pct(latencies, 99),
        "store_batches": writer.stats.batches,
        "store_backlog_at_end": writer.backlog,
    }


async def run(quick: bool) -> dict:
    calls, cps = (100, 50.0) if quick else (400, 50.0)
    fast = await measure(0.0, calls, cps)
    slow = await measure(0.05, calls, cps)
    return {
        "dispatch_p50_ms_db0": fast["dispatch_p50_ms"], "dispatch_p99_ms_db0": fast["dispatch_p99_ms"],
        "dispatch_p50_ms_db50": slow["dispatch_p50_ms"], "dispatch_p99_ms_db50": slow["dispatch_p99_ms"],
        "dispatch_db0": fast, "dispatch_db50": slow,
    }
