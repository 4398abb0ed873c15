"""Row builders and hypothesis generators of random dispatch states (shared by tests).

``agent_row`` / ``tier_row`` / ``member_row`` build complete rows (every column of §1.1) with
sensible defaults, so hand-made tests only spell out what matters. ``states()`` generates random
states for the differential test: queues with random strategies and tier params, agents with random
status/state/epochs/counters (including non-canonical spellings such as ``available``, which
dispatch must ignore), tiers, members with random scores/joined epochs/states, and a ``now``.
"""

from __future__ import annotations

import dataclasses
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ccfast import strings as S
from ccfast.params import QueueParams

NOW = 1_700_000_000

# -- profiles ------------------------------------------------------------------------------
_base = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.register_profile(
    "differential",
    deadline=None,
    max_examples=50 if _base == "dev" else int(os.environ.get("CCFAST_DIFF_EXAMPLES", "500")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
DIFFERENTIAL = settings.get_profile("differential")


# -- row builders --------------------------------------------------------------------------
def agent_row(name: str, **kw) -> dict:
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


def tier_row(queue: str, agent: str, level: int = 1, position: int = 1, state: str = S.TIER_READY) -> dict:
    return {"queue": queue, "agent": agent, "state": state, "level": level, "position": position}


def member_row(queue: str, uuid: str, joined_epoch: int, **kw) -> dict:
    row = {
        "queue": queue, "instance_id": S.SINGLE_BOX, "uuid": uuid, "session_uuid": f"sess-{uuid}",
        "cid_number": "1000", "cid_name": "caller", "system_epoch": joined_epoch,
        "joined_epoch": joined_epoch, "rejoined_epoch": 0, "bridge_epoch": 0, "abandoned_epoch": 0,
        "base_score": 0, "skill_score": 0, "serving_agent": "", "serving_system": "",
        "state": S.MEMBER_WAITING,
    }
    row.update(kw)
    return row


def ring_marker(strategy: str) -> str:
    """serving_agent written at join (§3.2 step 9): the ring strategy marker, else ''."""
    low = strategy.lower()
    return low if low in S.RING_STRATEGIES else ""


# -- random states -------------------------------------------------------------------------
@dataclasses.dataclass
class State:
    instance_id: str
    reserve_agents: bool
    queues: list[QueueParams]
    agents: list[dict]
    tiers: list[dict]
    members: list[dict]
    now: int

    def load_into(self, target) -> None:
        """Give a Core or an Oracle this state (same calls, same order)."""
        for q in self.queues:
            target.queue_set(dataclasses.replace(q))
        target.load_rows("agents", [dict(r) for r in self.agents])
        target.load_rows("tiers", [dict(r) for r in self.tiers])
        target.load_rows("members", [dict(r) for r in self.members])


# names chosen so byte order matters: digits < upper case < lower case, and "agent_10" < "agent_9"
AGENT_NAMES = (
    "1000@default", "1001@default", "1002@default", "1010@default", "Alice", "Bob", "agent_10",
    "agent_9", "alice", "bob", "zed", "Zed",
)
QUEUE_NAMES = ("support@default", "sales@default", "Billing", "vip")
# canonical strategies mostly; an unknown name (falls back to sequentially-by-agent-order) and
# other spellings (compared case-insensitively in C; `Ring-All` never offers, §2.3 QUIRK)
STRATEGY_CHOICES = st.one_of(
    st.sampled_from(S.STRATEGIES),
    st.sampled_from(S.STRATEGIES),
    st.sampled_from(("no-such-strategy", "Longest-Idle-Agent", "TOP-DOWN", "Ring-All", "Round-Robin")),
)
STATUSES = st.sampled_from(S.AGENT_STATUSES + (S.STATUS_AVAILABLE, S.STATUS_AVAILABLE, "available", "on break"))
STATES = st.sampled_from(S.AGENT_STATES + (S.STATE_WAITING, S.STATE_WAITING, S.STATE_WAITING, "waiting"))
TIER_STATES = st.sampled_from(S.TIER_STATES + (S.TIER_READY, S.TIER_READY, "ready", "no answer"))


@st.composite
def queue_params(draw, name: str) -> QueueParams:
    return QueueParams(
        name=name,
        strategy=draw(STRATEGY_CHOICES),
        ring_progressively_delay=draw(st.sampled_from((0, 0, 1, 3, 15))),
        tier_rules_apply=draw(st.booleans()),
        tier_rule_wait_second=draw(st.sampled_from((0, 5, 10, 30))),
        tier_rule_wait_multiply_level=draw(st.booleans()),
        tier_rule_no_agent_no_wait=draw(st.booleans()),
        discard_abandoned_after=draw(st.sampled_from((0, 10, 60))),
        agent_no_answer_status=draw(
            st.sampled_from((S.STATUS_ON_BREAK, S.STATUS_LOGGED_OUT, S.STATUS_AVAILABLE, "on break"))
        ),
        skip_agents_with_external_calls=draw(st.booleans()),
    )


def _epoch(now: int, span: int):
    """0 (never) or a second shortly before/around now; small ranges so ties are frequent."""
    return st.one_of(st.just(0), st.integers(now - span, now))


@st.composite
def agent_rows(draw, name: str, now: int) -> dict:
    """Half the agents are free (offerable unless tiers/rules say otherwise), half anything."""
    free = draw(st.booleans())
    bridge_end = draw(_epoch(now, 40))
    row = agent_row(
        name,
        instance_id=draw(st.sampled_from((S.SINGLE_BOX,) * 8 + ("SINGLE_BOX", "box2"))),
        type=draw(st.sampled_from((S.TYPE_CALLBACK, S.TYPE_CALLBACK, S.TYPE_UUID_STANDBY, "callback"))),
        status=draw(STATUSES),
        state=draw(STATES),
        max_no_answer=draw(st.sampled_from((0, 0, 1, 2, 3))),
        wrap_up_time=draw(st.sampled_from((0, 0, 5, 10, 30))),
        reject_delay_time=draw(st.sampled_from((0, 5, 10))),
        busy_delay_time=draw(st.sampled_from((0, 5, 10))),
        no_answer_delay_time=draw(st.sampled_from((0, 5, 10))),
        last_bridge_start=max(0, bridge_end - draw(st.integers(0, 30))) if bridge_end else 0,
        last_bridge_end=bridge_end,
        last_offered_call=draw(_epoch(now, 8)),
        last_status_change=draw(_epoch(now, 100)),
        no_answer_count=draw(st.integers(0, 3)),
        calls_answered=draw(st.integers(0, 4)),
        talk_time=draw(st.sampled_from((0, 10, 20, 300))),
        ready_time=draw(st.one_of(st.just(0), st.integers(now - 5, now + 5))),
        external_calls_count=draw(st.sampled_from((0, 0, 0, 0, 1, -1))),
    )
    if free:
        row.update(
            instance_id=S.SINGLE_BOX,
            status=draw(st.sampled_from((S.STATUS_AVAILABLE, S.STATUS_AVAILABLE, S.STATUS_AVAILABLE_ON_DEMAND))),
            state=S.STATE_WAITING,
            ready_time=min(row["ready_time"], now),
            external_calls_count=0,
        )
        if row["last_bridge_end"] >= now - row["wrap_up_time"]:
            row["last_bridge_end"] = row["last_bridge_start"] = now - row["wrap_up_time"] - draw(st.integers(1, 20))
    return row


@st.composite
def member_rows(draw, uuid: str, queue: QueueParams, queues: list[str], now: int, instance_id: str) -> dict:
    joined = draw(st.integers(now - 60, now))
    marker = ring_marker(queue.strategy)
    state = draw(st.sampled_from((S.MEMBER_WAITING,) * 5 + (S.MEMBER_TRYING, S.MEMBER_ABANDONED, S.MEMBER_ANSWERED)))
    serving = marker
    if state == S.MEMBER_TRYING:  # a ring member already seen by a pass, or after a strategy change
        serving = draw(st.sampled_from((marker or S.RING_ALL, S.RING_ALL, S.RING_PROGRESSIVELY)))
    elif draw(st.integers(0, 9)) == 0:  # queue changed strategy since this member joined
        serving = draw(st.sampled_from(("", S.RING_ALL, S.RING_PROGRESSIVELY)))
    abandoned = 0
    if state == S.MEMBER_ABANDONED:
        abandoned = draw(st.one_of(st.just(0), st.integers(joined, now)))
    return member_row(
        queue.name, uuid, joined,
        instance_id=draw(st.sampled_from((instance_id,) * 9 + ("other_box",))),
        session_uuid="" if state == S.MEMBER_ABANDONED else f"sess-{uuid}",
        cid_number=f"10{draw(st.integers(0, 3))}",
        base_score=draw(st.sampled_from((0, 0, 0, 5, 20, -10))),
        serving_agent=serving,
        state=state,
        abandoned_epoch=abandoned,
    )


@st.composite
def states(draw, max_agents: int = 8, max_members: int = 8) -> State:
    now = NOW + draw(st.integers(0, 1000))
    instance_id = draw(st.sampled_from((S.SINGLE_BOX, S.SINGLE_BOX, "box1")))
    qnames = draw(st.lists(st.sampled_from(QUEUE_NAMES), min_size=1, max_size=3, unique=True))
    queues = [draw(queue_params(n)) for n in qnames]
    anames = draw(st.lists(st.sampled_from(AGENT_NAMES), min_size=1, max_size=max_agents, unique=True))
    agents = [draw(agent_rows(n, now)) for n in anames]
    # tiers may name a queue that is not loaded ("ghost"): never dispatched, but its tier rows
    # still take part in the Standby/Ready bookkeeping of the agent's other queues (§5.1, §5.8)
    pairs = [(q, a) for q in qnames + ["ghost"] for a in anames]
    chosen = draw(st.lists(st.sampled_from(pairs), max_size=len(pairs), unique=True)) if pairs else []
    tiers = [
        tier_row(q, a, level=draw(st.integers(0, 3)), position=draw(st.integers(0, 4)),
                 state=draw(st.one_of(st.just(S.TIER_READY), TIER_STATES)))
        for q, a in chosen
    ]
    n_members = draw(st.integers(0, max_members))
    members = []
    for i in range(n_members):
        queue = draw(st.sampled_from(queues))
        row = draw(member_rows(f"m{i:02d}", queue, qnames, now, instance_id))
        if draw(st.integers(0, 19)) == 0:  # a member of a queue that is not loaded: deleted (§4.2)
            row["queue"] = "ghost"
        members.append(row)
    return State(
        instance_id=instance_id,
        reserve_agents=draw(st.booleans()),
        queues=queues, agents=agents, tiers=tiers, members=members, now=now,
    )


# offer results the differential test applies (§5.7 causes; None = left ringing)
RESULTS = st.sampled_from((
    "bridge_end", "bridge_end", "bridge_only", "ringing",
    S.HANGUP_NO_ANSWER, S.HANGUP_NO_ANSWER, S.HANGUP_USER_BUSY, S.HANGUP_NORMAL_CIRCUIT_CONGESTION,
    S.HANGUP_CALL_REJECTED, S.HANGUP_USER_NOT_REGISTERED, S.HANGUP_ORIGINATOR_CANCEL,
    S.HANGUP_LOSE_RACE, S.HANGUP_ALLOTTED_TIMEOUT, S.HANGUP_NONE,
))
