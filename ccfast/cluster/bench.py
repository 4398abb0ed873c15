"""``python -m ccfast.cluster.bench [--claims N] [--out PATH]``: claim latency and failover time.

Needs the PostgreSQL of ``CCFAST_TEST_PG_DSN`` (default the local server); creates and drops a
scratch database. Prints and writes JSON (default ``bench/results/cluster.json``):
``claim_p50_ms``/``claim_p99_ms`` (one node, claim round trip as the offer task awaits it),
``claim_contended_p50_ms``/``claim_contended_p99_ms`` (two nodes claiming the same agents at once),
``release_p50_ms``, ``failover_kill_ms`` (owner's connection ends → the other node owns every queue,
default interval 1 s) and ``failover_hung_ms`` (owner stops heartbeating, connected; stale_after 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import trio

from ..store import PostgresStore, aio
from .claims import AgentClaims
from .ownership import QueueOwnership
from .pg import PgSession, ensure_cluster_schema


def _db(dsn: str, name: str) -> str:
    u = urlsplit(dsn)
    return urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(_db(dsn, "postgres"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000


async def _failover(dsn: str, *, hung: bool, interval: float, stale_after: float) -> float:
    queues = [f"q{i}" for i in range(10)]
    a = QueueOwnership(PgSession(dsn, purpose="a"), "bench-a", interval=interval, stale_after=stale_after)
    b = QueueOwnership(PgSession(dsn, purpose="b"), "bench-b", interval=interval, stale_after=stale_after)
    a.want(queues)
    b.want(queues)
    await a.tick()
    async with trio.open_nursery() as nursery:
        await nursery.start(b.run)
        t0 = trio.current_time()
        if not hung:
            a.session.abort()  # the process died: its connection is gone
        while len(b.owned) < len(queues):
            await trio.sleep(0.005)
        took = trio.current_time() - t0
        nursery.cancel_scope.cancel()
    a.session.abort()
    b.session.abort()
    return took * 1000


async def _main(dsn: str, n: int, sync_commit: str = "on") -> dict:
    async with aio.open_loop():
        store = PostgresStore(dsn)
        await store.ensure_schema()
        await store.close()
        sc = {"server_settings": {"application_name": "ccfast-bench", "synchronous_commit": sync_commit}}
        sa, sb = PgSession(dsn, purpose="a", **sc), PgSession(dsn, purpose="b", **sc)
        await ensure_cluster_schema(sa)
        ca, cb = AgentClaims(sa, "bench-a"), AgentClaims(sb, "bench-b")
        rel: list[float] = []
        for i in range(n):
            agent = f"{i % 50}@bench"
            assert await ca.claim(agent, queue="q", offer_id=i)
            t0 = time.perf_counter()
            await ca.release(agent, offer_id=i)
            rel.append(time.perf_counter() - t0)
        single = list(ca.samples)
        ca.samples.clear()
        both = 0
        for i in range(n // 2):
            agent = f"{i % 50}@bench"
            res = {}

            async def go(c):
                res[c.node] = await c.claim(agent, offer_id=i)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(go, ca)
                nursery.start_soon(go, cb)
            both += all(res.values())
            winner = ca if res["bench-a"] else cb
            await winner.release(agent)
        contended = ca.samples + cb.samples
        sa.abort()
        sb.abort()
        kill = await _failover(dsn, hung=False, interval=1.0, stale_after=5.0)
        hung = await _failover(dsn, hung=True, interval=1.0, stale_after=5.0)
    return {
        "claims": n, "synchronous_commit": sync_commit, "claim_p50_ms": _pct(single, 50), "claim_p99_ms": _pct(single, 99),
        "claim_mean_ms": statistics.fmean(single) * 1000,
        "claim_contended_p50_ms": _pct(contended, 50), "claim_contended_p99_ms": _pct(contended, 99),
        "contended_rounds": n // 2, "double_claims": both,
        "release_p50_ms": _pct(rel, 50), "release_p99_ms": _pct(rel, 99),
        "failover_kill_ms": kill, "failover_hung_ms": hung, "interval_s": 1.0, "stale_after_s": 5.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claims", type=int, default=4000)
    ap.add_argument("--out", default="bench/results/cluster.json")
    ap.add_argument("--synchronous-commit", default="on", choices=("on", "off"))
    args = ap.parse_args()
    base = os.environ.get("CCFAST_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"ccfast_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    try:
        result = trio.run(_main, _db(base, name), args.claims, args.synchronous_commit)
    finally:
        asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(json.dumps(result, indent=2))
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
