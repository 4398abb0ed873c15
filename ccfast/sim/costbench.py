"""Deterministic CPU cost of the simulator's own work, without a dispatcher process.

    python -m ccfast.sim.costbench [--calls 3000] [--commands 20000]

``bench.e2e`` measures the simulator next to ccfast, where its cost per call moves ±10 % with
ccfast's latency (batching) and whatever else the machine runs. This drives the same code paths
in one process and prints CPU microseconds per unit, for A/B comparisons of simulator changes:

* ``call``: one call's switch flows, as ccfast drives them — a caller (loopback pair) whose member
  channel runs answer and a playback, an agent leg originated (``sim/agent``, cc_side=agent),
  ``uuid_bridge``, talk, hangups — with two listeners shaped like ccfast's: a box link (5 event
  types, filters ``variable_cc_side agent`` / ``Event-Name BACKGROUND_JOB``) and a member socket
  (``myevents`` with four ``Event-Name`` filters). No sockets: events are rendered and counted.
* ``sendevent``: one ``sendevent CUSTOM`` of ~6.6 KB (a CC event with a channel snapshot) to a live
  channel, from the bytes to the §7.2 delivery step; ``api``: one ``api uuid_setvar_multi``.
"""

from __future__ import annotations

import argparse
import gc
import time

import trio

from .profiles import AgentProfile, ProfileTable
from .server import EslConnection
from .switch import CallerSpec, ExecMsg, Switch, Timings

BOX_EVENTS = {"BACKGROUND_JOB", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
              "CHANNEL_EXECUTE_COMPLETE"}
BOX_FILTERS = [("variable_cc_side", "agent", None), ("Event-Name", "BACKGROUND_JOB", None)]
MEMBER_FILTERS = [("Event-Name", n, None) for n in ("CHANNEL_HANGUP", "DTMF", "CHANNEL_BRIDGE",
                                                     "CHANNEL_EXECUTE_COMPLETE")]


class _Stats:
    stats = {"events_filtered": 0}


class Listener:
    """The listener interface of :class:`~ccfast.sim.server.EslConnection` (its own checks),
    counting bytes."""

    closed = False
    fmt = "plain"
    wants = EslConnection.wants
    wants_own = EslConnection.wants_own
    passes_chan = EslConnection.passes_chan
    _passes = EslConnection._passes

    def __init__(self, names: set[str], filters: list, own: bool = False) -> None:
        self.names, self.filters = names, filters
        self.my_uuid = "own" if own else None
        self.all_events = self.all_custom = False
        self.subclasses: set[str] = set()
        self._fsplit = None
        self.sim = _Stats()
        self.bytes = 0

    def push(self, data: bytes, event: bool = False) -> None:
        self.bytes += len(data)

    def on_channel_gone(self, ch) -> None:
        pass


async def calls(n: int) -> tuple[float, int]:
    """CPU µs per call of the switch flows, and bytes rendered per call."""
    sw = Switch(timings=Timings.fast(), seed=1,
                profiles=ProfileTable(default=AgentProfile("bench", talk_time=0.005)))
    box = Listener(BOX_EVENTS, BOX_FILTERS)
    sw.listeners.append(box)
    members = []
    spec = CallerSpec(queue="q@default")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sw.sched.run)
        c0 = time.process_time()
        batch = []
        for i in range(n):
            rec = sw.spawn_caller(spec)
            m = sw.channels[rec.member_uuid]
            mem = Listener(set(), MEMBER_FILTERS, own=True)
            members.append(mem)
            m.listeners.append(mem)
            m.in_socket = True
            m.set_vars([("cc_queue", "q@default"), ("cc_member_uuid", rec.member_uuid), ("cc_side", "member")])
            sw.run_app_now(m, ExecMsg("answer"))
            sw.run_app_now(m, ExecMsg("playback", "local_stream://moh"))
            agent = "%08x-0000-4000-8000-%012x" % (i, i)
            sw.originate("{origination_uuid=%s,cc_side=agent,cc_member_session_uuid=%s,cc_agent=a1,"
                         "ignore_early_media=true,originate_timeout=10}sim/agent/a1 &park()"
                         % (agent, rec.member_uuid), "job-%d" % i, lambda text: None)
            batch.append((rec.member_uuid, agent))
            if len(batch) == 20:      # 20 calls per scheduler turn or so, as at ~1,000 calls/s
                await trio.sleep(0.003)
                for mu, au in batch:
                    a, mm = sw.get(au), sw.get(mu)
                    if a is not None and mm is not None:
                        sw.uuid_bridge(mm, a)
                batch = []
        while sw.channels:
            await trio.sleep(0.01)
        c1 = time.process_time()
        nursery.cancel_scope.cancel()
    total = box.bytes + sum(m.bytes for m in members)
    return 1e6 * (c1 - c0) / n, total // n


async def commands(n: int) -> dict[str, float]:
    """CPU µs per command, from its bytes to its last step."""
    from .core import Simulator

    sim = Simulator(timings=Timings.fast(), seed=1)
    sw = sim.switch
    out = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sw.sched.run)
        rec = sw.spawn_caller(CallerSpec(queue="q@default"))
        uuid = rec.member_uuid
        conn = EslConnection(sim, None, peer="costbench")
        conn.authed = True
        conn.push = lambda data, event=False: None
        snapshot = "".join(f"variable_v{i}: value number {i} of the snapshot\n" for i in range(140))
        frames = {
            "sendevent": ("sendevent CUSTOM\nEvent-Subclass: callcenter::info\nCC-Queue: q01@default\n"
                          "CC-Action: member-queue-start\n" + snapshot + f"Unique-ID: {uuid}\n\n").encode(),
            "api": f"api uuid_setvar_multi {uuid} cc_a=1;cc_b=2;cc_c=3\n\n".encode(),
        }
        for label, data in frames.items():
            c0 = time.process_time()
            for i in range(n):
                conn.proto.feed(data)
                while (cmd := conn.proto.next_command()) is not None:
                    conn.dispatch(cmd)
                if i % 200 == 199:
                    await trio.sleep(0)     # the queued delivery steps run
            await trio.sleep(0.01)
            out[label] = 1e6 * (time.process_time() - c0) / n
        nursery.cancel_scope.cancel()
    return out


async def main(args) -> None:
    gc.disable()    # as bench.e2e_sim runs its workloads
    per_call, rendered = await calls(args.calls)
    print(f"call: {per_call:.1f} us CPU (switch flows, events: {rendered} bytes rendered per call)")
    for label, us in (await commands(args.commands)).items():
        print(f"{label}: {us:.2f} us CPU per command")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--commands", type=int, default=20000)
    trio.run(main, p.parse_args())
