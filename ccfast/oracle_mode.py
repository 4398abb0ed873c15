"""Baseline mode: the service dispatches with mod_callcenter's algorithm and cadence.

``ccfast serve --dispatcher oracle`` exists to measure what mod_callcenter's *design* costs on the
same ESL, store and service as ccfast: every 100 ms, one pass of the member query and one
agents⋈tiers candidate query per waiting member over SQLite tables without indexes — exactly the
statements of ``ccfast.oracle`` — and no other wake-ups.

How it is built (and why): the service needs far more of the core than the oracle implements
(member joins, cancels, agent commands, timeouts, events, the journal). So :class:`OracleDispatchCore`
wraps a real :class:`ccfast._core.Core` and forwards every call to it, with three changes:

* the core's journal (every row change) is mirrored into the oracle's SQLite tables as it is
  drained, so the oracle's tables always hold the same rows as the core — the row writes
  mod_callcenter's member and offer threads would have made;
* ``dispatch(now)`` runs the oracle's full SQL pass — the cost mod_callcenter pays — and returns
  the offers of the core's own pass at the same ``now``. The differential tests prove the two
  choose the same agents for the same members; here every disagreement is counted
  (``mismatches``), logged, and repaired by rebuilding the SQLite tables from the core. Using the
  core's offers keeps the rest of the service (offer ids, ``Offer`` fields, results) unchanged;
* ``next_change(now)`` is ``None`` and ``poll_interval`` is 0.1: the dispatcher must not sleep
  until a computed time nor run on pokes, but pass, then sleep 100 ms, forever (§4.1). A
  ``Dispatcher`` honours it (``Dispatcher(poll_interval=…)``): a pass every 100 ms, pokes ignored.

``ccfast serve`` builds its core with ``make_dispatch_core(cfg)`` (setting ``dispatcher`` = core |
oracle), and ``Service`` hands the core's ``poll_interval`` to its ``Dispatcher``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import trio

from . import strings as S
from ._core import Core
from .oracle import Oracle

__all__ = ["OracleDispatchCore", "make_dispatch_core", "POLL_INTERVAL"]

log = logging.getLogger("ccfast.oracle_mode")

POLL_INTERVAL = 0.1  # mod_callcenter's dispatcher thread sleeps 100 ms after every pass (§4.1)

# the key columns of the journal's ``key`` tuple, per table (docs/core-contract.md)
_KEYS = {"agents": ("name",), "tiers": ("queue", "agent"), "members": ("uuid",)}


class OracleDispatchCore:
    """A ``Core`` whose dispatching costs and paces like mod_callcenter's (see the module doc).

    Attributes for benchmarks and health: ``passes``, ``sql_seconds`` (time spent in the oracle's
    SQL pass), ``mirror_seconds`` (time spent writing the journal into SQLite), ``mismatches``
    (passes where the oracle and the core disagreed), ``last_mismatch`` (a description).
    """

    poll_interval: float = POLL_INTERVAL

    def __init__(self, core: Core) -> None:
        self.core = core
        self.oracle = Oracle(instance_id=core.instance_id, reserve_agents=core.reserve_agents)
        self._ready: list = []  # journal entries already mirrored, not yet handed to the service
        self._stale = True  # SQLite must be rebuilt from the core before the next pass
        self._sessions: dict[str, str] = {}  # member uuid -> session uuid (oracle channel vars)
        self.passes = 0
        self.mismatches = 0
        self.last_mismatch = ""
        self.sql_seconds = 0.0
        self.mirror_seconds = 0.0
        for name in core.queue_names():
            self.oracle.queue_set(core.queue_params(name))

    def __getattr__(self, name: str):
        # everything not overridden here is the core's own method (joins, results, API, rows...)
        return getattr(self.core, name)

    # -- queues and rows that bypass the journal ----------------------------------------------
    def queue_set(self, params) -> None:
        self.core.queue_set(params)
        self.oracle.queue_set(params)

    def queue_remove(self, name: str) -> None:
        self.core.queue_remove(name)
        self.oracle.queue_remove(name)

    def load_rows(self, table: str, rows: Iterable[dict]) -> None:
        """Rows loaded at start are not journaled: rebuild SQLite from the core before the next pass."""
        self.core.load_rows(table, rows)
        self._stale = True

    def load_recovered(self, rows: dict, now: int, **kwargs) -> dict:
        """Crash recovery at start (``Core.load_recovered``): SQLite is rebuilt before the next pass."""
        result = self.core.load_recovered(rows, now, **kwargs)
        self._stale = True
        return result

    # -- the journal mirror ---------------------------------------------------------------------
    def drain_journal(self) -> list:
        """The core's journal since the last drain (same contract as ``Core.drain_journal``)."""
        self._mirror(self.core.drain_journal())
        out, self._ready = self._ready, []
        return out

    def _mirror(self, entries: list, apply: bool = True) -> None:
        if not entries:
            return
        self._ready.extend(entries)
        if not apply or self._stale:
            return
        started = time.perf_counter()
        db = self.oracle.db
        for table, op, key, cols in entries:
            where = " AND ".join(f"{k} = ?" for k in _KEYS[table])
            if op == "update":
                if cols:
                    sets = ", ".join(f"{c} = ?" for c in cols)
                    db.execute(f"UPDATE {table} SET {sets} WHERE {where}", (*cols.values(), *key))
            elif op == "insert":
                names = ", ".join(cols)
                db.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})",
                           tuple(cols.values()))
                if table == "members":
                    self._sessions[key[0]] = cols.get("session_uuid") or ""
            elif op == "delete":
                db.execute(f"DELETE FROM {table} WHERE {where}", key)
                if table == "members":
                    self._forget_member(key[0])
            else:
                raise ValueError(f"journal entry with unknown op {op!r} for {table} {key}")
            if table == "members" and op == "update" and "session_uuid" in cols:
                self._sessions[key[0]] = cols["session_uuid"] or ""
        self.mirror_seconds += time.perf_counter() - started

    def _forget_member(self, member_uuid: str) -> None:
        session = self._sessions.pop(member_uuid, "")
        if session:  # the member channel is gone: its channel variables with it
            self.oracle.channel_vars.pop(session, None)

    def resync(self) -> None:
        """Rebuild the SQLite tables from the core's rows (at start and after a mismatch)."""
        started = time.perf_counter()
        db = self.oracle.db
        for table in S.TABLE_COLUMNS:
            db.execute(f"DELETE FROM {table}")
            self.oracle.load_rows(table, self.core.rows(table))  # members in creation order = rowid
        self._sessions = {r["uuid"]: r["session_uuid"] or "" for r in self.core.rows("members")}
        live = set(self._sessions.values())
        for session in [s for s in self.oracle.channel_vars if s not in live]:
            del self.oracle.channel_vars[session]
        self._stale = False
        self.mirror_seconds += time.perf_counter() - started

    # -- dispatching ------------------------------------------------------------------------------
    def dispatch(self, now: int) -> list:
        """One mod_callcenter pass over SQLite, then the core's offers for the same instant."""
        self._mirror(self.core.drain_journal())  # e.g. member_timeouts/discard just before
        if self._stale:
            self.resync()
        offers = self.core.dispatch(now)
        # `random` queues: the PRNGs differ, so the oracle tries the core's pick first in its level
        self.oracle.random_hint = {
            o.member_uuid: o.agent for o in offers if o.strategy.lower() == S.RANDOM
        }
        started = time.perf_counter()
        oracle_offers = self.oracle.dispatch(now)
        self.sql_seconds += time.perf_counter() - started
        self.oracle.offers.clear()  # results go to the core; the oracle learns them from the journal
        self.passes += 1
        got = [(o.member_uuid, o.agent, o.queue) for o in offers]
        want = [(o.member_uuid, o.agent, o.queue) for o in oracle_offers]
        # the oracle's pass already wrote this pass's claims and offer bookkeeping into SQLite
        self._mirror(self.core.drain_journal(), apply=got != want)
        if got != want:
            self.mismatches += 1
            self.last_mismatch = f"pass at {now}: core {got} oracle {want}"
            log.warning("oracle mode: core and oracle disagree (%d so far): %s", self.mismatches, self.last_mismatch)
            self._stale = True  # SQLite holds the oracle's claims: rebuild it from the core
        return offers

    def next_change(self, now: int) -> None:
        """No computed wake-ups: mod_callcenter only polls (``poll_interval``)."""
        return None


def make_dispatch_core(cfg) -> Core | OracleDispatchCore:
    """The dispatch core ``cfg.ccfast.dispatcher`` asks for: ``core`` (default) or ``oracle``."""
    core = Core(instance_id=cfg.settings.cc_instance_id, reserve_agents=cfg.settings.reserve_agents)
    mode = getattr(getattr(cfg, "ccfast", None), "dispatcher", "core")
    if mode == "oracle":
        return OracleDispatchCore(core)
    if mode != "core":
        raise ValueError(f"unknown dispatcher mode {mode!r}; expected core | oracle")
    return core
