"""Store CPU per call: what the write-behind costs ccfast for a journal shaped like real calls.

    python -m bench.store_journal              # writes bench/results/store_journal.json
    python -m bench.store_journal --quick      # fewer calls
    python -m bench.store_journal --engines sqlite_memory --calls 3000

The journal is made by the core itself (deterministic, no clock): 20 queues x 100 agents
(Available), callers arriving at ``--cps`` calls/s; each caller joins, is offered (a pass runs after
every change, as in the service), answers after 30 ms, is bridged 10 ms later, talks 0.2 s (as
``bench.e2e --step steady``), the offer ends and the caller leaves. Each core call's journal is one
``submit`` (the service submits after every core call). Virtual time is cut into ``max_delay``
windows (50 ms, the writer's default): a window's submits, then ``flush()`` — one batch per
window, as the writer does at a steady rate.

Measured per engine (SQLite in memory, SQLite file in WAL mode, PostgreSQL), after a warm-up:
  * ``trio_us_per_call``: CPU of the trio thread (``time.thread_time``): submit, coalescing,
    building the SQL, the trio-asyncio hops, and for PostgreSQL asyncpg's protocol work;
  * ``thread_us_per_call``: CPU of every other thread of the process (process CPU minus the trio
    thread's): aiosqlite's worker running the statements (0 for PostgreSQL: the server is another
    process);
  * ``submit_us_per_call``: the part of the trio CPU spent in ``submit`` (the hot path);
  * ``total_us_per_call``; entries, changes written and batches per call.
Best of ``--repeat`` runs (each a fresh writer on the same store) to damp the shared machine.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import trio

from ccfast import strings as S
from ccfast.params import QueueParams
from ccfast.store import PostgresStore, SqliteStore, WriterConfig, aio, open_writer

RESULTS = Path(__file__).parent / "results" / "store_journal.json"
QUEUES, PER_QUEUE = 20, 100
NOW0 = 1_700_000_000


def make_journal(calls: int, cps: int, talk_ms: int = 200) -> tuple[list, list[tuple[int, list]]]:
    """(setup journal, [(t_ms, entries), …]) from the core for ``calls`` callers at ``cps``."""
    from ccfast._core import Core

    core = Core()
    for q in range(QUEUES):
        core.queue_set(QueueParams(name=f"q{q:02d}@default"))
    for q in range(QUEUES):
        for k in range(PER_QUEUE):
            name = f"a{q:02d}{k:03d}@default"
            core.agent_add(name, S.TYPE_CALLBACK, NOW0)
            core.agent_set("status", name, S.STATUS_AVAILABLE, NOW0)
            core.tier_add(f"q{q:02d}@default", name)
    setup = core.drain_journal()
    core.drain_events()

    timeline: list[tuple[int, list]] = []
    events: list[tuple[int, int, str, object]] = []  # (t_ms, seq, what, arg)
    seq = 0

    def at(t: int, what: str, arg: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, what, arg))

    def record(t: int) -> None:
        j = core.drain_journal()
        core.drain_events()
        if j:
            timeline.append((t, j))

    def dispatch(t: int) -> None:
        for offer in core.dispatch(NOW0 + t // 1000):
            record(t)
            at(t + 30, "answer", offer)
        record(t)

    for i in range(calls):
        at(i * 1000 // cps, "join", i)
    while events:
        t, _, what, arg = heapq.heappop(events)
        now = NOW0 + t // 1000
        if what == "join":
            q = f"q{arg % QUEUES:02d}@default"
            core.member_join(q, f"m-{arg}", f"s-{arg}", f"+7921{arg:07d}", "O'Brien", now, 0, now)
            record(t)
            dispatch(t)
        elif what == "answer":
            answer = core.offer_answered(arg.offer_id, f"leg-{arg.offer_id}", now)
            record(t)
            for cancel in answer.cancel:
                core.offer_failed(cancel.offer_id, cancel.cause, now)
                record(t)
            if answer.won:
                at(t + 10, "bridge", arg)
        elif what == "bridge":
            core.offer_bridged(arg.offer_id, now)
            record(t)
            at(t + talk_ms, "end", arg)
        elif what == "end":
            core.offer_ended(arg.offer_id, now)
            record(t)
            core.member_answered_exit(arg.member_uuid)
            record(t)
            at(t + 1000, "pass", None)  # wrap-up is strict: the agent is offerable the next second
            dispatch(t)
        elif what == "pass":
            dispatch(t)
    return setup, timeline


def windows(timeline: list[tuple[int, list]], window_ms: int) -> list[list[list]]:
    out: list[list[list]] = []
    cur, end = [], None
    for t, entries in timeline:
        if end is None or t >= end:
            if cur:
                out.append(cur)
            cur, end = [], (t // window_ms + 1) * window_ms
        cur.append(entries)
    if cur:
        out.append(cur)
    return out


async def measure(store, setup: list, batches: list[list[list]], calls: int, repeat: int) -> dict:
    best: dict | None = None
    for _ in range(repeat):
        await store.execute([(f"DROP TABLE IF EXISTS {t}", None) for t in ("agents", "tiers", "members")])
        await store.ensure_schema()
        cfg = WriterConfig(max_delay=3600, max_batch_rows=100_000, max_backlog=1_000_000)
        async with open_writer(store, cfg) as w:
            w.submit(setup)
            await w.flush()
            base_rows, base_batches = w.stats.rows_written, w.stats.batches
            gc.collect()
            gc.freeze()  # the pre-made journal is not the store's garbage-collector load
            submit_s = 0.0
            p0, t0 = time.process_time(), time.thread_time()
            for batch in batches:
                s0 = time.thread_time()
                for entries in batch:
                    w.submit(entries)
                submit_s += time.thread_time() - s0
                await w.flush()
            trio_s = time.thread_time() - t0
            all_s = time.process_time() - p0
            gc.unfreeze()
            r = {
                "trio_us_per_call": round(trio_s / calls * 1e6, 2),
                "thread_us_per_call": round(max(0.0, all_s - trio_s) / calls * 1e6, 2),
                "submit_us_per_call": round(submit_s / calls * 1e6, 2),
                "total_us_per_call": round(all_s / calls * 1e6, 2),
                "entries_per_call": round(sum(len(e) for b in batches for e in b) / calls, 2),
                "changes_per_call": round((w.stats.rows_written - base_rows) / calls, 2),
                "batches_per_call": round((w.stats.batches - base_batches) / calls, 4),
            }
        n = (await store.fetch("SELECT count(*) FROM agents"))[0][0]
        assert n == QUEUES * PER_QUEUE, n
        if best is None or r["total_us_per_call"] < best["total_us_per_call"]:
            best = r
    return best


async def run(args) -> dict:
    from bench.store import PG_DSN, _pg_admin, _with_db

    setup, timeline = make_journal(args.calls, args.cps)
    batches = windows(timeline, args.window_ms)
    out: dict = {"calls": args.calls, "cps": args.cps, "window_ms": args.window_ms, "batches": len(batches),
                 "python": sys.version.split()[0]}
    engines = args.engines.split(",")
    async with aio.open_loop():
        if "sqlite_memory" in engines:
            store = SqliteStore(None)
            out["sqlite_memory"] = await measure(store, setup, batches, args.calls, args.repeat)
            await store.close()
        if "sqlite_file" in engines:
            with tempfile.TemporaryDirectory() as d:
                store = SqliteStore(os.path.join(d, "callcenter.db"))
                out["sqlite_file"] = await measure(store, setup, batches, args.calls, args.repeat)
                await store.close()
        if "postgres" in engines:
            name = f"ccfast_bench_{uuid.uuid4().hex[:10]}"
            try:
                await aio.run(_pg_admin, f'CREATE DATABASE "{name}"', timeout=10)
            except Exception as exc:
                out["postgres"] = {"error": f"PostgreSQL at {PG_DSN} unavailable: {exc}"}
            else:
                try:
                    store = PostgresStore(_with_db(PG_DSN, name))
                    out["postgres"] = await measure(store, setup, batches, args.calls, args.repeat)
                    await store.close()
                finally:
                    await aio.run(_pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=30)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store_journal", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer calls, one repetition")
    p.add_argument("--calls", type=int, default=None)
    p.add_argument("--cps", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--window-ms", type=int, default=50, help="batch window (the writer's max_delay)")
    p.add_argument("--engines", default="sqlite_memory,sqlite_file,postgres")
    p.add_argument("--out", default=str(RESULTS), help="JSON file ('' = do not write)")
    a = p.parse_args(argv)
    a.calls = a.calls or (2000 if a.quick else 10_000)
    a.repeat = a.repeat or (1 if a.quick else 3)
    out = trio.run(run, a)
    print(json.dumps(out))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
