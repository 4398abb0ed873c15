"""A stand-in for ``ccfast._core.Core`` covering only the API-level methods, written from
reference §7.2 (mod_callcenter's cc_agent_*/cc_tier_* SQL). The API tests run against the real
Core when it can be imported; this keeps them meaningful before it lands (and documents what the
API expects from the Core). It does no dispatch.
"""

from __future__ import annotations

import dataclasses

from ccfast import strings as S
from ccfast.params import QueueParams, atoi


class CoreError(Exception):
    pass


def _ci(value: str, allowed) -> bool:
    return S.canonical(value, allowed) is not None


class FakeCore:
    def __init__(self, instance_id: str = S.SINGLE_BOX, reserve_agents: bool = False, seed: int = 0):
        self._queues: dict[str, QueueParams] = {}
        self._counters: dict[str, tuple[int, int]] = {}
        self._agents: dict[str, dict] = {}
        self._tiers: list[dict] = []
        self._members: list[dict] = []
        self.events: list[tuple[str, dict]] = []

    # queues
    def queue_set(self, params: QueueParams) -> None:
        self._queues[params.name] = dataclasses.replace(params)
        self._counters[params.name] = (0, 0)

    def queue_remove(self, name: str) -> None:
        self._queues.pop(name, None)

    def queue_params(self, name: str):
        return self._queues.get(name)

    def queue_names(self) -> list[str]:
        return list(self._queues)

    def queue_counters(self, name: str) -> tuple[int, int]:
        return self._counters.get(name, (0, 0))

    # rows
    def load_rows(self, table: str, rows) -> None:
        for row in rows:
            full = {c: row.get(c) for c in S.TABLE_COLUMNS[table]}
            if table == "agents":
                self._agents[full["name"]] = full
            elif table == "tiers":
                self._tiers.append(full)
            else:
                self._members.append(full)

    def rows(self, table: str) -> list[dict]:
        if table == "agents":
            return [dict(self._agents[k]) for k in sorted(self._agents)]
        if table == "tiers":
            return [dict(t) for t in sorted(self._tiers, key=lambda t: (t["queue"], t["agent"]))]
        return [dict(m) for m in self._members]

    # agents
    def agent_add(self, name: str, type: str, now: int) -> None:
        if not _ci(type, S.AGENT_TYPES):
            raise CoreError("Agent type invalid!")
        if name in self._agents:
            raise CoreError("Agent already exist!")
        row = {c: 0 for c in S.AGENTS_COLUMNS}
        row.update(name=name, instance_id=S.SINGLE_BOX, uuid=None, type=type, contact=None,
                   status=S.STATUS_LOGGED_OUT, state=S.STATE_WAITING)
        self._agents[name] = row
        self.events.append((S.ACTION_AGENT_ADD, {"CC-Agent": name, "CC-Agent-Type": type}))

    def agent_del(self, name: str) -> None:
        self._agents.pop(name, None)
        self._tiers = [t for t in self._tiers if t["agent"] != name]

    def agent_set(self, key: str, name: str, value: str, now: int) -> list:
        row = self._agents.get(name)
        if row is None:
            raise CoreError("Agent not found!")
        k = key.lower()
        if k == "status":
            status = S.canonical(value, S.AGENT_STATUSES)
            if status is None:
                raise CoreError("Invalid Agent Status!")
            if status == S.STATUS_AVAILABLE:
                if row["status"] != value:
                    row.update(status=value, last_status_change=now, talk_time=0, calls_answered=0, no_answer_count=0)
            else:
                row.update(status=value, last_status_change=now)
        elif k == "state":
            if not _ci(value, S.AGENT_STATES):
                raise CoreError("Invalid Agent State!")
            row["state"] = value
            if S.canonical(value, S.AGENT_STATES) == S.STATE_RECEIVING:
                row["last_offered_call"] = now
        elif k in ("uuid", "contact"):
            row[k] = value
            row["instance_id"] = S.SINGLE_BOX
        elif k in ("ready_time", "busy_delay_time", "reject_delay_time", "no_answer_delay_time",
                   "max_no_answer", "wrap_up_time"):
            row[k] = atoi(value)
            row["instance_id"] = S.SINGLE_BOX
        elif k == "type":
            if not _ci(value, S.AGENT_TYPES):
                raise CoreError("Invalid Agent Type!")
            row["type"] = value
        elif k == "state_if_waiting":
            if not _ci(value, S.AGENT_STATES):
                raise CoreError("Invalid Agent State!")
            if row["state"] == S.STATE_WAITING and row["status"] in (S.STATUS_AVAILABLE, S.STATUS_AVAILABLE_ON_DEMAND):
                row["state"] = value
            else:
                raise CoreError("Agent not found!")
        else:
            raise CoreError("Invalid Agent Update KEY!")
        return []

    def agent_get(self, key: str, name: str) -> str:
        row = self._agents.get(name)
        if row is None:
            raise CoreError("Agent not found!")
        k = key.lower()
        if k not in ("status", "state", "uuid"):
            raise CoreError("Invalid Agent Update KEY!")
        return row[k] if row[k] is not None else ""

    # tiers
    def _tier(self, queue: str, agent: str):
        for tier in self._tiers:
            if tier["queue"] == queue and tier["agent"] == agent:
                return tier
        return None

    def tier_add(self, queue: str, agent: str, level: int = 1, position: int = 1) -> None:
        if queue not in self._queues:
            raise CoreError("Queue not found!")
        if agent not in self._agents:
            raise CoreError("Agent not found!")
        if self._tier(queue, agent) is not None:
            raise CoreError("Tier already exist!")
        self._tiers.append({"queue": queue, "agent": agent, "state": S.TIER_READY, "level": level, "position": position})

    def tier_set(self, key: str, queue: str, agent: str, value: str) -> None:
        tier = self._tier(queue, agent)
        if tier is None:
            raise CoreError("Unknown Error!")
        if agent not in self._agents or queue not in self._queues:
            raise CoreError("Agent not found!")
        k = key.lower()
        if k == "state":
            if not _ci(value, S.TIER_STATES):
                raise CoreError("Invalid Tier State!")
            tier["state"] = value
        elif k in ("level", "position"):
            tier[k] = atoi(value)
        else:
            raise CoreError("Invalid Tier Update KEY!")

    def tier_del(self, queue: str, agent: str) -> None:
        self._tiers = [t for t in self._tiers if not (t["queue"] == queue and t["agent"] == agent)]
