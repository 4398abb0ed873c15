"""Queue parameters of ``callcenter.conf``: names, defaults and mod_callcenter's parsing rules.

The single source for queue params (reference §2.1, §2.3). ``QueueParams`` is the typed value the
core, the oracle, the API (``queue list``) and the config loader all share.
"""

from __future__ import annotations

import dataclasses
import re

from . import strings as S

TRUE_WORDS = frozenset({"yes", "on", "true", "t", "enabled", "active", "allow"})
FALSE_WORDS = frozenset({"no", "off", "false", "f", "disabled", "inactive", "disallow"})
INT_MAX = 86400
RING_PROGRESSIVELY_DEFAULT_DELAY = 10  # ring-progressively-delay 0 means this (§2.3)


@dataclasses.dataclass(slots=True)
class QueueParams:
    """One queue's configuration. Field names follow the `queue list` columns."""

    name: str
    strategy: str = S.LONGEST_IDLE_AGENT
    moh_sound: str | None = None
    announce_sound: str | None = None
    announce_frequency: int = 0
    record_template: str | None = None
    time_base_score: str = "queue"
    ring_progressively_delay: int = 0
    tier_rules_apply: bool = False
    tier_rule_wait_second: int = 0
    tier_rule_wait_multiply_level: bool = False
    tier_rule_no_agent_no_wait: bool = True
    discard_abandoned_after: int = 60
    abandoned_resume_allowed: bool = False
    max_wait_time: int = 0
    max_wait_time_with_no_agent: int = 0
    max_wait_time_with_no_agent_time_reached: int = 5
    agent_no_answer_status: str = S.STATUS_ON_BREAK
    skip_agents_with_external_calls: bool = True
    service_level_threshold: int = 20  # ccfast's own KPI param (not in mod_callcenter)

    @property
    def effective_ring_progressively_delay(self) -> int:
        return self.ring_progressively_delay or RING_PROGRESSIVELY_DEFAULT_DELAY

    @property
    def strategy_key(self) -> str:
        """The strategy as the C code compares it (case-insensitively)."""
        return self.strategy.lower()

    @property
    def time_base_system(self) -> bool:
        return self.time_base_score.lower() == "system"


_BOOL_PARAMS = {
    "tier-rules-apply", "tier-rule-wait-multiply-level", "tier-rule-no-agent-no-wait",
    "abandoned-resume-allowed", "skip-agents-with-external-calls",
}
_INT_PARAMS = {
    "announce-frequency", "ring-progressively-delay", "tier-rule-wait-second",
    "discard-abandoned-after", "max-wait-time", "max-wait-time-with-no-agent",
    "max-wait-time-with-no-agent-time-reached", "service-level-threshold",
}
_STR_PARAMS = {
    "strategy", "moh-sound", "announce-sound", "record-template", "time-base-score",
    "agent-no-answer-status",
}
PARAM_NAMES = frozenset(_BOOL_PARAMS | _INT_PARAMS | _STR_PARAMS)


class ParamWarning(str):
    """A message about a param that was ignored or replaced by its default (never fatal)."""


def is_number(value: str) -> bool:
    """``switch_is_number``: optional sign, then only digits and dots (so "" and "+" count)."""
    body = value[1:] if value[:1] in ("+", "-") else value
    return all(char == "." or "0" <= char <= "9" for char in body)


def parse_bool(value: str) -> bool | None:
    """``switch_true``/``switch_false``: true/false words (any case, no trimming) or a number
    (``atoi`` non-zero is true; "" and "0.5" are numbers that are false). None when neither."""
    low = value.lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    if is_number(value):
        return atoi(value) != 0
    return None


def parse_int(value: str) -> int | None:
    """mod_callcenter's integer rule: ``switch_is_number`` then ``atoi``, range 0..86400.

    No trimming: " 5" is not a number for FreeSWITCH either."""
    if not is_number(value):
        return None
    number = atoi(value)
    if not 0 <= number <= INT_MAX:
        return None
    return number


def atoi(value: str | None) -> int:
    """C ``atoi``: leading whitespace, optional sign, digits; anything else stops; empty is 0."""
    if not value:
        return 0
    match = re.match(r"\s*([+-]?\d+)", value)
    return int(match.group(1)) if match else 0


def settings_bool(value: str) -> bool:
    """``<settings>`` booleans: true words (or non-zero numbers) are true, all else false."""
    return bool(parse_bool(value))


def build_queue_params(name: str, params: dict[str, str]) -> tuple[QueueParams, list[str]]:
    """Apply ``<param name value>`` pairs to the defaults. Returns the params and warnings.

    Like mod_callcenter, nothing here is fatal: a bad value keeps the default and is reported,
    an unknown name is reported.
    """
    queue = QueueParams(name=name)
    warnings: list[str] = []
    for raw_name, value in params.items():
        pname = raw_name.lower()
        attr = pname.replace("-", "_")
        if pname in _BOOL_PARAMS:
            parsed = parse_bool(value)
            if parsed is None:
                warnings.append(f"queue {name}: param {raw_name}={value!r} is not a boolean; keeping default")
                continue
            setattr(queue, attr, parsed)
        elif pname in _INT_PARAMS:
            parsed = parse_int(value)
            if parsed is None:
                warnings.append(
                    f"queue {name}: param {raw_name}={value!r} is not an integer in 0..{INT_MAX}; keeping default"
                )
                continue
            setattr(queue, attr, parsed)
        elif pname == "agent-no-answer-status":
            if S.canonical(value, S.AGENT_STATUSES) is None:
                warnings.append(
                    f"queue {name}: agent-no-answer-status={value!r} is not one of {', '.join(S.AGENT_STATUSES)}; using On Break"
                )
                continue
            queue.agent_no_answer_status = value  # stored as typed (§2.3)
        elif pname in _STR_PARAMS:
            setattr(queue, attr, value)
        else:
            warnings.append(f"queue {name}: unknown param {raw_name!r} ignored")
    return queue, warnings
