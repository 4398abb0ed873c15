"""mod_callcenter's dispatch algorithm as SQL over SQLite: the reference for the Cython core.

The oracle keeps the three tables exactly as mod_callcenter creates them (reference §1.1: no keys,
no indexes) in an in-memory SQLite database and runs one dispatch pass the way the module's
dispatcher thread does (§4): the member query, then per member the strategy-change tracking, the
candidate agents⋈tiers query of the queue's strategy, the per-row tier rules and eligibility
checks, the member claim and the offer bookkeeping — each as the same SQL statement the C code
issues, in the same order. Offer results (§5.5-§5.8) are the module's UPDATE/DELETE statements.

What the module keeps outside the database is kept in Python dicts, as the module does:
  * member channel variables (top-down pointer ``cc_last_agent_tier_level/position``,
    ring-progressively ``cc_last_originated_call``), keyed by the member's ``session_uuid``
    (a member whose session uuid is empty has no channel, so nothing is stored or read);
  * per queue ``last_agent_exist`` / ``last_agent_exist_check`` (§4.7).

Deliberate differences from the C code, shared with the core (docs/core-contract.md):
  * deterministic tie-breaks: members by score DESC then ``rowid`` (creation order); candidates by
    the strategy's keys then ``agents.name``; round-robin pointer ties by smallest agent name;
  * ``random()`` is a seeded application function (SQLite's own cannot be seeded);
  * the bugs W6, W7 (and W8, not reachable through this API) are fixed the way the core fixes them
    (docs/differences.md; see ``_release_reservation`` and ``offer_answered``);
  * ``queue_set`` on a loaded queue acts like ``queue reload`` (no-agent timer values restart).

The oracle is also the benchmark baseline ("what mod_callcenter's algorithm costs"), so it is not
optimised beyond what the module does: plain queries, no extra indexes.
"""

from __future__ import annotations

import dataclasses
import random as _random
import sqlite3
from collections.abc import Callable, Iterable

from . import strings as S
from .params import QueueParams, atoi
from .store.schema import create_table_sql

__all__ = ["Oracle", "OracleError", "Offer", "Answer", "Cancel", "DDL"]

# the three tables exactly as mod_callcenter creates them (§1.1), from the store's one definition
DDL = ";\n".join(create_table_sql(table) for table in ("members", "agents", "tiers")) + ";"

# Columns read by the candidate query (L2632-2699), in the module's order.
_CANDIDATE_COLUMNS = (
    "instance_id, name, status, contact, no_answer_count, max_no_answer, reject_delay_time, "
    "busy_delay_time, no_answer_delay_time, tiers.state AS tier_state, agents.last_bridge_end, "
    "agents.wrap_up_time, agents.state AS agent_state, agents.ready_time, "
    "tiers.position AS tiers_position, tiers.level AS tiers_level, agents.type, agents.uuid, "
    "external_calls_count, agents.last_offered_call AS agents_last_offered_call"
)
_CANDIDATE_FROM = (
    "FROM agents LEFT JOIN tiers ON (agents.name = tiers.agent) "
    "WHERE tiers.queue = :queue AND (agents.status = :st1 OR agents.status = :st2 OR agents.status = :st3)"
)
# ORDER BY of the single-query strategies (L2672-2691); every one ends with the name tie-break.
_ORDER_BY = {
    S.LONGEST_IDLE_AGENT: "tiers_level, agents.last_bridge_end, tiers_position",
    S.AGENT_WITH_LEAST_TALK_TIME: "tiers_level, agents.talk_time, tiers_position",
    S.AGENT_WITH_FEWEST_CALLS: "tiers_level, agents.calls_answered, tiers_position",
    S.RING_ALL: "tiers_level, tiers_position",
    S.RING_PROGRESSIVELY: "tiers_level, tiers_position",
    S.RANDOM: "tiers_level, (agents.name = :hint) DESC, random()",
    S.SEQUENTIALLY_BY_AGENT_ORDER: "tiers_level, tiers_position, agents_last_offered_call",
}
_UNION_ORDER_BY = "dyn_order ASC, tiers_level, tiers_position, agents_last_offered_call, agents.name"
# round-robin pointer: the tier (in Q) of the agent offered most recently (L2655-2656)
_RR_POINTER = (
    "(SELECT tiers.{col} FROM agents LEFT JOIN tiers ON (agents.name = tiers.agent) "
    "WHERE tiers.queue = :queue AND agents.last_offered_call > 0 "
    "ORDER BY agents.last_offered_call DESC, agents.name ASC LIMIT 1)"
)

