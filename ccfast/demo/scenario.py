"""The demo's call center: queues, agents with simulated behaviours, and the traffic profile.

Everything here is deterministic for a given agent count and seed:

* ``sample_config(agents)`` — the ``callcenter.conf.xml`` text (queues with different strategies
  and tier rules, agents, tiers). ``examples/demo/callcenter.conf.xml`` is ``sample_config(50)``
  (``make demo-example`` rewrites it; a test keeps them equal).
* ``agent_profiles(agents)`` — contact name → the simulator's ``AgentProfile`` (how that agent's
  phone behaves: ring time, no answer, busy, reject, talk time, who hangs up).
* ``Traffic`` — arrival rate with a ramp, queue shares, caller patience and exit keys;
  ``Traffic.caller(rng, i)`` draws one ``CallerSpec``.

Agent contacts are ``sim/agent/<behaviour>-<extension>``; the simulator resolves them through the
profile table, so the same file run against real FreeSWITCH would need real contacts.
"""

from __future__ import annotations

import dataclasses
import math
import random
from xml.sax.saxutils import quoteattr

from .. import strings as S
from ..sim import AgentProfile, CallerSpec
from ..sim.profiles import ANSWER, BUSY, NO_ANSWER, REJECT

DOMAIN = "demo"
FIRST_EXTENSION = 1001
MIN_AGENTS = 5


@dataclasses.dataclass(frozen=True)
class QueueSpec:
    name: str
    strategy: str
    share: float  # fraction of callers who call this queue
    params: tuple[tuple[str, str], ...]
    comment: str


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(f"support@{DOMAIN}", S.LONGEST_IDLE_AGENT, 0.35, (
        ("tier-rules-apply", "true"), ("tier-rule-wait-second", "8"),
        ("tier-rule-wait-multiply-level", "true"), ("tier-rule-no-agent-no-wait", "true"),
        ("max-wait-time-with-no-agent", "30"), ("max-wait-time-with-no-agent-time-reached", "5"),
        ("discard-abandoned-after", "30"), ("abandoned-resume-allowed", "false"),
        ("service-level-threshold", "20"),
    ), "longest idle agent first; level-1 agents at once (no-agent-no-wait), level 2 after 2 x 8 s"),
    QueueSpec(f"sales@{DOMAIN}", S.ROUND_ROBIN, 0.25, (
        ("max-wait-time", "45"), ("service-level-threshold", "15"),
    ), "round robin; callers leave after 45 s (TIMEOUT)"),
    QueueSpec(f"billing@{DOMAIN}", S.TOP_DOWN, 0.20, (
        ("tier-rules-apply", "true"), ("tier-rule-wait-second", "5"),
        ("tier-rule-wait-multiply-level", "false"), ("tier-rule-no-agent-no-wait", "true"),
        ("service-level-threshold", "30"),
    ), "top-down by level/position; levels 2 and 3 after 5 s, or at once when the level above has nobody logged in"),
    QueueSpec(f"vip@{DOMAIN}", S.RING_ALL, 0.10, (
        ("announce-sound", "ivr/ivr-hold_connect_call.wav"), ("announce-frequency", "15"),
        ("service-level-threshold", "10"),
    ), "every free agent rings at once; the first to answer wins"),
    QueueSpec(f"tech@{DOMAIN}", S.AGENT_WITH_FEWEST_CALLS, 0.10, (
        ("max-wait-time", "60"), ("service-level-threshold", "20"),
    ), "the agent with the fewest answered calls first"),
)
MOH = "local_stream://moh"


# -- agent behaviours -------------------------------------------------------------------------
def _talk(name: str, outcome: str = ANSWER, ring=(0.3, 1.5), talk=("exp", 10.0), **kw) -> AgentProfile:
    return AgentProfile(name, outcome=outcome, ring_time=ring, talk_time=talk, **kw)


