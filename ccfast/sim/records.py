"""What the simulator records so tests and benchmarks can assert on outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio


@dataclass
class CallRecord:
    """One simulated caller (a member channel that dialled the socket listener)."""

    member_uuid: str
    caller_uuid: str                 # the loopback -a leg: the caller's "phone"
    queue: str
    created: float
    connected_at: float | None = None      # TCP connection to the listener made
    connect_cmd_at: float | None = None    # `connect` received
    answered_at: float | None = None
    bridged_at: float | None = None
    agent_uuid: str | None = None
    ended_at: float | None = None
    hangup_cause: str | None = None
    abandoned: bool = False
    socket_failed: bool = False            # nothing listening: dialplan went on at once
    continued_in_dialplan: bool = False    # the socket app returned and the dialplan went on
    stuck: bool = False                    # closed before park: stays parked in the socket app
    resumed: bool = False                  # `resume` was sent on the socket
    commands: list = field(default_factory=list)   # command lines received on the socket
    dtmf_sent: list = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def outcome(self) -> str:
        if self.ended_at is None:
            return "active"
        if self.bridged_at is not None:
            return "bridged"
        if self.abandoned:
            return "abandoned"
        return "ended"


@dataclass
class LegRecord:
    """One originated leg (usually an agent)."""

    uuid: str
    endpoint: str
    profile: str
    job_uuid: str
    created: float
    answered_at: float | None = None
    bridged_at: float | None = None
    bridged_to: str | None = None
    ended_at: float | None = None
    cause: str | None = None
    done: trio.Event = field(default_factory=trio.Event)


@dataclass
class JobRecord:
    job_uuid: str
    command: str
    arg: str
    started: float
    result: str | None = None
    finished: float | None = None
    done: trio.Event = field(default_factory=trio.Event)
