"""What the demo counts: per-queue outcomes from ccfast's own events, and the end-of-run summary.

``Tally.on_event(action, headers)`` is registered in ``Service.event_listeners`` (it sees every
``CUSTOM callcenter::info`` event as fired). Outcomes per member, from ``member-queue-end``:

* ``answered``      — a ``bridge-agent-start`` was seen for the member;
* ``caller_hangup`` — Cancel / BREAK_OUT and the simulated caller had lost patience (abandoned);
* ``timeout``, ``no_agent_timeout``, ``exit_key`` — Cancel with that CC-Cancel-Reason (abandoned);
* ``break_out``     — Cancel / BREAK_OUT otherwise (abandoned: left the queue some other way);
* ``cut_at_end``    — the demo hung the caller up while draining (not counted as abandoned).

``summarize`` adds the end state: stuck agents (Receiving / Reserved / In a queue call with no
live call of theirs in the simulator) and stuck members (Waiting / Trying rows whose channel is
gone), and caller waits from the simulator's timestamps (socket connected → bridged).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable

from .. import strings as S

ABANDON_CAUSES = ("caller_hangup", "timeout", "no_agent_timeout", "exit_key", "break_out")
_REASON_CAUSE = {
    S.CANCEL_TIMEOUT: "timeout",
    S.CANCEL_NO_AGENT_TIMEOUT: "no_agent_timeout",
    S.CANCEL_EXIT_WITH_KEY: "exit_key",
}
BUSY_STATES = (S.STATE_RECEIVING, S.STATE_RESERVED, S.STATE_IN_A_QUEUE_CALL)
LIVE_MEMBER_STATES = (S.MEMBER_WAITING, S.MEMBER_TRYING)
_DIAL_PREFIX = re.compile(r"^(?:\[[^\]]*\]|\{[^}]*\}|<[^>]*>)+")
SESSION_UUID = "CC-Member-Session-UUID"


class QueueCounts:
    __slots__ = ("offered", "answered", "abandoned", "cut")

    def __init__(self) -> None:
        self.offered = self.answered = self.abandoned = self.cut = 0


class Tally:
    """Counts per queue and per member, fed by the service's fired events."""

    def __init__(self, queues: Iterable[str], clock=None) -> None:
        self.queues: dict[str, QueueCounts] = {q: QueueCounts() for q in queues}
        self.outcomes: dict[str, str] = {}  # member session uuid → outcome
        self.answered: set[str] = set()
        self.joined: collections.deque = collections.deque()  # join times (for calls per second)
        self.joins = 0
        self.abandoned_by = collections.Counter({c: 0 for c in ABANDON_CAUSES})
        self.cut_at_end: set[str] = set()  # session uuids hung up by the demo's drain
        self.patience_ran_out = lambda uuid: False  # set by the demo: the sim's CallRecord.abandoned
        self._clock = clock

    def _queue(self, name: str) -> QueueCounts:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = QueueCounts()
        return q

    def on_event(self, action: str, headers) -> None:
        h = dict(headers)
        queue = h.get(S.H_CC_QUEUE, "")
        uuid = h.get(SESSION_UUID) or h.get(S.H_CC_MEMBER_UUID, "")
        if action == S.ACTION_MEMBER_QUEUE_START:
            self._queue(queue).offered += 1
            self.joins += 1
            if self._clock is not None:
                self.joined.append(self._clock())
        elif action == S.ACTION_BRIDGE_AGENT_START:
            if uuid not in self.answered:
                self.answered.add(uuid)
                self._queue(queue).answered += 1
        elif action == S.ACTION_MEMBER_QUEUE_END:
            if uuid in self.outcomes:
                return
            if uuid in self.answered:
                self.outcomes[uuid] = "answered"
                return
            if uuid in self.cut_at_end:
                self.outcomes[uuid] = "cut_at_end"
                self._queue(queue).cut += 1
                return
            reason = h.get(S.H_CC_CANCEL_REASON, "")
            cause = _REASON_CAUSE.get(reason)
            if cause is None:
                cause = "caller_hangup" if self.patience_ran_out(uuid) else "break_out"
            self.outcomes[uuid] = cause
            self.abandoned_by[cause] += 1
            self._queue(queue).abandoned += 1

    def calls_per_second(self, now: float, window: float = 5.0) -> float:
        while self.joined and self.joined[0] < now - window:
            self.joined.popleft()
        return len(self.joined) / window


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(min(rank, len(ordered))) - 1]