def behaviour(name: str) -> AgentProfile:
    """The simulator profile of one behaviour (each originate draws from its mix)."""
    if name == "quick":  # answers within 1.5 s; mostly short calls, some long; the caller hangs up 1 in 6
        return AgentProfile(name, mix=[
            (0.60, _talk("quick", talk=("exp", 8.0))),
            (0.25, _talk("quick", talk=(15.0, 35.0))),
            (0.15, _talk("quick", talk=("exp", 10.0), hangup_by="caller")),
        ])
    if name == "slow":  # lets it ring 3-8 s
        return AgentProfile(name, mix=[(1.0, _talk("slow", ring=(3.0, 8.0), talk=(6.0, 20.0)))])
    if name == "flaky":  # 40 % of offers ring out (no answer)
        return AgentProfile(name, mix=[
            (0.6, _talk("flaky", ring=(1.0, 3.0), talk=("exp", 8.0))),
            (0.4, AgentProfile("flaky", outcome=NO_ANSWER)),
        ])
    if name == "busy":  # half the offers: USER_BUSY (already on another call)
        return AgentProfile(name, mix=[
            (0.5, AgentProfile("busy", outcome=BUSY, fail_time=(0.2, 1.0))),
            (0.5, _talk("busy")),
        ])
    if name == "reject":  # 40 %: presses reject (CALL_REJECTED)
        return AgentProfile(name, mix=[
            (0.4, AgentProfile("reject", outcome=REJECT, fail_time=(1.0, 3.0))),
            (0.6, _talk("reject", ring=(0.5, 2.0))),
        ])
    if name == "absent":  # never answers: max-no-answer puts the agent On Break
        return AgentProfile(name, outcome=NO_ANSWER)
    raise ValueError(f"unknown behaviour {name!r}")


BEHAVIOURS = ("quick", "slow", "flaky", "busy", "reject", "absent")
# one block of 25 agents; repeated (and cut) for other counts. 11 quick, 5 slow, 3 flaky, 3 busy, 2 reject, 1 absent
_PATTERN = ("quick", "slow", "quick", "flaky", "quick", "busy", "quick", "slow", "reject", "quick",
            "quick", "flaky", "slow", "quick", "busy", "quick", "absent", "slow", "quick", "reject",
            "flaky", "quick", "busy", "slow", "quick")


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    name: str
    behaviour: str
    contact: str
    wrap_up_time: int
    tiers: tuple[tuple[str, int, int], ...]  # (queue, level, position)


def _tiers(i: int, n: int) -> list[tuple[str, int]]:
    """Queues (with level) of agent ``i`` of ``n``: overlapping groups, so agents serve 1-3 queues."""
    f = i / n
    out: list[tuple[str, int]] = []
    if f < 0.42:
        out.append((QUEUES[0].name, 1 if f < 0.30 else 2))
    if 0.36 <= f < 0.68:
        out.append((QUEUES[1].name, 1))
    if 0.60 <= f < 0.84:
        out.append((QUEUES[2].name, 1 + min(2, int((f - 0.60) / 0.08))))
    if f >= 0.84 or i % 12 == 0:
        out.append((QUEUES[3].name, 1))
    if f >= 0.88 or 0.20 <= f < 0.28 or i == n - 1:
        out.append((QUEUES[4].name, 1))
    return out


def agents(n: int) -> list[AgentSpec]:
    if n < MIN_AGENTS:
        raise ValueError(f"the demo needs at least {MIN_AGENTS} agents (one per queue), got {n}")
    positions: dict[tuple[str, int], int] = {}
    out = []
    for i in range(n):
        ext = FIRST_EXTENSION + i
        beh = _PATTERN[i % len(_PATTERN)]
        tiers = []
        for queue, level in _tiers(i, n):
            pos = positions[(queue, level)] = positions.get((queue, level), 0) + 1
            tiers.append((queue, level, pos))
        out.append(AgentSpec(f"{ext}@{DOMAIN}", beh, f"sim/agent/{beh}-{ext}", 2 + i % 4, tuple(tiers)))
    return out


def agent_profiles(n: int) -> dict[str, AgentProfile]:
    """Contact name (as the simulator resolves ``sim/agent/<name>``) → profile."""
    return {a.contact.rpartition("/")[2]: behaviour(a.behaviour) for a in agents(n)}


