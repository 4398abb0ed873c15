"""Cost of the metrics layer: hot-path facade calls, snapshot counting, a full /metrics render.

Run: .venv/bin/python -m bench.metrics_facade [--quick]
Prints a table and writes bench/results/metrics_facade.json. No assertions: numbers only.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import trio

from ccfast import strings as S
from ccfast.httpd import Health, HttpLimits, bound_port, serve_http
from ccfast.kpi import KpiTracker
from ccfast.metrics import Metrics, snapshot_from_rows
from ccfast.params import QueueParams


def per_call(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n


def build_state(queues: int, agents: int, members: int, now: float):
    params = [QueueParams(name=f"q{i}@default") for i in range(queues)]
    agent_rows = [{"name": f"{i}@default", "status": S.STATUS_AVAILABLE,
                   "state": (S.STATE_WAITING, S.STATE_IN_A_QUEUE_CALL, S.STATE_RECEIVING)[i % 3],
                   "wrap_up_time": 10, "last_bridge_end": now - (i % 40), "ready_time": 0, "external_calls_count": 0}
                  for i in range(agents)]
    tier_rows = [{"queue": params[(i + k) % queues].name, "agent": f"{i}@default", "state": S.TIER_READY}
                 for i in range(agents) for k in range(2)]  # every agent in two queues
    member_rows = [{"queue": params[i % queues].name, "state": S.MEMBER_WAITING, "joined_epoch": now - (i % 300),
                    "rejoined_epoch": 0} for i in range(members)]
    return params, agent_rows, tier_rows, member_rows


async def loop_stall(m: Metrics, reps: int) -> dict[str, float]:
    """Longest time the trio loop could not run a 1 ms ticker while /metrics was scraped over
    HTTP, with encoding in a worker thread and inline."""
    out = {}
    for in_thread in (True, False):
        limits = HttpLimits(render_in_thread=in_thread)
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(lambda task_status: serve_http(
                "127.0.0.1", 0, m, lambda: Health({"fs1": True}), task_status=task_status, limits=limits))
            port = bound_port(listeners)
            worst = [0.0]

            async def ticker():
                last = trio.current_time()
                while True:
                    await trio.sleep(0.001)
                    now = trio.current_time()
                    worst[0] = max(worst[0], now - last - 0.001)
                    last = now

            nursery.start_soon(ticker)
            await trio.sleep(0.05)
            worst[0] = 0.0
            t0 = time.perf_counter()
            for _ in range(reps):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    await stream.send_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
                    while await stream.receive_some(1 << 16):
                        pass
            key = "thread" if in_thread else "inline"
            out[f"scrape_http_ms_{key}"] = (time.perf_counter() - t0) / reps * 1e3
            out[f"loop_stall_max_ms_{key}"] = worst[0] * 1e3
            nursery.cancel_scope.cancel()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 20_000 if args.quick else 200_000
    now = 1_700_000_000.0
    queues, agents, members = (20, 500, 5_000) if args.quick else (100, 2_000, 20_000)

    m = Metrics(kpi=KpiTracker(window=900, bucket=10), clock=lambda: now)
    params, agent_rows, tier_rows, member_rows = build_state(queues, agents, members, now)
    for p in params:
        m.set_queue(p)
    q = params[0].name
    results: dict[str, float] = {}

    def member_ended(k):
        for i in range(k):
            m.member_ended(q, "answered", i % 60, now + i * 0.001)

    def offer_result(k):
        for _ in range(k):
            m.offer_result(q, "no_answer")

    def dispatch_latency(k):
        for _ in range(k):
            m.dispatch_latency(0.0004, "member")

    ev_start = (S.ACTION_AGENT_STATE_CHANGE, {"CC-Agent": "1000@default", "CC-Action": "agent-state-change",
                                               "CC-Agent-State": "Receiving"})
    ev_fail = (S.ACTION_BRIDGE_AGENT_FAIL, {"CC-Queue": q, "CC-Agent": "1000@default", "CC-Member-UUID": "x",
                                            "CC-Hangup-Cause": "NO_ANSWER"})

    def observe_events(k):
        batch = [ev_start, ev_fail] * 50
        for _ in range(k // 100):
            m.observe_events(batch, now)

    results["member_ended_us"] = per_call(member_ended, n) * 1e6
    results["offer_result_us"] = per_call(offer_result, n) * 1e6
    results["dispatch_latency_us"] = per_call(dispatch_latency, n) * 1e6
    results["observe_events_per_event_us"] = per_call(observe_events, n) * 1e6

    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        snap = snapshot_from_rows(now, params, agent_rows, tier_rows, member_rows, {"fs1": True}, 0)
    results["snapshot_from_rows_ms"] = (time.perf_counter() - t0) / reps * 1e3
    m.set_snapshot_provider(lambda _now: snap)
    for p in params:  # some traffic in every queue so KPI and histogram series exist
        m.member_ended(p.name, "abandoned", 30, now)
        m.call_ended(p.name, 120, 10, now)
    t0 = time.perf_counter()
    for _ in range(reps):
        body, _ = m.render()
    results["render_ms"] = (time.perf_counter() - t0) / reps * 1e3
    results["render_bytes"] = len(body)
    results["render_series"] = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    t0 = time.perf_counter()
    for _ in range(reps):
        m.kpi.stats(now)
    results["kpi_stats_all_queues_ms"] = (time.perf_counter() - t0) / reps * 1e3

    results.update(trio.run(loop_stall, m, reps))

    out = {
        "bench": "metrics_facade", "quick": args.quick, "calls": n, "queues": queues, "agents": agents,
        "members": members, "python": platform.python_version(), "machine": platform.machine(), **results,
    }
    for key, value in results.items():
        print(f"{key:32} {value:12.3f}" if isinstance(value, float) else f"{key:32} {value:12d}")
    path = pathlib.Path(__file__).with_name("results") / "metrics_facade.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
