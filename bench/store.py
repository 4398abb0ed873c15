"""Store benchmark: write-behind throughput into SQLite and PostgreSQL, and what a slow database
costs the caller.

    python -m bench.store            # writes bench/results/store.json
    python -m bench.store --quick    # fewer rows (< 30 s)

Measured in one run:
  * ``*_rows_per_s``: journal entries per second through ``Writer.submit`` → batches → committed,
    for a stream of N member inserts followed by N updates of those members (each key touched once
    per phase, so nothing coalesces: raw row throughput). Time runs from the first submit to the end
    of ``flush()``. Engines: SQLite in RAM, SQLite file (WAL, tmp dir), PostgreSQL (a fresh
    database ``ccfast_bench_<random>`` created through ``postgres`` of ``CCFAST_TEST_PG_DSN`` and
    dropped afterwards).
  * caller-side cost with 0 ms vs 50 ms injected database latency (``WriterConfig.db_latency``,
    slept before every write): ``submit_p99_us_db*`` — the duration of each ``submit()`` call
    (what the dispatch hot path pays), and ``loop_lag_p99_ms_db*`` — how late a 1 ms trio timer
    fires while the writer works (how much the write-behind disturbs the event loop that
    dispatches). A steady stream of 10-entry submits every 1 ms, SQLite in RAM and PostgreSQL.
    End-to-end: ``dispatch_p*_ms_db0/db50`` run the service and the simulator with 0 vs 50 ms of
    injected database latency (bench/store_dispatch.py); the write-behind design says they match.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import trio

from ccfast import strings as S
from ccfast.store import PostgresStore, SqliteStore, WriterConfig, aio, open_writer

RESULTS = Path(__file__).parent / "results" / "store.json"
PG_DSN = os.environ.get("CCFAST_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _with_db(dsn: str, db: str) -> str:
    u = urlsplit(dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_with_db(PG_DSN, "postgres"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def journal(n: int) -> tuple[list, list]:
    inserts = [
        ("members", "insert", (f"m-{i}",), {
            "queue": "support@default", "instance_id": S.SINGLE_BOX, "session_uuid": f"s-{i}",
            "cid_number": f"+7921{i:07d}", "cid_name": "O'Brien", "system_epoch": 1700000000 + i,
            "joined_epoch": 1700000000 + i, "state": S.MEMBER_WAITING,
        })
        for i in range(n)
    ]
    updates = [
        ("members", "update", (f"m-{i}",), {"state": S.MEMBER_TRYING, "serving_agent": "1000@default",
                                             "serving_system": S.SINGLE_BOX})
        for i in range(n)
    ]
    return inserts, updates


async def throughput(store, n: int, chunk: int = 200) -> dict:
    await store.execute([(f"DROP TABLE IF EXISTS {t}", None) for t in ("agents", "tiers", "members")])
    await store.ensure_schema()
    inserts, updates = journal(n)
    cfg = WriterConfig(max_delay=0.05, max_batch_rows=5000, max_backlog=max(100_000, 4 * n))
    async with open_writer(store, cfg) as w:
        t0 = time.perf_counter()
        for phase in (inserts, updates):
            for i in range(0, len(phase), chunk):
                w.submit(phase[i:i + chunk])
                await trio.sleep(0)
            await w.flush()  # inserts committed before the updates: nothing coalesces
        dt = time.perf_counter() - t0
        batches = w.stats.batches
        assert w.metrics()["coalesced"] == 0
    rows = await store.fetch("SELECT count(*) FROM members")
    assert rows[0][0] == n, rows
    return {"entries": 2 * n, "seconds": round(dt, 3), "rows_per_s": round(2 * n / dt), "batches": batches}


async def caller_cost(store, latency: float, seconds: float) -> dict:
    await store.execute([(f"DROP TABLE IF EXISTS {t}", None) for t in ("agents", "tiers", "members")])
    await store.ensure_schema()
    cfg = WriterConfig(max_delay=0.05, db_latency=latency)
    submit_ns: list[int] = []
    lag_ms: list[float] = []
    async with open_writer(store, cfg) as w:
        async def ticker():
            while True:
                t = trio.current_time()
                await trio.sleep(0.001)
                lag_ms.append((trio.current_time() - t - 0.001) * 1000)

        async with trio.open_nursery() as n:
            n.start_soon(ticker)
            w.submit([("agents", "insert", (f"a{k}",), {"status": S.STATUS_AVAILABLE}) for k in range(500)])
            i = 0
            end = trio.current_time() + seconds
            while trio.current_time() < end:
                entries = [("agents", "update", (f"a{(i + k) % 500}",),
                            {"state": S.STATE_RECEIVING, "last_offered_call": i}) for k in range(10)]
                t = time.perf_counter_ns()
                w.submit(entries)
                submit_ns.append(time.perf_counter_ns() - t)
                i += 10
                await trio.sleep(0.001)
            n.cancel_scope.cancel()
        await w.flush()
        batches = w.stats.batches
    submit_ns.sort()
    lag_ms.sort()

    def pct(xs, p):
        return xs[min(len(xs) - 1, int(p * len(xs)))]

    return {
        "submits": len(submit_ns),
        "submit_p50_us": round(pct(submit_ns, 0.50) / 1000, 2),
        "submit_p99_us": round(pct(submit_ns, 0.99) / 1000, 2),
        "submit_max_us": round(submit_ns[-1] / 1000, 2),
        "loop_lag_p50_ms": round(pct(lag_ms, 0.50), 3),
        "loop_lag_p99_ms": round(pct(lag_ms, 0.99), 3),
        "batches": batches,
    }


async def run(quick: bool) -> dict:
    n = 10_000 if quick else 50_000
    secs = 2.0 if quick else 5.0
    out: dict = {"quick": quick, "python": sys.version.split()[0], "machine": platform.machine(),
                 "cpus": os.cpu_count(), "journal_entries_per_engine": 2 * n}
    async with aio.open_loop():
        store = SqliteStore(None)
        r = await throughput(store, n)
        out["sqlite_rows_per_s"] = r["rows_per_s"]
        out["sqlite_memory"] = r
        for lat in (0.0, 0.05):
            c = await caller_cost(store, lat, secs)
            tag = f"db{int(lat * 1000)}"
            out[f"submit_p99_us_{tag}"] = c["submit_p99_us"]
            out[f"loop_lag_p99_ms_{tag}"] = c["loop_lag_p99_ms"]
            out[f"sqlite_caller_cost_{tag}"] = c
        await store.close()
        with tempfile.TemporaryDirectory() as d:
            store = SqliteStore(os.path.join(d, "callcenter.db"))
            r = await throughput(store, n)
            await store.close()
        out["sqlite_file_rows_per_s"] = r["rows_per_s"]
        out["sqlite_file_wal"] = r

        name = f"ccfast_bench_{uuid.uuid4().hex[:10]}"
        try:
            await aio.run(_pg_admin, f'CREATE DATABASE "{name}"', timeout=10)
        except Exception as exc:  # no server: say so in the results instead of a number
            out["postgres_rows_per_s"] = None
            out["postgres_error"] = f"PostgreSQL at {PG_DSN} unavailable: {exc}"
        else:
            try:
                store = PostgresStore(_with_db(PG_DSN, name))
                r = await throughput(store, n)
                out["postgres_rows_per_s"] = r["rows_per_s"]
                out["postgres"] = r
                for lat in (0.0, 0.05):
                    c = await caller_cost(store, lat, secs)
                    out[f"postgres_caller_cost_db{int(lat * 1000)}"] = c
                await store.close()
            finally:
                await aio.run(_pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=30)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows, shorter latency runs")
    args = parser.parse_args(argv)
    out = trio.run(run, args.quick)
    # the service with 0 ms vs 50 ms of injected database latency (its own trio-asyncio loop)
    from bench import store_dispatch

    out.update(trio.run(store_dispatch.run, args.quick))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
