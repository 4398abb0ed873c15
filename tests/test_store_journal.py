"""The write-behind's fast path: journal values are bound as they are.

``change_statements`` binds the core's values without converting them to the column types; that
is safe because the core's journal is typed (every value ``None``, ``str`` for text columns,
``int`` for integer columns — checked here over core scenarios with ``validate_entry(…,
types=True)``), and a batch a database refuses anyway is retried once with converted values
before it is split (checked here on every engine).
"""

from __future__ import annotations

import pytest
import trio

from bench.store_journal import make_journal
from ccfast import strings as S
from ccfast.params import QueueParams
from ccfast.store import WriterConfig, open_writer
from ccfast.store.base import PUT, UPDATE, Change, batch_statements, change_statements
from ccfast.store.writer import validate_entry

from tests.test_store_common import METACHARS, opened, pg_dsn, target  # noqa: F401  (pg_dsn, target are fixtures)

NOW = 1_700_000_000


def test_validate_entry_types():
    validate_entry(("agents", "update", ("a",), {"talk_time": 5, "uuid": None, "state": "Idle"}), types=True)
    with pytest.raises(ValueError, match=r"agents\.talk_time must be int, got str '5'"):
        validate_entry(("agents", "update", ("a",), {"talk_time": "5"}), types=True)
    with pytest.raises(ValueError, match=r"members\.cid_number must be str, got int 5"):
        validate_entry(("members", "insert", ("m",), {"cid_number": 5}), types=True)
    with pytest.raises(ValueError, match=r"agents\.talk_time must be int, got bool"):
        validate_entry(("agents", "update", ("a",), {"talk_time": True}), types=True)
    with pytest.raises(ValueError, match=r"tiers key queue must be str"):
        validate_entry(("tiers", "delete", (1, "a"), {}), types=True)
    validate_entry(("agents", "update", ("a",), {"talk_time": "5"}))  # shape only: fine


def test_core_call_journal_is_typed():
    setup, timeline = make_journal(300, 1000)
    entries = setup + [e for _, j in timeline for e in j]
    assert len(entries) > 3000
    for e in entries:
        validate_entry(e, types=True)


def test_core_journal_of_other_paths_is_typed():
    """Agent/tier settings, cancels, no-answers, discards, deletes, recovery: every entry typed."""
    from ccfast._core import Core

    core = Core()
    core.queue_set(QueueParams(name="q@default", discard_abandoned_after=5))
    for name in ("a1", "a2", "a3"):
        core.agent_add(name, S.TYPE_CALLBACK, NOW)
        core.tier_add("q@default", name)
    for key, value in (("status", S.STATUS_AVAILABLE), ("contact", "user/a1"), ("max_no_answer", "3"),
                       ("wrap_up_time", "2"), ("reject_delay_time", "4"), ("busy_delay_time", "5"),
                       ("no_answer_delay_time", "6"), ("ready_time", "7"), ("uuid", "u-1"),
                       ("state", S.STATE_WAITING), ("type", S.TYPE_UUID_STANDBY), ("type", S.TYPE_CALLBACK)):
        core.agent_set(key, "a1", value, NOW)
    core.agent_set("status", "a2", S.STATUS_AVAILABLE, NOW)
    core.tier_set("level", "q@default", "a3", "2")
    core.tier_set("position", "q@default", "a3", "3")
    core.tier_set("state", "q@default", "a3", S.TIER_READY)
    core.agent_track("a3", 1)
    core.member_join("q@default", "m1", "s1", "100", METACHARS, NOW, 0, NOW + 1)
    core.member_join("q@default", "m2", "s2", "101", "x", NOW, 0, NOW + 1)
    offers = core.dispatch(NOW + 20)
    assert offers
    core.offer_failed(offers[0].offer_id, S.HANGUP_NO_ANSWER, NOW + 21)
    core.member_cancel("m2", S.CANCEL_NONE, NOW + 22)
    core.discard_abandoned(NOW + 100)
    core.tier_del("q@default", "a3")
    core.agent_del("a3")
    entries = core.drain_journal()
    rows = {t: core.rows(t) for t in ("agents", "tiers", "members")}
    core2 = Core()
    core2.queue_set(QueueParams(name="q@default"))
    core2.load_recovered(rows, NOW + 200)
    entries += core2.drain_journal()
    tables = {e[0] for e in entries}
    ops = {e[1] for e in entries}
    assert tables == {"agents", "tiers", "members"} and ops == {"insert", "update", "delete"}
    for e in entries:
        validate_entry(e, types=True)


