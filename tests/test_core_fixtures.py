"""Row builders and small drivers shared by the core's unit tests (tests/test_core_*.py).

No tests live here; the builders give every column of the mod_callcenter tables a default so a
test only spells out what matters to it.
"""

from __future__ import annotations

from ccfast import strings as S
from ccfast._core import Core
from ccfast.params import QueueParams
from tests.strategies_state import agent_row, member_row, tier_row

T = 1_700_000_000  # a base epoch; tests speak in offsets from it


# the row builders are the differential test's (one definition of a default row per table)
agent = agent_row
tier = tier_row


def member(queue: str, uuid: str, joined: int, **kw) -> dict:
    return member_row(queue, uuid, joined, **{"cid_number": "5551000", "cid_name": "Caller", **kw})


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
