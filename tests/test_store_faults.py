"""Write-behind under faults: killed connections, a database that is down or restarts, a database
slower than the journal (backpressure), refused data, trio cancellation mid-write."""

from __future__ import annotations

import logging
import random
from urllib.parse import urlsplit

import pytest
import trio

from ccfast.store import PostgresStore, StoreError, StoreUnavailable, WriterConfig, aio, open_writer
from ccfast.store.writer import STATE_OK, STATE_OVERFLOW

from tests.test_store_common import (  # noqa: F401  (pg_dsn, target are fixtures)
    METACHARS,
    Model,
    Proxy,
    db_tables,
    opened,
    pg_dsn,
    proxied_dsn,
    random_journal,
    target,
)


async def produce(w, model, rng, n_chunks, live, *, pause=0.002):
    for _ in range(n_chunks):
        chunk = random_journal(rng, rng.randrange(5, 30), live)
        model.apply(chunk)
        w.submit(chunk)
        await trio.sleep(pause)


async def test_pg_terminate_backend_under_load_replays_in_order(pg_dsn):
    rng, model, live = random.Random(5), Model(), {}
    kills = []
    async with opened(("pg", lambda **kw: PostgresStore(pg_dsn, **kw))) as store:
        admin = PostgresStore(pg_dsn)
        async with open_writer(store, WriterConfig(max_delay=0.003, max_batch_rows=40, retry_initial=0.02)) as w:
            async def killer():
                for _ in range(5):
                    await trio.sleep(0.12)
                    pid = await store.server_pid()
                    if pid is not None:
                        (ok,) = (await admin.fetch("SELECT pg_terminate_backend($1)", (pid,)))[0]
                        kills.append(ok)

            async with trio.open_nursery() as n:
                n.start_soon(killer)
                await produce(w, model, rng, 250, live)
            with trio.fail_after(30):
                await w.flush()
            assert w.state == STATE_OK and w.backlog == 0
        await admin.close()
        assert kills.count(True) >= 3
        # kills hit writes in progress (store-level retry or writer-level replay) and idle connections
        assert store.failures >= 1 and store.connects >= 3, (store.failures, store.connects)
        assert db_tables(await store.load_rows()) == model.as_rows()


async def test_database_down_at_start_then_up(pg_dsn, caplog):
    u = urlsplit(pg_dsn)
    proxy = Proxy(u.hostname, u.port or 5432)
    dsn = proxied_dsn(pg_dsn, proxy.port)
    async with aio.open_loop():
        store = PostgresStore(dsn, connect_timeout=1)
        with pytest.raises(StoreUnavailable, match=rf"cannot connect to PostgreSQL 127\.0\.0\.1:{proxy.port}/"):
            await store.connect_with_retry(initial=0.01, attempts=2)
        model = Model()
        async with trio.open_nursery() as n:
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="ccfast.store"):
                async def start_late():
                    await trio.sleep(0.4)
                    await n.start(proxy.serve)

                n.start_soon(start_late)
                with trio.fail_after(10):
                    await store.connect_with_retry(initial=0.05, maximum=0.1)  # retries, no crash
            assert sum("cannot connect" in r.getMessage() and "retrying" in r.getMessage() for r in caplog.records) >= 2
            await store.execute([(f"DROP TABLE IF EXISTS {t}", None) for t in ("agents", "tiers", "members")])
            await store.ensure_schema()
            n.cancel_scope.cancel()
        await store.close()
        # the writer alone, started while the database is down: keeps the backlog, retries, writes it
        store = PostgresStore(dsn, connect_timeout=1)
        proxy2 = proxy
        async with trio.open_nursery() as outer:
            async with open_writer(store, WriterConfig(max_delay=0, retry_initial=0.05, retry_max=0.1)) as w:
                entries = [("agents", "insert", (METACHARS,), {"status": "Available"}),
                           ("members", "insert", ("m1",), {"queue": METACHARS})]
                model.apply(entries)
                w.submit(entries)
                await trio.sleep(0.3)
                assert w.backlog == 2 and w.state == "retrying" and w.stats.retries >= 1
                await outer.start(proxy2.serve)
                with trio.fail_after(10):
                    await w.flush()
            rows = await store.load_rows()
            await store.close()
            outer.cancel_scope.cancel()
        assert db_tables(rows) == model.as_rows()


async def test_server_restarts_under_load(pg_dsn):
    """Every connection dropped and the server unreachable for a while, several times."""
    u = urlsplit(pg_dsn)
    proxy = Proxy(u.hostname, u.port or 5432)
    rng, model, live = random.Random(9), Model(), {}
    async with aio.open_loop(), trio.open_nursery() as n:
        scope = await n.start(_serve_in_scope, proxy)
        store = PostgresStore(proxied_dsn(pg_dsn, proxy.port), connect_timeout=1)
        await store.execute([(f"DROP TABLE IF EXISTS {t}", None) for t in ("agents", "tiers", "members")])
        await store.ensure_schema()
        async with open_writer(store, WriterConfig(max_delay=0.003, max_batch_rows=25, retry_initial=0.02,
                                                   retry_max=0.1)) as w:
            async def restarts():
                nonlocal scope
                for _ in range(3):
                    await trio.sleep(0.15)
                    scope.cancel()  # stop listening ...
                    proxy.kill()  # ... and drop every connection
                    await trio.sleep(0.2)
                    scope = await n.start(_serve_in_scope, proxy)

            async with trio.open_nursery() as inner:
                inner.start_soon(restarts)
                await produce(w, model, rng, 200, live)
            with trio.fail_after(30):
                await w.flush()
        rows = await store.load_rows()
        await store.close()
        n.cancel_scope.cancel()
    assert w.stats.retries >= 1
    assert db_tables(rows) == model.as_rows()