def sample_config(n_agents: int = 50) -> str:
    """The demo's ``callcenter.conf.xml`` (no ``<ccfast>`` block: the demo supplies its ports)."""
    lines = [
        "<!--",
        "  The sample call center of `ccfast demo` (generated by ccfast/demo/scenario.py: sample_config).",
        f"  {len(QUEUES)} queues, {n_agents} agents. Agent contacts are sim/agent/<behaviour>-<extension>: the",
        "  demo's simulated FreeSWITCH resolves them to simulated phones (quick, slow, flaky = sometimes",
        "  no answer, busy, reject, absent = never answers). Behaviours are described in docs/operations.md.",
        "  Run it: ccfast demo   (or ccfast demo --config examples/demo/callcenter.conf.xml)",
        "-->",
        '<configuration name="callcenter.conf" description="ccfast demo">',
        "  <settings>",
        "    <!-- no dbname: tables in RAM -->",
        '    <param name="agent-originate-timeout" value="10"/>',
        "  </settings>",
        "  <queues>",
    ]
    for q in QUEUES:
        lines.append(f"    <!-- {q.comment} -->")
        lines.append(f'    <queue name="{q.name}">')
        lines.append(f'      <param name="strategy" value="{q.strategy}"/>')
        lines.append(f'      <param name="moh-sound" value="{MOH}"/>')
        for key, value in q.params:
            lines.append(f'      <param name="{key}" value="{value}"/>')
        lines.append("    </queue>")
    lines += ["  </queues>", "  <agents>"]
    specs = agents(n_agents)
    for a in specs:
        lines.append(
            f'    <agent name="{a.name}" type="callback" contact={quoteattr(a.contact)} status="{S.STATUS_AVAILABLE}"'
            f' max-no-answer="2" wrap-up-time="{a.wrap_up_time}" reject-delay-time="5" busy-delay-time="8"'
            f' no-answer-delay-time="5"/>'
        )
    lines += ["  </agents>", "  <tiers>"]
    for a in specs:
        for queue, level, pos in a.tiers:
            lines.append(f'    <tier agent="{a.name}" queue="{queue}" level="{level}" position="{pos}"/>')
    lines += ["  </tiers>", "</configuration>", ""]
    return "\n".join(lines)


# -- traffic ----------------------------------------------------------------------------------
_NAMES = ("Alice Smith", "Bob Jones", "Carla Diaz", "Dmitri Ivanov", "Eve Martin", "Farid Haddad",
          "Grace Kim", "Hugo Weber", "Ines Costa", "Jun Tanaka")
EXIT_KEY = "#"


@dataclasses.dataclass
class Traffic:
    """Callers: Poisson arrivals at ``rate(t)`` — ``start_fraction × cps`` rising linearly to
    ``cps`` over ``ramp_s`` — so queues build up once the peak exceeds what the agents can take.

    Patience: ``patient_share`` of callers hang up after 4 s + Exp(``patience_mean``) unbridged;
    the others wait until served or until the queue's max-wait. ``exit_key_share`` of callers get
    ``cc_exit_keys=#`` and ``press_share`` of those press it after 5-20 s. ``queues``: where callers
    go, with relative shares."""

    cps: float = 4.0
    ramp_s: float = 20.0
    start_fraction: float = 0.3
    patient_share: float = 0.85
    patience_mean: float = 30.0
    exit_key_share: float = 0.10
    press_share: float = 0.6
    queues: tuple[tuple[str, float], ...] = tuple((q.name, q.share) for q in QUEUES)  # (queue, share)

    def rate(self, t: float) -> float:
        if self.ramp_s <= 0 or t >= self.ramp_s:
            return self.cps
        return self.cps * (self.start_fraction + (1.0 - self.start_fraction) * max(0.0, t) / self.ramp_s)

    def next_gap(self, rng: random.Random, t: float) -> float:
        """Seconds to the next arrival after time ``t`` (exponential at the current rate)."""
        return rng.expovariate(max(self.rate(t), 1e-6))

    def caller(self, rng: random.Random, i: int) -> CallerSpec:
        x = rng.random() * sum(share for _, share in self.queues)
        queue = self.queues[-1][0]
        acc = 0.0
        for name, share in self.queues:
            acc += share
            if x < acc:
                queue = name
                break
        variables: dict[str, str] = {}
        dtmf: list = []
        if rng.random() < self.exit_key_share:
            variables["cc_exit_keys"] = EXIT_KEY
            if rng.random() < self.press_share:
                dtmf.append((rng.uniform(5.0, 20.0), EXIT_KEY))
        patience = 4.0 + rng.expovariate(1.0 / self.patience_mean) if rng.random() < self.patient_share else None
        return CallerSpec(queue=queue, cid_name=_NAMES[i % len(_NAMES)], cid_number=f"555{1000 + i % 9000}",
                          variables=variables, patience=patience, dtmf=dtmf)


def traffic_for(cps: float, duration: float | None) -> Traffic:
    """The default profile at peak ``cps``; the ramp takes 40 % of a short run (at most 20 s)."""
    if not cps > 0 or math.isinf(cps):
        raise ValueError(f"--cps must be a positive number, got {cps}")
    ramp = 20.0 if duration is None else min(20.0, 0.4 * duration)
    return Traffic(cps=cps, ramp_s=ramp)

