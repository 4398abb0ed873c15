"""Agent behaviour profiles and contact-string resolution.

A contact (the endpoint part of one originate leg) resolves to an :class:`AgentProfile`:

* ``sim/agent/<name>`` or ``sim/<name>`` — one leg; ``<name>`` is looked up in the profile table,
  then in the built-in names below; anything else uses the table's default profile;
* ``loopback/<ext>[/<context>]`` — a loopback pair (-a and -b legs, as mod_loopback makes);
  ``<ext>`` is looked up in the table, then the built-in names; unknown → ``NO_ROUTE_DESTINATION``;
* ``user/<id>[@<domain>]`` — table lookup by ``id@domain`` then ``id``; unknown →
  ``USER_NOT_REGISTERED``;
* ``error/<CAUSE>`` — fails at once with that cause; ``null/<x>`` — answers at once.

Built-in names (the test dialplan of the integration reference): ``agent_park*``,
``agent_answer*`` (answer at once), ``agent_delay_<N>_<MS>`` (ring MS ms then answer),
``agent_noanswer*`` (ring forever), ``agent_busy*`` (USER_BUSY), ``agent_reject*``
(CALL_REJECTED), ``agent_unregistered*`` (USER_NOT_REGISTERED).

Durations are seconds: a number, ``(lo, hi)`` for uniform, or ``("exp", mean)``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Union

Duration = Union[float, int, tuple]

ANSWER = "answer"
NO_ANSWER = "no_answer"      # rings until originate_timeout / leg_timeout
BUSY = "USER_BUSY"
REJECT = "CALL_REJECTED"
NOT_REGISTERED = "USER_NOT_REGISTERED"

OUTCOMES = (ANSWER, NO_ANSWER, BUSY, REJECT, NOT_REGISTERED)


def sample(d: Duration | None, rng: random.Random) -> float | None:
    """Draw one duration (seconds) from a Duration spec; None stays None."""
    if d is None:
        return None
    if isinstance(d, (int, float)):
        return float(d)
    if isinstance(d, tuple) and len(d) == 2 and d[0] == "exp":
        return rng.expovariate(1.0 / float(d[1]))
    if isinstance(d, tuple) and len(d) == 2:
        return rng.uniform(float(d[0]), float(d[1]))
    raise ValueError(f"bad duration spec {d!r}")


@dataclass
class AgentProfile:
    """How a simulated agent endpoint behaves when originated.

    outcome: ``answer``, ``no_answer`` or a failure cause (``USER_BUSY``, ``CALL_REJECTED``,
    ``USER_NOT_REGISTERED``, or any other cause string).
    ring_time: time before answering (CHANNEL_PROGRESS is sent first when > 0).
    fail_time: time before a failure cause is reported.
    talk_time: once bridged, time until someone hangs up (None: stay until killed).
    hangup_by: ``agent`` (the agent leg hangs up) or ``caller`` (the member's caller side).
    mix: optional ``[(weight, profile), ...]``: each originate picks one, using the sim's seed.
    """

    name: str = "default"
    outcome: str = ANSWER
    ring_time: Duration = 0.0
    fail_time: Duration = 0.02
    talk_time: Duration | None = None
    hangup_by: str = "agent"
    mix: list = field(default_factory=list)

    def pick(self, rng: random.Random) -> "AgentProfile":
        if not self.mix:
            return self
        total = sum(w for w, _ in self.mix)
        x = rng.uniform(0, total)
        for w, p in self.mix:
            x -= w
            if x <= 0:
                return p.pick(rng)
        return self.mix[-1][1].pick(rng)


_DELAY = re.compile(r"agent_delay_\d+_(\d+)")


def builtin(name: str) -> AgentProfile | None:
    if name.startswith(("agent_park", "agent_answer")):
        return AgentProfile(name)
    m = _DELAY.match(name)
    if m:
        return AgentProfile(name, ring_time=int(m.group(1)) / 1000.0)
    if name.startswith("agent_noanswer"):
        return AgentProfile(name, outcome=NO_ANSWER)
    if name.startswith("agent_busy"):
        return AgentProfile(name, outcome=BUSY)
    if name.startswith("agent_reject"):
        return AgentProfile(name, outcome=REJECT, fail_time=0.04)
    if name.startswith("agent_unregistered"):
        return AgentProfile(name, outcome=NOT_REGISTERED, fail_time=0.0)
    return None


@dataclass
class Contact:
    kind: str            # loopback / sim / user / error / null
    name: str            # extension, agent name, user id
    context: str
    profile: AgentProfile | None
    cause: str = ""      # immediate failure cause when profile is None


class ProfileTable:
    """Maps contact names to profiles; ``default`` is used for unknown ``sim/`` names."""

    def __init__(self, profiles: dict[str, AgentProfile] | None = None,
                 default: AgentProfile | None = None):
        self.profiles = dict(profiles or {})
        self.default = default or AgentProfile()

    def add(self, name: str, profile: AgentProfile) -> None:
        self.profiles[name] = profile

    def resolve(self, endpoint: str) -> Contact:
        tech, _, rest = endpoint.partition("/")
        if tech == "loopback":
            ext, _, ctx = rest.partition("/")
            p = self.profiles.get(ext) or builtin(ext)
            return Contact("loopback", ext, ctx or "default", p,
                           "" if p else "NO_ROUTE_DESTINATION")
        if tech == "sim":
            name = rest[6:] if rest.startswith("agent/") else rest
            p = self.profiles.get(name) or builtin(name) or self.default
            return Contact("sim", name, "default", p)
        if tech == "user":
            uid = rest
            p = self.profiles.get(uid) or self.profiles.get(uid.partition("@")[0])
            return Contact("user", uid, "default", p, "" if p else NOT_REGISTERED)
        if tech == "error":
            return Contact("error", rest, "default", None, rest or "NORMAL_CLEARING")
        if tech == "null":
            return Contact("null", rest, "default", AgentProfile(rest))
        return Contact(tech, rest, "default", None, "CHAN_NOT_IMPLEMENTED")
