"""Row builders and small drivers shared by the core's unit tests (tests/test_core_*.py).

No tests live here; the builders give every column of the mod_callcenter tables a default so a
test only spells out what matters to it.
"""

from __future__ import annotations

from ccfast import strings as S
from ccfast._core import Core
from ccfast.params import QueueParams

T = 1_700_000_000  # a base epoch; tests speak in offsets from it


def agent(name: str, **kw) -> dict:
    """An agent that is offerable unless told otherwise (Available, Waiting, idle for long)."""
    row = {
        "name": name, "instance_id": S.SINGLE_BOX, "uuid": "", "type": S.TYPE_CALLBACK,
        "contact": f"user/{name}", "status": S.STATUS_AVAILABLE, "state": S.STATE_WAITING,
        "max_no_answer": 0, "wrap_up_time": 0, "reject_delay_time": 0, "busy_delay_time": 0,
        "no_answer_delay_time": 0, "last_bridge_start": 0, "last_bridge_end": 0, "last_offered_call": 0,
        "last_status_change": 0, "no_answer_count": 0, "calls_answered": 0, "talk_time": 0,
        "ready_time": 0, "external_calls_count": 0,
    }
    row.update(kw)
    return row


def tier(queue: str, agent_name: str, level: int = 1, position: int = 1, state: str = S.TIER_READY) -> dict:
    return {"queue": queue, "agent": agent_name, "state": state, "level": level, "position": position}


def member(queue: str, uuid: str, joined: int, **kw) -> dict:
    row = {
        "queue": queue, "instance_id": S.SINGLE_BOX, "uuid": uuid, "session_uuid": f"sess-{uuid}",
        "cid_number": "5551000", "cid_name": "Caller", "system_epoch": joined, "joined_epoch": joined,
        "rejoined_epoch": 0, "bridge_epoch": 0, "abandoned_epoch": 0, "base_score": 0, "skill_score": 0,
        "serving_agent": "", "serving_system": "", "state": S.MEMBER_WAITING,
    }
    row.update(kw)
    return row


def make(queues, agents=(), tiers=(), members=(), reserve: bool = False, seed: int = 7) -> Core:
    """A core with these queues (QueueParams or (name, strategy) or name) and rows loaded."""
    core = Core(S.SINGLE_BOX, reserve, seed)
    for q in queues:
        if isinstance(q, str):
            q = QueueParams(name=q)
        elif isinstance(q, tuple):
            q = QueueParams(name=q[0], strategy=q[1])
        core.queue_set(q)
    core.load_rows("agents", list(agents))
    core.load_rows("tiers", list(tiers))
    core.load_rows("members", list(members))
    return core


def join(core: Core, queue: str, uuid: str, now: int, cid: str = "5551000", base_score: int = 0):
    return core.member_join(queue, uuid, f"sess-{uuid}-{now}", cid, "Caller", now, base_score, now)


def pairs(offers) -> list[tuple[str, str]]:
    return [(o.member_uuid, o.agent) for o in offers]


def agents_of(offers) -> list[str]:
    return [o.agent for o in offers]


def row(core: Core, table: str, key: str) -> dict:
    field = {"agents": "name", "members": "uuid"}[table]
    for r in core.rows(table):
        if r[field] == key:
            return r
    raise KeyError(key)


def tier_row(core: Core, queue: str, agent_name: str) -> dict:
    for r in core.rows("tiers"):
        if r["queue"] == queue and r["agent"] == agent_name:
            return r
    raise KeyError((queue, agent_name))


def answer_and_end(core: Core, offer, now: int, end: int | None = None) -> None:
    """The agent answers, is bridged, and the call ends at `end` (default now + 1)."""
    ans = core.offer_answered(offer.offer_id, f"leg-{offer.offer_id}", now)
    assert ans.won
    core.offer_bridged(offer.offer_id, now)
    core.offer_ended(offer.offer_id, now + 1 if end is None else end)


def fail(core: Core, offer, now: int, cause: str = S.HANGUP_NO_ANSWER) -> None:
    core.offer_failed(offer.offer_id, cause, now)


def actions(events) -> list[str]:
    return [a for a, _ in events]