_BUSY_CAUSES = (S.HANGUP_USER_BUSY, S.HANGUP_NORMAL_CIRCUIT_CONGESTION)
_NO_DELAY_CAUSES = (S.HANGUP_LOSE_RACE, S.HANGUP_ORIGINATOR_CANCEL)


class OracleError(Exception):
    """Bad input to the oracle (unknown table/column, unknown or finished offer)."""


@dataclasses.dataclass(slots=True)
class Offer:
    """One agent leg to originate, with the snapshot the offer thread keeps (§5.1 step 1)."""

    offer_id: int
    queue: str
    member_uuid: str
    member_session_uuid: str
    agent: str
    agent_type: str
    agent_contact: str
    agent_uuid: str
    agent_system: str
    strategy: str
    level: int
    position: int
    cid_number: str
    cid_name: str
    joined_epoch: int
    # snapshot used when the result comes back (not part of the public Offer contract)
    agent_status: str = ""
    no_answer_count: int = 0
    max_no_answer: int = 0
    reject_delay_time: int = 0
    busy_delay_time: int = 0
    no_answer_delay_time: int = 0
    agent_no_answer_status: str | None = S.STATUS_ON_BREAK
    phase: str = "ringing"  # ringing -> answered -> bridged -> done
    answered_uuid: str = ""


@dataclasses.dataclass(slots=True)
class Cancel:
    offer_id: int
    member_uuid: str
    agent: str
    cause: str


@dataclasses.dataclass(slots=True)
class Answer:
    won: bool
    cancel: list[Cancel]


def _is(value: str | None, canonical: str) -> bool:
    """C ``!strcasecmp(value, canonical)``."""
    return (value or "").lower() == canonical.lower()