async def _serve_in_scope(proxy, *, task_status=trio.TASK_STATUS_IGNORED):
    with trio.CancelScope() as scope:
        listeners = await trio.open_tcp_listeners(proxy.port, host="127.0.0.1")
        task_status.started(scope)
        await trio.serve_listeners(proxy._handle, listeners)


# -- backpressure -------------------------------------------------------------------------------
async def test_overflow_resyncs_from_core_state(target):
    """DB much slower than the journal: memory stays bounded, the overflow is counted, and the
    tables end equal to the core's state (the model) through a snapshot."""
    model = Model()
    cfg = WriterConfig(max_delay=0, max_batch_rows=10, max_backlog=50, db_latency=0.05)
    async with opened(target) as store:
        async with open_writer(store, cfg, resync_source=model.as_rows) as w:
            peak = 0
            for i in range(400):
                entry = [("members", "insert", (f"m{i}",), {"queue": METACHARS, "joined_epoch": i})]
                model.apply(entry)
                w.submit(entry)
                peak = max(peak, len(w._backlog))
                if i % 25 == 0:
                    await trio.sleep(0)
            assert peak <= cfg.max_backlog
            assert w.stats.overflows >= 1 and w.stats.superseded > 0 and w.stats.dropped == 0
            with trio.fail_after(30):
                await w.flush()
            assert w.stats.snapshots >= 1 and w.state == STATE_OK
        assert db_tables(await store.load_rows()) == model.as_rows()


async def test_overflow_without_resync_source_is_loud_until_snapshot(target, caplog):
    model = Model()
    cfg = WriterConfig(max_delay=0, max_batch_rows=5, max_backlog=20, db_latency=0.05)
    async with opened(target) as store:
        async with open_writer(store, cfg) as w:
            with caplog.at_level(logging.ERROR, logger="ccfast.store.writer"):
                for i in range(100):
                    entry = [("agents", "insert", (f"a{i}",), {"status": "Available"})]
                    model.apply(entry)
                    w.submit(entry)
            assert w.state == STATE_OVERFLOW and w.stats.overflows == 1 and w.stats.dropped > 0
            assert any("DROPPED" in r.getMessage() for r in caplog.records)
            with pytest.raises(StoreError, match="overflow"):
                await w.flush()
            w.snapshot(model.as_rows())
            w.submit([("agents", "update", ("a3",), {"state": "Idle"})])
            model.apply([("agents", "update", ("a3",), {"state": "Idle"})])
            with trio.fail_after(30):
                await w.flush()
            assert w.state == STATE_OK
        assert db_tables(await store.load_rows()) == model.as_rows()


async def test_coalescing_bounds_backlog_for_hot_rows(target):
    model = Model()
    cfg = WriterConfig(max_delay=0, max_batch_rows=100, max_backlog=1000, db_latency=0.05)
    async with opened(target) as store:
        async with open_writer(store, cfg) as w:
            first = [("agents", "insert", (f"a{k}",), {"status": "Available"}) for k in range(20)]
            model.apply(first)
            w.submit(first)
            for i in range(5000):
                e = [("agents", "update", (f"a{i % 20}",), {"last_offered_call": i, "state": "Receiving"})]
                model.apply(e)
                w.submit(e)
                assert w.backlog <= 40  # ≤ one pending + one in-flight change per row
                if i % 500 == 0:
                    await trio.sleep(0.01)
            await w.flush()
            assert w.stats.rows_written < 1000 and w.stats.overflows == 0
        assert db_tables(await store.load_rows()) == model.as_rows()


async def test_refused_row_is_isolated_counted_and_skipped(pg_dsn):
    """PostgreSQL enforces VARCHAR(255): the one bad row is skipped, the rest of its batch written."""
    async with opened(("pg", lambda **kw: PostgresStore(pg_dsn, **kw))) as store:
        async with open_writer(store, WriterConfig(max_delay=0.01)) as w:
            good = [("agents", "insert", (f"a{i}",), {"status": "Available"}) for i in range(5)]
            bad = ("agents", "insert", ("x" * 300,), {"status": "Available"})
            w.submit(good[:2] + [bad] + good[2:])
            await w.flush()
            assert w.stats.rejected == 1 and "refused" in w.stats.last_error
        names = [r["name"] for r in (await store.load_rows())["agents"]]
        assert names == [f"a{i}" for i in range(5)]


async def test_trio_cancel_during_write_leaves_store_usable(target):
    async with opened(target) as store:
        big = [("members", "insert", (f"m{i}",), {"queue": "q", "cid_name": METACHARS}) for i in range(3000)]
        with trio.move_on_after(0.005):
            async with trio.open_nursery() as n:
                from ccfast.store import Writer

                w = Writer(store, WriterConfig(max_delay=0, max_batch_rows=3000))
                await n.start(w.run)
                w.submit(big)
                await trio.sleep_forever()
        # whatever happened to that batch, the connection is not poisoned
        await store.ping()
        async with open_writer(store, WriterConfig(max_delay=0)) as w2:
            w2.submit([("agents", "insert", ("after",), {"status": "Available"})])
        rows = await store.load_rows()
        assert [r["name"] for r in rows["agents"]] == ["after"]
        assert len(rows["members"]) in (0, 3000)  # one transaction: all or nothing
