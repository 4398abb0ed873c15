"""The simulator side of ``bench.e2e``: one simulated FreeSWITCH box in its own process.

    python -m bench.e2e_sim --queues 20 --agents-per-queue 100 --talk 0.2

prints ``{"esl_port": P}`` on stdout once its inbound ESL port listens, then reads ONE job as a JSON
line on stdin (``{"outbound_port", "control_port", "control_password", "pid", "workload", ...}``:
where ccfast listens for callers, its control port, and the ccfast process id to sample), runs the
workload, prints ``{"result": {...}}`` and exits. The orchestrator (``bench.e2e``) starts ccfast
between the two steps, against this box.

What is measured here, with this process's trio clock:
  * join = the simulator received the member's ``sendmsg execute answer`` — ccfast's last command
    before it joins the member to the queue (member_join follows the +OK reply). Measuring from here
    includes one loopback round trip, so the dispatch latency is never understated;
  * offer = the simulator received the ``originate`` for that member (``cc_member_session_uuid``);
  * bridge = ``CallRecord.bridged_at``; a call is complete when it was bridged and has ended;
  * "joined with a free agent": at join time fewer agents of the caller's queue were busy (an
    originated leg alive, or ended less than 1.0 s before: mod_callcenter's wrap-up test is in whole
    seconds) than the queue has;
  * ccfast CPU (utime+stime) and RSS from /proc/<pid>/stat|status, and this process's own CPU.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import math
import os
import re
import resource
import sys
import time

import trio

from ccfast.esl.inbound import InboundClient
from ccfast.sim import AgentProfile, CallerSpec, Simulator, Timings
from ccfast.sim.server import EslConnection

CLK_TCK = os.sysconf("SC_CLK_TCK")
_SESSION = re.compile(r"cc_member_session_uuid=([0-9a-fA-F-]+)")
_AGENT = re.compile(r"cc_agent=([^,}]+)")


def raise_nofile(limit: int = 65536) -> int:
    """Callers are one TCP connection each: deep queues need tens of thousands of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (limit, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_sample(pid: int) -> dict:
    """CPU seconds (user+system) and RSS bytes of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return {"cpu_s": cpu, "rss_bytes": rss}


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def own_sys() -> float:
    """This process's kernel CPU seconds (socket syscalls, epoll)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no data."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000.0, 3)


class Probe:
    """Join and originate times, hooked into the simulator of this process."""

    def __init__(self, sim: Simulator) -> None:
        self.join: dict[str, float] = {}  # member channel uuid -> time of `execute answer`
        self.offer: dict[str, float] = {}  # member channel uuid -> first originate received
        self.offers_all: list[tuple[float, str, str]] = []  # (time, member channel, agent)
        probe = self
        original_sendmsg = EslConnection._do_sendmsg

        def _do_sendmsg(conn, cmd):   # (wrapping dispatch cost a Python call on every command)
            if conn.outbound and cmd.header("execute-app-name") == "answer":
                probe.join.setdefault(conn.channel.uuid, trio.current_time())
            original_sendmsg(conn, cmd)

        EslConnection._do_sendmsg = _do_sendmsg
        switch = sim.switch
        original_originate = switch.originate

        def originate(arg, job_uuid, done):
            now = trio.current_time()
            m = _SESSION.search(arg)
            a = _AGENT.search(arg)
            if m:
                probe.offer.setdefault(m.group(1), now)
                probe.offers_all.append((now, m.group(1), a.group(1) if a else ""))
            return original_originate(arg, job_uuid, done)

        switch.originate = originate


def busy_index(sim: Simulator, agent_queue: dict[str, str], free_after: float) -> dict[str, list]:
    """Per queue, sorted (start, end) busy intervals of its agents' originated legs."""
    out: dict[str, list] = {}
    for leg in sim.switch.legs.values():
        agent = leg.endpoint.rsplit("/", 1)[-1]
        q = agent_queue.get(agent)
        if q is None:
            continue
        end = (leg.ended_at + free_after) if leg.ended_at is not None else math.inf
        out.setdefault(q, []).append((leg.created, end))
    return out


def busy_at(intervals: list, t: float) -> int:
    return sum(1 for s, e in intervals if s <= t < e)


def summarize(sim: Simulator, probe: Probe, records: list, agent_queue: dict[str, str], per_queue: int,
              check_free: bool = True) -> dict:
    """Latency percentiles and outcome counts over the given caller records."""
    intervals = busy_index(sim, agent_queue, free_after=1.0) if check_free else {}
    starts = {q: sorted(iv) for q, iv in intervals.items()}
    dispatch, join_bridge = [], []
    not_free = completed = errors = unjoined = 0
    for rec in records:
        sess = rec.member_uuid
        tj = probe.join.get(sess)
        if rec.bridged_at is not None and rec.ended_at is not None:
            completed += 1
        elif rec.ended_at is not None or rec.socket_failed:
            errors += 1  # ended without a bridge (nobody abandons in these workloads)
        if tj is None:
            unjoined += 1
            continue
        to = probe.offer.get(sess)
        if check_free:
            iv = starts.get(rec.queue, [])
            lo, hi = bisect.bisect_left(iv, (tj - 30.0,)), bisect.bisect_right(iv, (tj, math.inf))
            if sum(1 for s, e in iv[lo:hi] if e > tj) >= per_queue:
                not_free += 1
                continue
        if to is not None:
            dispatch.append(to - tj)
        if rec.bridged_at is not None:
            join_bridge.append(rec.bridged_at - tj)
    return {
        "callers": len(records), "completed": completed, "errors": errors,
        "never_joined": unjoined, "joined_without_free_agent": not_free,
        "dispatch_samples": len(dispatch),
        "dispatch_p50_ms": ms(pct(dispatch, 50)), "dispatch_p99_ms": ms(pct(dispatch, 99)),
        "dispatch_max_ms": ms(max(dispatch) if dispatch else None),
        "join_bridge_p50_ms": ms(pct(join_bridge, 50)), "join_bridge_p99_ms": ms(pct(join_bridge, 99)),
    }


async def wait_done(records: list, timeout: float) -> bool:
    with trio.move_on_after(timeout):
        for rec in records:
            await rec.done.wait()
        return True
    return False


def caller_specs(args):
    """make_spec for run_callers: callers round-robin over the queues. One spec per queue, shared
    by its callers (the simulator only reads a spec)."""
    specs = [CallerSpec(queue=queue_name(q)) for q in range(args.queues)]
    n = len(specs)
    return lambda i: specs[i % n]


def queue_name(i: int) -> str:
    return f"q{i:02d}@default"


def agent_name(q: int, k: int) -> str:
    return f"a{q:02d}_{k:04d}"


async def steady(sim, probe, job, args, agent_queue) -> dict:
    pid = job["pid"]
    cps, duration = job["cps"], job["duration"]
    before, sim_cpu0, sys0, t0 = proc_sample(pid), own_cpu(), own_sys(), trio.current_time()
    records = await sim.run_callers(cps, duration=duration, batch_interval=job.get("batch_interval", 0.01),
                                    make_spec=caller_specs(args))
    spawn_s = trio.current_time() - t0
    finished = await wait_done(records, timeout=job.get("drain_timeout", 15.0))
    after, wall = proc_sample(pid), trio.current_time() - t0
    sim_cpu, sim_sys = own_cpu() - sim_cpu0, own_sys() - sys0   # before summarize (measuring, not simulating)
    out = summarize(sim, probe, records, agent_queue, args.agents_per_queue)
    cpu = after["cpu_s"] - before["cpu_s"]
    out.update({
        "offered_cps": cps, "achieved_cps": round(len(records) / spawn_s, 1), "all_finished": finished,
        "ccfast_cpu_s": round(cpu, 3), "ccfast_cpu_ms_per_call": round(1000 * cpu / max(1, out["completed"]), 4),
        "ccfast_cpu_util": round(cpu / wall, 3), "ccfast_rss_bytes": after["rss_bytes"],
        "sim_cpu_s": round(sim_cpu, 3), "sim_cpu_util": round(sim_cpu / wall, 3),
        "sim_cpu_ms_per_call": round(1000 * sim_cpu / max(1, len(records)), 4),
        "sim_sys_cpu_s": round(sim_sys, 3), "sim_rss_bytes": proc_sample(os.getpid())["rss_bytes"],
        "wall_s": round(wall, 3),
    })
    return out


async def burst(sim, probe, job, args, agent_queue) -> dict:
    """``job['callers']`` callers spawned within one second onto as many free agents."""
    pid = job["pid"]
    n = job["callers"]
    before, sim_cpu0, t0 = proc_sample(pid), own_cpu(), trio.current_time()
    records = await sim.run_callers(float(n), total=n, batch_interval=0.005,
                                    make_spec=caller_specs(args))
    spawn_s = trio.current_time() - t0
    finished = await wait_done(records, timeout=job.get("drain_timeout", 30.0))
    after, wall = proc_sample(pid), trio.current_time() - t0
    out = summarize(sim, probe, records, agent_queue, args.agents_per_queue)
    cpu = after["cpu_s"] - before["cpu_s"]
    out.update({"spawn_s": round(spawn_s, 3), "all_finished": finished, "ccfast_cpu_s": round(cpu, 3),
                "ccfast_rss_bytes": after["rss_bytes"], "sim_cpu_s": round(own_cpu() - sim_cpu0, 3),
                "wall_s": round(wall, 3)})
    return out


async def deep(sim, probe, job, args, agent_queue) -> dict:
    """Fill the queues with waiting callers (agents logged out), then free agents one by one."""
    pid = job["pid"]
    n, frees = job["callers"], job["frees"]
    base = proc_sample(pid)
    t0 = trio.current_time()
    records = await sim.run_callers(job.get("fill_cps", 1000.0), total=n, batch_interval=0.01,
                                    make_spec=caller_specs(args))
    # until every caller has joined (ccfast answered it), or the fill time runs out
    with trio.move_on_after(job.get("fill_timeout", 300.0)):
        while sum(1 for r in records if r.member_uuid in probe.join) < n:
            await trio.sleep(0.1)
    joined = sum(1 for r in records if r.member_uuid in probe.join)
    fill_s = trio.current_time() - t0
    await trio.sleep(1.0)  # settle: write-behind, allocator
    full = proc_sample(pid)
    latencies, timeouts = [], 0
    async with trio.open_nursery() as nursery:
        control = InboundClient("127.0.0.1", job["control_port"], job["control_password"], reconnect=False,
                                liveness_interval=None)
        await nursery.start(control.run)
        for k in range(frees):
            agent = agent_name(k % args.queues, k // args.queues)
            seen = len(probe.offers_all)
            sent = trio.current_time()
            await control.api("callcenter_config", f"agent set status {agent} Available")
            got = None
            with trio.move_on_after(job.get("offer_timeout", 60.0)):
                while got is None:
                    for t, _member, a in probe.offers_all[seen:]:
                        if a == agent:
                            got = t
                            break
                    else:
                        await trio.sleep(0.0005)
            if got is None:
                timeouts += 1
            else:
                latencies.append(got - sent)
        nursery.cancel_scope.cancel()
    waiting = max(1, joined)
    return {
        "callers": n, "joined": joined, "fill_s": round(fill_s, 2), "frees": frees, "offer_timeouts": timeouts,
        "next_offer_p50_ms": ms(pct(latencies, 50)), "next_offer_p99_ms": ms(pct(latencies, 99)),
        "next_offer_max_ms": ms(max(latencies) if latencies else None),
        "rss_before_bytes": base["rss_bytes"], "rss_full_bytes": full["rss_bytes"],
        "rss_bytes_per_waiting_member": round((full["rss_bytes"] - base["rss_bytes"]) / waiting, 1),
        "ccfast_cpu_fill_s": round(full["cpu_s"] - base["cpu_s"], 3),
    }


WORKLOADS = {"steady": steady, "burst": burst, "deep": deep}

PROFILE_ENV = "CCFAST_SIM_PROFILE"


def start_self_profile():
    """With ``CCFAST_SIM_PROFILE=<path>`` set, py-spy records this process (raw, 250 Hz) during the
    workload: ``CCFAST_SIM_PROFILE=/tmp/sim.txt python -m bench.e2e --step steady:300 --modes core``;
    ``CCFAST_SIM_PROFILE_ARGS`` adds py-spy options (``--native``, ``--rate 1000``)."""
    path = os.environ.get(PROFILE_ENV)
    if not path:
        return None
    import subprocess

    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    extra = os.environ.get(PROFILE_ENV + "_ARGS", "").split()   # e.g. "--native --rate 1000"
    if "--rate" not in extra:
        extra += ["--rate", "250"]
    if "--native" not in extra:     # py-spy cannot read native stacks without pausing the process
        extra.append("--nonblocking")
    with open(path + ".log", "w") as log:   # py-spy's own messages
        proc = subprocess.Popen([spy, "record", "--pid", str(os.getpid()), "--format", "raw", *extra, "-o", path],
                                stdout=subprocess.DEVNULL, stderr=log)
    time.sleep(1.0)  # py-spy attaches
    return proc


def stop_self_profile(proc) -> None:
    if proc is None:
        return
    import signal

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except Exception:
        proc.kill()


GC_EVERY_S = 15.0


async def periodic_gc() -> None:
    while True:
        await trio.sleep(GC_EVERY_S)
        gc.collect()


class GcClock:
    """Time spent in the cyclic garbage collector (gc.callbacks)."""

    def __init__(self) -> None:
        import gc

        self.total = 0.0
        self.max_pause = 0.0
        self.collections = 0
        self.by_generation = [0, 0, 0]
        self._t0 = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase, info) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            pause = time.perf_counter() - self._t0
            self.total += pause
            self.max_pause = max(self.max_pause, pause)
            self.collections += 1
            self.by_generation[info["generation"]] += 1


async def main(args) -> None:
    raise_nofile()
    gc_clock = GcClock()
    profile = AgentProfile("bench", talk_time=args.talk, ring_time=args.ring)
    timings = Timings.fast()
    timings.first_command_timeout = 600.0  # a stalled dispatcher must show as latency, not lost calls
    timings.playback_default = 3600.0
    sim = Simulator(timings=timings, default_profile=profile, seed=1, max_lag=args.max_lag,
                    timer_resolution=args.timer_resolution, io_block=args.io_block)
    probe = Probe(sim)
    agent_queue = {agent_name(q, k): queue_name(q) for q in range(args.queues) for k in range(args.agents_per_queue)}
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        print(json.dumps({"esl_port": port}), flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        job = json.loads(line)
        sim.dial_to = ("127.0.0.1", job["outbound_port"])
        # the set-up's objects (agents, queues) are never garbage: frozen out of the collector.
        # During the workload the cyclic collector is off (young collections cost ~13 ms each at
        # 800 calls/s and a full one 0.3 s: latency spikes measured as dispatch latency); nearly
        # everything is freed by reference counting (RSS after a 3 s step at 800/s is the same),
        # and a full collection runs every GC_EVERY_S for long workloads.
        gc.collect()
        gc.freeze()
        mode = os.environ.get("CCFAST_SIM_GC", "off")
        if mode == "tuned":
            gc.set_threshold(20_000, 20, 50)
        elif mode == "off":
            gc.disable()
            nursery.start_soon(periodic_gc)
        # ccfast's inbound link is up before the job is sent; give it its subscriptions
        with trio.move_on_after(10):
            while not sim.inbound_connections():
                await trio.sleep(0.01)
        started = time.perf_counter()
        spy = start_self_profile()
        cprof = None
        if os.environ.get("CCFAST_SIM_CPROFILE"):   # deterministic profile (slower; for ranking only)
            import cProfile

            cprof = cProfile.Profile()
            cprof.enable()
        try:
            result = await WORKLOADS[job["workload"]](sim, probe, job, args, agent_queue)
        finally:
            stop_self_profile(spy)
            if cprof is not None:
                cprof.disable()
                cprof.dump_stats(os.environ["CCFAST_SIM_CPROFILE"])
        result["sim_events_built"] = sim.switch.stats["events_built"]
        result["sim_events_filtered"] = sim.stats["events_filtered"]
        if sim.hub is not None:
            result["sim_writes"], result["sim_reads"] = sim.hub.writes, sim.hub.reads
            result["sim_bytes_written"] = sim.hub.bytes_written
            result["sim_bytes_to_callers"] = sim.hub.bytes_to_callers
        result["sim_event_counts"] = dict(sorted(sim.switch.event_counts.items()))
        result["sim_gc_s"] = round(gc_clock.total, 3)
        result["sim_gc_collections"] = gc_clock.collections
        result["sim_gc_max_pause_s"] = round(gc_clock.max_pause, 3)
        result["sim_gc_by_generation"] = "/".join(map(str, gc_clock.by_generation))
        result["sim_listeners_dropped"] = sim.stats["listeners_dropped"]
        result["sim_timer_errors"] = sim.switch.sched.errors
        result["job_s"] = round(time.perf_counter() - started, 2)
        if os.environ.get("CCFAST_SIM_GARBAGE"):   # what the workload left to the cyclic collector
            import collections

            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            kinds = collections.Counter(type(o).__qualname__ for o in gc.garbage)
            result["sim_cyclic_garbage"] = ", ".join(f"{k} {n}" for k, n in kinds.most_common(25))
            gc.set_debug(0)
            gc.garbage.clear()
        print(json.dumps({"result": result}), flush=True)
        nursery.cancel_scope.cancel()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queues", type=int, default=20)
    p.add_argument("--agents-per-queue", type=int, default=100)
    p.add_argument("--talk", type=float, default=0.2, help="agent talk time, seconds (<0: until killed)")
    p.add_argument("--ring", type=float, default=0.0, help="agent ring time before answering, seconds")
    p.add_argument("--timer-resolution", type=float, default=0.0005,
                   help="seconds: simulator timers due this close together run in one turn")
    p.add_argument("--io-block", type=float, default=0.0005,
                   help="seconds: a busy simulator waits for its sockets this long in its own epoll "
                        "(other tasks, e.g. the caller generator, run at most this late); 0: a trio wait every turn")
    p.add_argument("--max-lag", type=int, default=500, help="events a listener may fall behind (FreeSWITCH: 500)")
    a = p.parse_args(argv)
    if a.talk < 0:
        a.talk = None
    return a


if __name__ == "__main__":
    trio.run(main, parse_args())