def endpoint_of(contact: str) -> str:
    """A contact without its leading ``[...]``/``{...}``/``<...>`` variable blocks."""
    return _DIAL_PREFIX.sub("", contact or "")


def stuck_agents(agent_rows: Iterable[dict], live_endpoints: set[str]) -> list[str]:
    """Agents left Receiving/Reserved/In a queue call with no live call at their contact."""
    return sorted(row["name"] for row in agent_rows
                  if row["state"] in BUSY_STATES and endpoint_of(row.get("contact") or "") not in live_endpoints)


def stuck_members(member_rows: Iterable[dict], channel_alive) -> list[str]:
    """Member rows still Waiting/Trying whose channel (``session_uuid``) is gone."""
    return sorted(row["uuid"] for row in member_rows
                  if row["state"] in LIVE_MEMBER_STATES and not channel_alive(row.get("session_uuid") or row["uuid"]))


def _round(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def wait_stats(values: list[float]) -> dict:
    return {"n": len(values), "p50": _round(percentile(values, 50)), "p90": _round(percentile(values, 90)),
            "p99": _round(percentile(values, 99)), "max": _round(max(values) if values else None)}


def summarize(*, tally: Tally, calls: list, agent_rows: list[dict], member_rows: list[dict],
              live_endpoints: set[str], channel_alive, kpi: dict, options: dict, extra: dict) -> dict:
    """The JSON summary of a run (see the module docstring for the definitions)."""
    answered_waits = [r.bridged_at - (r.connected_at or r.created) for r in calls if r.bridged_at is not None]
    abandoned_waits = [r.ended_at - (r.connected_at or r.created) for r in calls
                       if tally.outcomes.get(r.member_uuid) in ABANDON_CAUSES and r.ended_at is not None]
    outcomes = collections.Counter(tally.outcomes.values())
    agents_by = collections.Counter(f"{row['status']} / {row['state']}" for row in agent_rows)
    stuck_a = stuck_agents(agent_rows, live_endpoints)
    stuck_m = stuck_members(member_rows, channel_alive)
    queues = {}
    for name, counts in sorted(tally.queues.items()):
        k = kpi.get(name, {}).get("since_start", {})
        queues[name] = {
            "offered": counts.offered, "answered": counts.answered, "abandoned": counts.abandoned,
            "cut_at_end": counts.cut, "service_level": _round(k.get("service_level")),
            "asa_s": _round(k.get("asa_s")), "threshold_s": kpi.get(name, {}).get("threshold_s"),
        }
    aw = wait_stats(answered_waits)
    return {
        **options,
        "calls": len(calls),
        "queued": tally.joins,
        "answered": len(tally.answered),
        "abandoned": sum(tally.abandoned_by.values()),
        "abandoned_by_cause": dict(tally.abandoned_by),
        "cut_at_end": outcomes.get("cut_at_end", 0),
        "not_ended": tally.joins - len(tally.outcomes),
        "p50_wait_s": aw["p50"],
        "p99_wait_s": aw["p99"],
        "wait_answered_s": aw,
        "wait_abandoned_s": wait_stats(abandoned_waits),
        "stuck_agents": len(stuck_a),
        "stuck_agent_names": stuck_a[:20],
        "stuck_members": len(stuck_m),
        "stuck_member_uuids": stuck_m[:20],
        "agents_by_status_state": dict(sorted(agents_by.items())),
        "queues": queues,
        **extra,
    }