def test_change_statements_match_batch_statements():
    """The fast builder writes the same rows as the converting one (values typed already)."""
    changes = [
        Change("agents", (METACHARS,), PUT, {"status": "Available", "talk_time": 3}, False),
        Change("agents", ("b",), UPDATE, {"state": "Idle", "name": "b"}, True),  # key column: not SET
        Change("agents", ("c",), UPDATE, {"name": "c"}, True),  # nothing to set
        Change("tiers", ("q", "a"), PUT, {"queue": "q", "level": 2}, False),  # one key column given
        Change("members", ("m",), PUT, {"uuid": "m", "state": "Waiting"}, True),  # all key columns given
        Change("members", ("n",), "delete", {}, True),
    ]

    def rows(statements):
        out = set()
        for sql, args in statements:
            for a in args:
                out.add((sql.split()[0], sql.split('"')[1], tuple(sorted(zip(_cols(sql), a), key=repr))))
        return out

    assert rows(change_statements(changes, True)) == rows(batch_statements(changes, True, False))
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['system'\]"):
        change_statements([Change("agents", ("a",), UPDATE, {"system": "x"}, True)], False)


def _cols(sql: str) -> list[str]:
    """The parameter columns of a generated statement, in placeholder order."""
    import re

    if sql.startswith("INSERT"):
        return re.findall(r'"(\w+)"', sql.split("VALUES")[0])[1:]
    return [c for c in re.findall(r'"(\w+)" = ', sql)]


async def test_untyped_values_are_written_converted(target):  # noqa: F811
    """Values of the wrong type (not from the core) are still written as before: SQLite converts
    by column affinity, PostgreSQL refuses the batch, which is retried once converted."""
    async with opened(target) as store:
        async with open_writer(store, WriterConfig(max_delay=0)) as w:
            w.submit([("agents", "insert", ("a",), {"talk_time": "7", "status": "Available"}),
                      ("agents", "insert", ("b",), {"calls_answered": 4, "contact": 12})])
            await w.flush()
            w.submit([("agents", "update", ("a",), {"calls_answered": "5"})])
            await w.flush()
            assert w.stats.rejected == 0
        got = [(r["name"], r["talk_time"], r["calls_answered"], r["contact"]) for r in (await store.load_rows())["agents"]]
        assert got == [("a", 7, 5, None), ("b", 0, 4, "12")]


def test_compiled_loops_match_the_python_fallbacks():
    """ccfast/store/_fast.pyx (used when built — it is, like every ccfast .pyx) and the pure
    Python code give the same backlog, counters, statements and errors."""
    import random

    from ccfast.store import base
    from ccfast.store.writer import Backlog

    from tests.test_store_common import random_journal

    assert base._fast is not None, "ccfast/store/_fast.pyx is not built"
    rng = random.Random(11)
    for _ in range(40):
        journal = random_journal(rng, 80, {})
        fast, py = Backlog(), Backlog()
        for i in range(0, len(journal), 7):
            assert fast.add_many(journal[i:i + 7]) == py._add_many_py(journal[i:i + 7])
        assert (fast.coalesced, fast.accepted, len(fast)) == (py.coalesced, py.accepted, len(py))
        a, b = fast.take(10**6), py.take(10**6)
        assert [(c.table, c.key, c.kind, c.cols, c.had_row) for c in a] == \
               [(c.table, c.key, c.kind, c.cols, c.had_row) for c in b]
        for dollar in (False, True):
            assert base.change_statements(a, dollar) == base._change_statements_py(a, dollar)
    bad = [("agents", "update", ("a",), {"state": "Idle"}), ("agents", "update", ("b",), {"system": "x"}),
           ("agents", "update", ("c",), {})]
    for add in (lambda b, e: b.add_many(e), lambda b, e: b._add_many_py(e)):
        b = Backlog()
        with pytest.raises(ValueError, match=r"unknown column\(s\) \['system'\]"):
            add(b, bad)
        assert (b.accepted, len(b)) == (1, 1)  # the entry before the bad one is pending
        for entry, match in ((("agents", "upsert", ("a",), {}), "op must be"), (("agents", "insert"), "must be"),
                             (("tiers", "delete", ("q",), {}), "tuple of"), (("queues", "insert", ("a",), {}), "unknown table")):
            with pytest.raises(ValueError, match=match):
                add(Backlog(), [entry])