class Oracle:
    """mod_callcenter's dispatcher over SQLite. Same calls as the [oracle] subset of ``Core``."""

    def __init__(self, instance_id: str = S.SINGLE_BOX, reserve_agents: bool = False, seed: int = 0):
        self.instance_id = instance_id
        self.reserve_agents = reserve_agents
        self._rng = _random.Random(seed)
        # autocommit: the module runs every statement on its own, no transactions (§1.5)
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        self.db.row_factory = sqlite3.Row
        # SQLite's random() cannot be seeded; an application function of that name overrides it
        self.db.create_function("random", 0, lambda: self._rng.getrandbits(62))
        self.db.executescript(DDL)
        self.queues: dict[str, QueueParams] = {}
        self.agent_exist: dict[str, list[int]] = {}  # queue -> [last_agent_exist, last_agent_exist_check]
        self.channel_vars: dict[str, dict[str, int]] = {}  # member session uuid -> vars
        self.offers: dict[int, Offer] = {}
        self._next_offer_id = 1
        # random strategy: member uuid -> agent to try first within its level (differential tests)
        self.random_hint: dict[str, str] = {}

    # -- small SQL helpers -------------------------------------------------------------------
    def _x(self, sql: str, params: dict | tuple = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def _count(self, sql: str, params: dict | tuple) -> int:
        return int(self._x(sql, params).fetchone()[0])

    # -- queues ------------------------------------------------------------------------------
    def queue_set(self, params: QueueParams) -> None:
        """Add or replace a queue. Like `queue reload`, the in-memory no-agent timer restarts."""
        self.queues[params.name] = params
        self.agent_exist[params.name] = [0, 0]

    def queue_remove(self, name: str) -> None:
        self.queues.pop(name, None)
        self.agent_exist.pop(name, None)

    def queue_params(self, name: str) -> QueueParams | None:
        return self.queues.get(name)

    def queue_names(self) -> list[str]:
        return sorted(self.queues)

    def queue_agent_exist(self, name: str) -> tuple[int, int]:
        """(last_agent_exist, last_agent_exist_check) of §4.7."""
        exist, check = self.agent_exist[name]
        return exist, check

    # -- rows --------------------------------------------------------------------------------
    def load_rows(self, table: str, rows: Iterable[dict]) -> None:
        """Append rows as given; missing columns take the DDL default."""
        columns = S.TABLE_COLUMNS.get(table)
        if columns is None:
            raise OracleError(f"unknown table {table!r}; expected one of {', '.join(S.TABLE_COLUMNS)}")
        for row in rows:
            unknown = set(row) - set(columns)
            if unknown:
                raise OracleError(f"unknown column(s) for {table}: {', '.join(sorted(unknown))}")
            names = [c for c in columns if c in row]
            self._x(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                tuple(row[c] for c in names),
            )

    def rows(self, table: str) -> list[dict]:
        """All rows: agents by name, tiers by (queue, agent), members by creation order."""
        order = {"agents": "name, rowid", "tiers": "queue, agent, rowid", "members": "rowid"}.get(table)
        if order is None:
            raise OracleError(f"unknown table {table!r}; expected one of {', '.join(S.TABLE_COLUMNS)}")
        cols = ", ".join(S.TABLE_COLUMNS[table])
        return [dict(r) for r in self._x(f"SELECT {cols} FROM {table} ORDER BY {order}")]

    # -- dispatch (§4) -----------------------------------------------------------------------
    def dispatch(self, now: int) -> list[Offer]:
        """One pass of the dispatcher thread (L2781-2788): every selected member, best score first."""
        members = self._x(
            "SELECT queue, uuid, session_uuid, cid_number, cid_name, joined_epoch,"
            " (:now - joined_epoch) + base_score + skill_score AS score, state, abandoned_epoch,"
            " serving_agent, instance_id FROM members"
            " WHERE (state = :waiting OR state = :abandoned"
            "        OR (serving_agent = :ring_all AND state = :trying)"
            "        OR (serving_agent = :ring_prog AND state = :trying))"
            "   AND instance_id = :self"
            " ORDER BY score DESC, rowid",
            {
                "now": now, "waiting": S.MEMBER_WAITING, "abandoned": S.MEMBER_ABANDONED,
                "trying": S.MEMBER_TRYING, "ring_all": S.RING_ALL, "ring_prog": S.RING_PROGRESSIVELY,
                "self": self.instance_id,
            },
        ).fetchall()  # SQLite sorts before the first row: the pass works on this snapshot
        offers: list[Offer] = []
        for member in members:
            self._process_member(member, now, offers)
        return offers

    def _process_member(self, m: sqlite3.Row, now: int, offers: list[Offer]) -> None:
        """members_callback (L2471-2755)."""
        queue = self.queues.get(m["queue"])
        if queue is None:  # step 1: queue unknown -> the row is deleted
            self._x("DELETE FROM members WHERE uuid = ? AND instance_id = ?", (m["uuid"], m["instance_id"]))
            return
        strategy = queue.strategy
        if _is(m["state"], S.MEMBER_ABANDONED):  # step 3: discard after the resume window (§3.7)
            epoch = m["abandoned_epoch"] or m["joined_epoch"]
            if epoch + queue.discard_abandoned_after < now:
                self._x(
                    "DELETE FROM members WHERE uuid = ? AND instance_id = ?"
                    " AND (abandoned_epoch = ? OR joined_epoch = ?)",
                    (m["uuid"], m["instance_id"], epoch, m["joined_epoch"]),
                )
            return
        self._track_strategy_change(m["uuid"], m["serving_agent"] or "", strategy)

        ring = _is(strategy, S.RING_ALL) or _is(strategy, S.RING_PROGRESSIVELY)
        if ring:  # step 6: ring members are Trying from their first pass on
            self._x(
                "UPDATE members SET state = ? WHERE state = ? AND uuid = ? AND instance_id = ?",
                (S.MEMBER_TRYING, S.MEMBER_WAITING, m["uuid"], m["instance_id"]),
            )
        chan = self.channel_vars.get(m["session_uuid"]) if m["session_uuid"] else None
        candidates = self._candidates(queue, m, chan)
        if _is(strategy, S.RING_PROGRESSIVELY) and chan is not None:  # step 8: one new leg per delay
            last = chan.get("cc_last_originated_call")
            if last is not None and now < last + queue.effective_ring_progressively_delay:
                return  # (the module sleeps 500 ms here, W3) — no no-agent bookkeeping either
        agent_found = self._process_rows(queue, m, candidates(), now, offers)

        exist = self.agent_exist.setdefault(queue.name, [0, 0])  # §4.7
        exist[1] = now
        if agent_found:
            exist[0] = now
        elif _is(strategy, S.TOP_DOWN) and chan is not None:  # restart the walk from the top
            chan.pop("cc_last_agent_tier_position", None)
            chan.pop("cc_last_agent_tier_level", None)

    def _track_strategy_change(self, uuid: str, marker: str, strategy: str) -> None:
        """§4.2 step 4 (L2545-2591): adjust a member's ring marker to the queue's current strategy."""
        upd = "UPDATE members SET serving_agent = ?{extra} WHERE uuid = ? AND state = ? AND serving_agent = ?"
        if _is(marker, S.RING_ALL) and not _is(strategy, S.RING_ALL):
            if _is(strategy, S.RING_PROGRESSIVELY):
                self._x(upd.format(extra=""), (S.RING_PROGRESSIVELY, uuid, S.MEMBER_TRYING, S.RING_ALL))
            else:
                self._x(upd.format(extra=", state = ?"), ("", S.MEMBER_WAITING, uuid, S.MEMBER_TRYING, S.RING_ALL))
        elif _is(marker, S.RING_PROGRESSIVELY) and not _is(strategy, S.RING_PROGRESSIVELY):
            if _is(strategy, S.RING_ALL):
                self._x(upd.format(extra=""), (S.RING_ALL, uuid, S.MEMBER_TRYING, S.RING_PROGRESSIVELY))
            else:
                self._x(
                    upd.format(extra=", state = ?"),
                    ("", S.MEMBER_WAITING, uuid, S.MEMBER_TRYING, S.RING_PROGRESSIVELY),
                )
        elif _is(strategy, S.RING_ALL) and not _is(marker, S.RING_ALL):
            if _is(marker, S.RING_PROGRESSIVELY):  # unreachable (caught above), kept as in the C code
                self._x(upd.format(extra=""), (S.RING_ALL, uuid, S.MEMBER_TRYING, S.RING_PROGRESSIVELY))
            else:
                self._x(upd.format(extra=", state = ?"), (S.RING_ALL, S.MEMBER_TRYING, uuid, S.MEMBER_WAITING, ""))
        elif _is(strategy, S.RING_PROGRESSIVELY) and not _is(marker, S.RING_PROGRESSIVELY):
            if _is(marker, S.RING_ALL):  # unreachable (caught above), kept as in the C code
                self._x(upd.format(extra=""), (S.RING_PROGRESSIVELY, uuid, S.MEMBER_TRYING, S.RING_ALL))
            else:
                self._x(
                    upd.format(extra=", state = ?"),
                    (S.RING_PROGRESSIVELY, S.MEMBER_TRYING, uuid, S.MEMBER_WAITING, ""),
                )

    def _candidates(self, queue: QueueParams, m: sqlite3.Row, chan: dict | None) -> Callable[[], list]:
        """The agents⋈tiers query of the queue's strategy (§4.3, L2615-2702), as a deferred fetch."""
        params = {
            "queue": queue.name, "st1": S.STATUS_AVAILABLE, "st2": S.STATUS_ON_BREAK,
            "st3": S.STATUS_AVAILABLE_ON_DEMAND,
        }
        part = f"SELECT {_CANDIDATE_COLUMNS}, {{dyn}} AS dyn_order {_CANDIDATE_FROM}"
        key = queue.strategy.lower()
        if key == S.TOP_DOWN:
            params["pos"] = atoi(str(chan.get("cc_last_agent_tier_position", ""))) if chan else 0
            params["lvl"] = atoi(str(chan.get("cc_last_agent_tier_level", ""))) if chan else 0
            sql = (
                part.format(dyn=1) + " AND tiers.position > :pos AND tiers.level = :lvl"
                " UNION " + part.format(dyn=2) + " AND tiers.level > :lvl"
                f" ORDER BY {_UNION_ORDER_BY}"
            )
        elif key == S.ROUND_ROBIN:
            sql = (
                part.format(dyn=1)
                + f" AND tiers.position > {_RR_POINTER.format(col='position')}"
                + f" AND tiers.level = {_RR_POINTER.format(col='level')}"
                " UNION " + part.format(dyn=2) + f" ORDER BY {_UNION_ORDER_BY}"
            )
        else:
            order = _ORDER_BY.get(key, _ORDER_BY[S.SEQUENTIALLY_BY_AGENT_ORDER])  # unknown -> fallback
            params["hint"] = self.random_hint.get(m["uuid"], "")
            sql = part.format(dyn=1) + f" ORDER BY {order}, agents.name"
        return lambda: self._x(sql, params).fetchall()

    def _process_rows(self, queue: QueueParams, m: sqlite3.Row, rows: list, now: int, offers: list[Offer]) -> bool:
        """agents_callback over the candidate rows (§4.5, L2275-2469). Returns agent_found."""
        strategy = queue.strategy
        agent_found = False
        tier = 0
        tier_agent_count = 0
        for r in rows:
            agent_found = True
            level = r["tiers_level"]
            if queue.tier_rules_apply and level > tier:  # §4.6
                waited = now - m["joined_epoch"]
                wait = queue.tier_rule_wait_second
                if queue.tier_rule_no_agent_no_wait and tier_agent_count == 0:
                    tier = level
                elif queue.tier_rule_wait_multiply_level and waited >= level * wait:
                    tier, tier_agent_count = level, 0
                elif not queue.tier_rule_wait_multiply_level and waited >= wait:
                    tier, tier_agent_count = level, 0
                else:
                    break
            tier_agent_count += 1

            if not (_is(r["tier_state"], S.TIER_NO_ANSWER) or _is(r["tier_state"], S.TIER_READY)):
                continue
            if not _is(r["agent_state"], S.STATE_WAITING):
                continue
            if not r["last_bridge_end"] < now - r["wrap_up_time"]:
                continue
            if not r["ready_time"] <= now:
                continue
            if _is(r["status"], S.STATUS_ON_BREAK):
                continue
            if queue.skip_agents_with_external_calls and r["external_calls_count"] > 0:
                continue

            if not _is(r["instance_id"], S.SINGLE_BOX):  # agent of another box
                if _is(strategy, S.RING_ALL):
                    break
                continue

            reserved = False
            if self.reserve_agents:  # §4.5 step 6
                cur = self._x(
                    "UPDATE agents SET state = ? WHERE name = ? AND state = ? AND status IN (?, ?)",
                    (S.STATE_RESERVED, r["name"], S.STATE_WAITING, S.STATUS_AVAILABLE, S.STATUS_AVAILABLE_ON_DEMAND),
                )
                if cur.rowcount <= 0:
                    continue
                reserved = True

            if not self._claim(queue, m, r):
                if reserved:
                    self._release_reservation(r["name"])
                break

            offers.append(self._start_offer(queue, m, r, now))
            if not _is(strategy, S.RING_ALL):
                break
        return agent_found

    def _claim(self, queue: QueueParams, m: sqlite3.Row, r: sqlite3.Row) -> bool:
        """§4.5 step 7: map the member to the agent (or check the ring marker)."""
        strategy = queue.strategy
        if _is(strategy, S.RING_ALL) or _is(strategy, S.RING_PROGRESSIVELY):
            # the configured spelling is compared, so `Ring-All` never matches the marker (QUIRK)
            return self._count(
                "SELECT count(*) FROM members WHERE serving_agent = ? AND uuid = ? AND instance_id = ?",
                (strategy, m["uuid"], self.instance_id),
            ) > 0
        self._x(
            "UPDATE members SET serving_agent = ?, serving_system = ?, state = ?"
            " WHERE state = ? AND uuid = ? AND instance_id = ?",
            (r["name"], r["instance_id"], S.MEMBER_TRYING, S.MEMBER_WAITING, m["uuid"], self.instance_id),
        )
        return self._count(
            "SELECT count(*) FROM members WHERE serving_agent = ? AND serving_system = ? AND uuid = ? AND instance_id = ?",
            (r["name"], r["instance_id"], m["uuid"], self.instance_id),
        ) > 0

    def _release_reservation(self, agent: str) -> None:
        """W6 fix: a reservation whose member claim failed is undone (the module leaks it)."""
        self._x("UPDATE agents SET state = ? WHERE name = ? AND state = ?", (S.STATE_WAITING, agent, S.STATE_RESERVED))

    def _start_offer(self, queue: QueueParams, m: sqlite3.Row, r: sqlite3.Row, now: int) -> Offer:
        """§5.1: snapshot, member channel vars, agent Receiving, tiers Offering/Standby."""
        offer = Offer(
            offer_id=self._next_offer_id, queue=queue.name, member_uuid=m["uuid"],
            member_session_uuid=m["session_uuid"], agent=r["name"], agent_type=r["type"] or "",
            agent_contact=r["contact"] or "", agent_uuid=r["uuid"] or "", agent_system=r["instance_id"],
            strategy=queue.strategy, level=r["tiers_level"], position=r["tiers_position"],
            cid_number=m["cid_number"] or "", cid_name=m["cid_name"] or "", joined_epoch=m["joined_epoch"],
            agent_status=r["status"], no_answer_count=r["no_answer_count"], max_no_answer=r["max_no_answer"],
            reject_delay_time=r["reject_delay_time"], busy_delay_time=r["busy_delay_time"],
            no_answer_delay_time=r["no_answer_delay_time"],
            # cc_agent_str2status() then status2str(): the module writes the canonical spelling
            agent_no_answer_status=S.canonical(queue.agent_no_answer_status, S.AGENT_STATUSES),
        )
        self._next_offer_id += 1
        self.offers[offer.offer_id] = offer
        if m["session_uuid"]:  # channel variables live on the member channel
            chan = self.channel_vars.setdefault(m["session_uuid"], {})
            if _is(queue.strategy, S.RING_PROGRESSIVELY):
                chan["cc_last_originated_call"] = now
            if _is(queue.strategy, S.TOP_DOWN):
                chan["cc_last_agent_tier_position"] = r["tiers_position"]
                chan["cc_last_agent_tier_level"] = r["tiers_level"]
        self._set_agent_state(offer.agent, S.STATE_RECEIVING, now)
        self._x(
            "UPDATE tiers SET state = ? WHERE agent = ? AND queue = ?",
            (S.TIER_OFFERING, offer.agent, offer.queue),
        )
        self._x(
            "UPDATE tiers SET state = ? WHERE agent = ? AND NOT queue = ? AND state = ?",
            (S.TIER_STANDBY, offer.agent, offer.queue, S.TIER_READY),
        )
        return offer

    # -- agent updates shared by several paths (cc_agent_update) -----------------------------
    def _set_agent_state(self, agent: str, state: str, now: int) -> None:
        if state == S.STATE_RECEIVING:
            self._x("UPDATE agents SET state = ?, last_offered_call = ? WHERE name = ?", (state, now, agent))
        else:
            self._x("UPDATE agents SET state = ? WHERE name = ?", (state, agent))

    def _set_agent_status(self, agent: str, status: str, now: int) -> None:
        """`agent set status` (L1015-1050): counters reset only when becoming Available."""
        if _is(status, S.STATUS_AVAILABLE):
            self._x(
                "UPDATE agents SET status = ?, last_status_change = ?, talk_time = 0, calls_answered = 0,"
                " no_answer_count = 0 WHERE name = ? AND NOT status = ?",
                (status, now, agent, status),
            )
        else:
            self._x("UPDATE agents SET status = ?, last_status_change = ? WHERE name = ?", (status, now, agent))

    # -- offer results (§5) ------------------------------------------------------------------
    def _live(self, offer_id: int, *phases: str) -> Offer:
        offer = self.offers.get(offer_id)
        if offer is None:
            raise OracleError(f"unknown offer {offer_id}")
        if offer.phase not in phases:
            raise OracleError(f"offer {offer_id} is {offer.phase}, expected {' or '.join(phases)}")
        return offer

    def offer_answered(self, offer_id: int, agent_uuid: str, now: int) -> Answer:
        """§5.5 step 2: ring strategies race for the member; the winner cancels the other legs.

        W7 fix: a leg that loses the race is finished at once as *not bridged* (tiers back, agent
        Waiting — never Idle); the caller hangs that answered leg up.
        """
        offer = self._live(offer_id, "ringing")
        cancel: list[Cancel] = []
        if _is(offer.strategy, S.RING_ALL) or _is(offer.strategy, S.RING_PROGRESSIVELY):
            self._x(
                "UPDATE members SET serving_agent = ?, serving_system = ?, state = ?"
                " WHERE state = ? AND uuid = ? AND instance_id = ? AND serving_agent = ?",
                (offer.agent, S.SINGLE_BOX, S.MEMBER_TRYING, S.MEMBER_TRYING, offer.member_uuid,
                 self.instance_id, offer.strategy),
            )
            won = self._count(
                "SELECT count(*) FROM members WHERE serving_agent = ? AND serving_system = ? AND uuid = ? AND instance_id = ?",
                (offer.agent, S.SINGLE_BOX, offer.member_uuid, self.instance_id),
            ) > 0
            if not won:
                self._final_cleanup(offer, S.TIER_READY, bridged=False)
                return Answer(False, [])
            cancel = [
                Cancel(o.offer_id, o.member_uuid, o.agent, S.HANGUP_LOSE_RACE)
                for o in self.offers.values()
                if o.member_uuid == offer.member_uuid and o.phase == "ringing" and o.offer_id != offer_id
            ]
        offer.phase = "answered"
        offer.answered_uuid = agent_uuid
        return Answer(True, cancel)

    def offer_bridged(self, offer_id: int, now: int) -> None:
        """§5.5 steps 9-10, bridge confirmed."""
        offer = self._live(offer_id, "answered")
        self._x(
            "UPDATE members SET state = ?, bridge_epoch = ? WHERE uuid = ? AND instance_id = ?",
            (S.MEMBER_ANSWERED, now, offer.member_uuid, self.instance_id),
        )
        self._x(
            "UPDATE agents SET uuid = ?, last_bridge_start = ?, calls_answered = calls_answered + 1,"
            " no_answer_count = 0 WHERE name = ? AND instance_id = ?",
            (offer.answered_uuid, now, offer.agent, offer.agent_system),
        )
        self._x(
            "UPDATE tiers SET state = ? WHERE queue = ? AND agent = ?",
            (S.TIER_ACTIVE_INBOUND, offer.queue, offer.agent),
        )
        self._set_agent_state(offer.agent, S.STATE_IN_A_QUEUE_CALL, now)
        offer.phase = "bridged"

    def offer_ended(self, offer_id: int, now: int) -> None:
        """§5.6: the bridged call is over; agent counters, member row deleted, cleanup."""
        offer = self._live(offer_id, "bridged")
        clear_uuid = "" if _is(offer.agent_type, S.TYPE_UUID_STANDBY) else "uuid = '', "
        self._x(
            f"UPDATE agents SET {clear_uuid}last_bridge_end = ?, talk_time = talk_time + (? - last_bridge_start)"
            " WHERE name = ? AND instance_id = ?",
            (now, now, offer.agent, offer.agent_system),
        )
        self._x("DELETE FROM members WHERE uuid = ? AND instance_id = ?", (offer.member_uuid, self.instance_id))
        self._final_cleanup(offer, S.TIER_READY, bridged=True)

    def offer_failed(self, offer_id: int, cause: str, now: int) -> None:
        """§5.7 (originate not successful) then §5.8."""
        offer = self._live(offer_id, "ringing")
        self._x(
            "UPDATE members SET state = CASE state WHEN ? THEN ? ELSE state END, serving_agent = '',"
            " serving_system = '' WHERE serving_agent = ? AND serving_system = ? AND uuid = ? AND instance_id = ?",
            (S.MEMBER_TRYING, S.MEMBER_WAITING, offer.agent, offer.agent_system, offer.member_uuid, self.instance_id),
        )
        tier_result = S.TIER_READY
        if cause in _NO_DELAY_CAUSES:
            delay = 0
        elif cause in _BUSY_CAUSES:
            delay = offer.busy_delay_time
        elif cause == S.HANGUP_CALL_REJECTED:
            delay = offer.reject_delay_time
        elif cause == S.HANGUP_USER_NOT_REGISTERED:
            delay = S.USER_NOT_REGISTERED_DELAY
        else:  # no answer and everything else
            delay = offer.no_answer_delay_time
            tier_result = S.TIER_NO_ANSWER
            self._x(
                "UPDATE agents SET no_answer_count = no_answer_count + 1 WHERE name = ? AND instance_id = ?",
                (offer.agent, offer.agent_system),
            )
            if offer.max_no_answer > 0 and offer.no_answer_count + 1 >= offer.max_no_answer:
                if offer.agent_no_answer_status is not None:  # "Unknown" is refused by the status path
                    self._set_agent_status(offer.agent, offer.agent_no_answer_status, now)
        delay = max(delay, 0)
        if delay > 0:  # `agent set ready_time` also rewrites instance_id (L1096)
            self._x(
                "UPDATE agents SET ready_time = ?, instance_id = ? WHERE name = ?",
                (now + delay, S.SINGLE_BOX, offer.agent),
            )
        self._final_cleanup(offer, tier_result, bridged=False)

    def _final_cleanup(self, offer: Offer, tier_result: str, bridged: bool) -> None:
        """§5.8: tiers back, agent Waiting (Idle after a bridged On Demand call)."""
        self._x(
            "UPDATE tiers SET state = ? WHERE agent = ? AND queue = ? AND (state = ? OR state = ? OR state = ?)",
            (tier_result, offer.agent, offer.queue, S.TIER_ACTIVE_INBOUND, S.TIER_STANDBY, S.TIER_OFFERING),
        )
        self._x(
            "UPDATE tiers SET state = ? WHERE agent = ? AND NOT queue = ? AND state = ?",
            (S.TIER_READY, offer.agent, offer.queue, S.TIER_STANDBY),
        )
        idle = bridged and _is(offer.agent_status, S.STATUS_AVAILABLE_ON_DEMAND)
        self._set_agent_state(offer.agent, S.STATE_IDLE if idle else S.STATE_WAITING, 0)
        offer.phase = "done"
