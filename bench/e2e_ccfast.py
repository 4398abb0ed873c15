"""The ccfast side of ``bench.e2e``: ``ccfast.serve.run`` in its own process.

    python -m bench.e2e_ccfast CONF_XML [--dispatcher core|oracle]

Loads the configuration (its <ccfast> block names the simulator's box), listens for callers and
control on OS-chosen loopback ports, prints ``{"outbound_port", "control_port", "pid"}`` on stdout
once serving, and runs until SIGTERM/SIGINT. On exit it prints a JSON line with the oracle mode's
counters (passes, mismatches, SQL seconds) when that mode ran.

``--dispatcher`` sets ccfast's ``dispatcher`` setting (``serve`` builds the core with
``oracle_mode.make_dispatch_core``); nothing else differs between the modes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sys
import time

import trio

from bench.e2e_sim import raise_nofile
from ccfast import config as configmod
from ccfast import oracle_mode, serve


async def main(args) -> None:
    raise_nofile()
    cfg = configmod.load_config(args.conf)
    cfg.ccfast.dispatcher = args.dispatcher
    cfg.ccfast.outbound_listen = configmod.Address("127.0.0.1", 0)
    cfg.ccfast.control_listen = configmod.Address("127.0.0.1", 0)
    cfg.ccfast.metrics_listen = None
    if os.environ.get("CCFAST_GC"):  # A/B of serve's GC thresholds, e.g. CCFAST_GC=5000,20,100
        serve.GC_THRESHOLD = tuple(int(x) for x in os.environ["CCFAST_GC"].split(","))
    if os.environ.get("CCFAST_STORE_BATCH_MS"):  # A/B of the write-behind window
        cfg.ccfast.store_batch_ms = int(os.environ["CCFAST_STORE_BATCH_MS"])
    async with trio.open_nursery() as diagnostics:
        if os.environ.get("CCFAST_LAG"):  # diagnose stalls: trio loop lag over 20 ms, with gc activity
            diagnostics.start_soon(_lag_monitor)
        await _serve_until_signal(cfg)
        diagnostics.cancel_scope.cancel()


async def _serve_until_signal(cfg) -> None:
    async with trio.open_nursery() as nursery:
        running = await nursery.start(serve.run, cfg)
        inside: list[float] = []  # ccfast's own view: member ready -> originate written (s)
        observe = running.service.on_dispatch_latency

        def on_dispatch_latency(seconds: float, trigger: str) -> None:
            if trigger == "member" and len(inside) < 1_000_000:
                inside.append(seconds)
            if observe is not None:
                observe(seconds, trigger)

        running.service.on_dispatch_latency = on_dispatch_latency
        if os.environ.get("CCFAST_NO_METRICS"):  # A/B: what the hot path's metric updates cost
            svc = running.service
            svc.events_sink = svc.on_dispatch_latency = svc.on_member_hung_up = None
            svc.dispatcher.on_pass_time = None
            for box in svc.boxes.values():
                box.on_command = None
        print(json.dumps({"outbound_port": running.outbound_port, "control_port": running.control_port,
                          "pid": os.getpid()}), flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        core = running.service.core
        stats = dict(running.service.stats)
        if isinstance(core, oracle_mode.OracleDispatchCore):
            stats.update(passes=core.passes, mismatches=core.mismatches, sql_seconds=round(core.sql_seconds, 3),
                         mirror_seconds=round(core.mirror_seconds, 3), last_mismatch=core.last_mismatch)
        else:
            stats["passes"] = running.service.dispatcher.passes
        for box in running.service.boxes.values():  # inbound link traffic
            client, link = box.client, box.client._link
            stats["box_events_received"] = client.events.received
            stats["box_commands"] = client.commands_sent + (link.commands if link else 0)
            stats["box_writes"] = client.writes + (link.writes if link else 0)
        usage = resource.getrusage(resource.RUSAGE_SELF)  # the whole run, start-up included
        stats["cpu_user_s"], stats["cpu_sys_s"] = round(usage.ru_utime, 3), round(usage.ru_stime, 3)
        stats["voluntary_switches"] = usage.ru_nvcsw
        if inside:
            inside.sort()
            stats["inside_dispatch_p50_ms"] = round(1000 * inside[len(inside) // 2], 3)
            stats["inside_dispatch_p99_ms"] = round(1000 * inside[min(len(inside) - 1, len(inside) * 99 // 100)], 3)
        print(json.dumps({"stats": stats}), flush=True)
        running.stop()  # as `ccfast serve` on SIGTERM: the writer flushes, then serve.run returns


async def _lag_monitor() -> None:
    import gc

    def on_gc(phase, info):
        if phase == "start":
            on_gc.t0 = time.perf_counter()
        elif time.perf_counter() - on_gc.t0 > 0.01:
            print(f"gc gen{info['generation']} {1000 * (time.perf_counter() - on_gc.t0):.1f} ms "
                  f"collected {info['collected']}", file=sys.stderr, flush=True)
    on_gc.t0 = 0.0
    gc.callbacks.append(on_gc)
    totals = {"n": 0, "s": 0.0}

    def tally(phase, info):
        if phase == "start":
            tally.t0 = time.perf_counter()
        else:
            totals["n"] += 1
            totals["s"] += time.perf_counter() - tally.t0
            if totals["n"] % 200 == 0:
                print(f"gc total {totals['n']} collections {1000 * totals['s']:.0f} ms", file=sys.stderr, flush=True)
    tally.t0 = 0.0
    gc.callbacks.append(tally)
    steps = _SlowSteps()
    trio.lowlevel.add_instrument(steps)
    try:
        while True:
            t0 = time.perf_counter()
            await trio.sleep(0.005)
            lag = time.perf_counter() - t0 - 0.005
            if lag > 0.02:
                print(f"lag {1000 * lag:.1f} ms", file=sys.stderr, flush=True)
    finally:
        print(f"gc {totals['n']} collections {1000 * totals['s']:.0f} ms; io waits {steps.io_waits}; task steps {dict(steps.steps.most_common(12))}", file=sys.stderr, flush=True)


class _SlowSteps(trio.abc.Instrument):
    """Names the task of every scheduler step over 10 ms (what a lag was spent on)."""

    t0 = io0 = 0.0

    def __init__(self) -> None:
        import collections
        self.steps = collections.Counter()  # scheduler steps per task name
        self.io_waits = 0

    def before_task_step(self, task) -> None:
        self.t0 = time.perf_counter()
        self.steps[task.name] += 1

    def after_task_step(self, task) -> None:
        took = time.perf_counter() - self.t0
        if took > 0.01:
            print(f"slow step {1000 * took:.1f} ms in {task.name}", file=sys.stderr, flush=True)

    def before_io_wait(self, timeout) -> None:
        self.io_waits += 1
        self.io0 = time.perf_counter()

    def after_io_wait(self, timeout) -> None:
        took = time.perf_counter() - self.io0
        if took > timeout + 0.01:
            print(f"slow io wait {1000 * took:.1f} ms (timeout {1000 * timeout:.1f})", file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("conf")
    p.add_argument("--dispatcher", choices=("core", "oracle"), default="core")
    return p.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    profile_to = os.environ.get("CCFAST_CPROFILE")  # a path: deterministic profile (call counts per call)
    if profile_to:
        import cProfile

        cProfile.run("trio.run(main, parse_args())", profile_to)
    else:
        trio.run(main, parse_args())
