"""Restart recovery helpers: mod_callcenter's startup reset (§1.5) and the config tables' names.

:func:`startup_reset` is the pure transformation of loaded rows; :func:`startup_reset_statements`
is the same as SQL (what ``Store.startup_reset`` runs). Both do, in this order:

* agents with ``instance_id = 'single_box'`` (the literal, W9): ``state='Waiting'``, ``uuid=''``,
  ``external_calls_count=0``;
* tiers whose agent is one of those agents (exact name match): ``state='Ready'``;
* members with ``instance_id = <self>``: ``state='Abandoned'``, ``session_uuid=''``
  (``abandoned_epoch`` untouched);
* then all tiers are deleted if ``truncate_tiers``, all agents if ``truncate_agents``.
"""

from __future__ import annotations

import copy

from .. import strings as S
from .base import Rows
from .schema import AGENTS, MEMBERS, TIERS, quote

CONFIG_TABLES = ("cc_queues", "cc_agents", "cc_tiers", "cc_settings")


def startup_reset(
    rows: Rows, instance_id: str, *, truncate_agents: bool = False, truncate_tiers: bool = False
) -> Rows:
    """Return new rows with §1.5 applied (the input is not modified)."""
    out = {t: [dict(r) for r in rows.get(t, [])] for t in (AGENTS, TIERS, MEMBERS)}
    reset_agents = set()
    for agent in out[AGENTS]:
        if agent.get("instance_id") == S.SINGLE_BOX:
            agent.update(state=S.STATE_WAITING, uuid="", external_calls_count=0)
            reset_agents.add(agent.get("name"))
    for tier in out[TIERS]:
        if tier.get("agent") in reset_agents:
            tier["state"] = S.TIER_READY
    for member in out[MEMBERS]:
        if member.get("instance_id") == instance_id:
            member.update(state=S.MEMBER_ABANDONED, session_uuid="")
    if truncate_tiers:
        out[TIERS] = []
    if truncate_agents:
        out[AGENTS] = []
    for extra in set(rows) - set(out):  # keep anything else the caller passed, untouched
        out[extra] = copy.deepcopy(rows[extra])
    return out


def startup_reset_statements(
    instance_id: str, *, truncate_agents: bool = False, truncate_tiers: bool = False, dollar: bool = False,
    reset: bool = True,
) -> list[tuple[str, list[tuple] | None]]:
    """The §1.5 statements as ``(sql, [params])`` for executemany (``None``: no parameters).

    ``reset=False`` leaves only the truncations: the caller resets the rows itself (the service
    does it in the core, ``Core.load_recovered``, so callers can be re-adopted after a crash).
    """

    def ph(i: int) -> str:
        return f"${i}" if dollar else "?"

    q = quote
    out: list[tuple[str, list[tuple] | None]] = [
        (
            f"UPDATE {q(AGENTS)} SET {q('state')} = {ph(1)}, {q('uuid')} = {ph(2)}, "
            f"{q('external_calls_count')} = 0 WHERE {q('instance_id')} = {ph(3)}",
            [(S.STATE_WAITING, "", S.SINGLE_BOX)],
        ),
        (
            f"UPDATE {q(TIERS)} SET {q('state')} = {ph(1)} WHERE {q('agent')} IN "
            f"(SELECT {q('name')} FROM {q(AGENTS)} WHERE {q('instance_id')} = {ph(2)})",
            [(S.TIER_READY, S.SINGLE_BOX)],
        ),
        (
            f"UPDATE {q(MEMBERS)} SET {q('state')} = {ph(1)}, {q('session_uuid')} = {ph(2)} "
            f"WHERE {q('instance_id')} = {ph(3)}",
            [(S.MEMBER_ABANDONED, "", instance_id)],
        ),
    ]
    if not reset:
        out = []
    if truncate_tiers:
        out.append((f"DELETE FROM {q(TIERS)}", None))
    if truncate_agents:
        out.append((f"DELETE FROM {q(AGENTS)}", None))
    return out
