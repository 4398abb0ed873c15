"""Every interface string of mod_callcenter, spelled exactly as the module writes it.

Tables, statuses, states, strategies, cancel reasons, CC-Action values and column names
live here and only here (reference ``mod_callcenter.md`` §1.1, §1.2, §6.2). Other modules
import these names instead of writing the literals again.
"""

from __future__ import annotations

# -- instance ------------------------------------------------------------------------------
SINGLE_BOX = "single_box"  # agents.instance_id is always this literal (§4.9, W9)

# -- agent status (§1.2) -------------------------------------------------------------------
STATUS_LOGGED_OUT = "Logged Out"
STATUS_AVAILABLE = "Available"
STATUS_AVAILABLE_ON_DEMAND = "Available (On Demand)"
STATUS_ON_BREAK = "On Break"
AGENT_STATUSES = (STATUS_LOGGED_OUT, STATUS_AVAILABLE, STATUS_AVAILABLE_ON_DEMAND, STATUS_ON_BREAK)
# statuses the candidate query returns (§4.3), exact and case-sensitive
CANDIDATE_STATUSES = (STATUS_AVAILABLE, STATUS_ON_BREAK, STATUS_AVAILABLE_ON_DEMAND)

# -- agent state ---------------------------------------------------------------------------
STATE_WAITING = "Waiting"
STATE_RECEIVING = "Receiving"
STATE_IN_A_QUEUE_CALL = "In a queue call"
STATE_IDLE = "Idle"
STATE_RESERVED = "Reserved"
AGENT_STATES = (STATE_WAITING, STATE_RECEIVING, STATE_IN_A_QUEUE_CALL, STATE_IDLE, STATE_RESERVED)

# -- tier state ----------------------------------------------------------------------------
TIER_NO_ANSWER = "No Answer"
TIER_READY = "Ready"
TIER_OFFERING = "Offering"
TIER_ACTIVE_INBOUND = "Active Inbound"
TIER_STANDBY = "Standby"
TIER_STATES = (TIER_NO_ANSWER, TIER_READY, TIER_OFFERING, TIER_ACTIVE_INBOUND, TIER_STANDBY)

# -- member state --------------------------------------------------------------------------
MEMBER_WAITING = "Waiting"
MEMBER_TRYING = "Trying"
MEMBER_ANSWERED = "Answered"
MEMBER_ABANDONED = "Abandoned"
MEMBER_STATES = (MEMBER_WAITING, MEMBER_TRYING, MEMBER_ANSWERED, MEMBER_ABANDONED)

# -- agent type ----------------------------------------------------------------------------
TYPE_CALLBACK = "Callback"
TYPE_UUID_STANDBY = "uuid-standby"
AGENT_TYPES = (TYPE_CALLBACK, TYPE_UUID_STANDBY)

# -- strategies ----------------------------------------------------------------------------
RING_ALL = "ring-all"
RING_PROGRESSIVELY = "ring-progressively"
LONGEST_IDLE_AGENT = "longest-idle-agent"
ROUND_ROBIN = "round-robin"
TOP_DOWN = "top-down"
AGENT_WITH_LEAST_TALK_TIME = "agent-with-least-talk-time"
AGENT_WITH_FEWEST_CALLS = "agent-with-fewest-calls"
SEQUENTIALLY_BY_AGENT_ORDER = "sequentially-by-agent-order"
RANDOM = "random"
STRATEGIES = (
    RING_ALL, RING_PROGRESSIVELY, LONGEST_IDLE_AGENT, ROUND_ROBIN, TOP_DOWN,
    AGENT_WITH_LEAST_TALK_TIME, AGENT_WITH_FEWEST_CALLS, SEQUENTIALLY_BY_AGENT_ORDER, RANDOM,
)
RING_STRATEGIES = (RING_ALL, RING_PROGRESSIVELY)

# -- member cancel reasons and causes ------------------------------------------------------
CANCEL_NONE = "NONE"
CANCEL_TIMEOUT = "TIMEOUT"
CANCEL_NO_AGENT_TIMEOUT = "NO_AGENT_TIMEOUT"
CANCEL_BREAK_OUT = "BREAK_OUT"
CANCEL_EXIT_WITH_KEY = "EXIT_WITH_KEY"
CANCEL_REASONS = (CANCEL_NONE, CANCEL_TIMEOUT, CANCEL_NO_AGENT_TIMEOUT, CANCEL_BREAK_OUT, CANCEL_EXIT_WITH_KEY)
CAUSE_TERMINATED = "Terminated"  # CC-Cause of member-queue-end after a bridged call
CAUSE_CANCEL = "Cancel"  # CC-Cause of member-queue-end without an agent
CC_CAUSE_ANSWERED = "answered"  # cc_cause channel variable values (§8.3)
CC_CAUSE_CANCEL = "cancel"

# -- hangup / originate causes the offer logic distinguishes (§5.7) ------------------------
HANGUP_LOSE_RACE = "LOSE_RACE"
HANGUP_ORIGINATOR_CANCEL = "ORIGINATOR_CANCEL"
HANGUP_USER_BUSY = "USER_BUSY"
HANGUP_NORMAL_CIRCUIT_CONGESTION = "NORMAL_CIRCUIT_CONGESTION"
HANGUP_CALL_REJECTED = "CALL_REJECTED"
HANGUP_USER_NOT_REGISTERED = "USER_NOT_REGISTERED"
HANGUP_NO_ANSWER = "NO_ANSWER"
HANGUP_ALLOTTED_TIMEOUT = "ALLOTTED_TIMEOUT"
HANGUP_SUCCESS = "SUCCESS"
HANGUP_NONE = "NONE"
HANGUP_NORMAL_CLEARING = "NORMAL_CLEARING"
HANGUP_DESTINATION_OUT_OF_ORDER = "DESTINATION_OUT_OF_ORDER"
HANGUP_NO_USER_RESPONSE = "NO_USER_RESPONSE"
HANGUP_PROGRESS_TIMEOUT = "PROGRESS_TIMEOUT"
USER_NOT_REGISTERED_DELAY = 5  # fixed back-off, seconds (§5.7)

# -- events (§6.2) -------------------------------------------------------------------------
EVENT_SUBCLASS = "callcenter::info"
ACTION_AGENT_ADD = "agent-add"
ACTION_AGENT_STATUS_CHANGE = "agent-status-change"
ACTION_AGENT_STATE_CHANGE = "agent-state-change"
ACTION_AGENT_CONTACT_CHANGE = "agent-contact-change"
ACTION_AGENT_OFFERING = "agent-offering"
ACTION_AGENT_MAX_NO_ANSWER = "agent-max-no-answer"
ACTION_BRIDGE_AGENT_START = "bridge-agent-start"
ACTION_BRIDGE_AGENT_END = "bridge-agent-end"
ACTION_BRIDGE_AGENT_FAIL = "bridge-agent-fail"
ACTION_MEMBER_QUEUE_START = "member-queue-start"
ACTION_MEMBER_QUEUE_RESUME = "member-queue-resume"
ACTION_MEMBER_QUEUE_END = "member-queue-end"
ACTION_MEMBERS_COUNT = "members-count"
# agent-status-get / agent-state-get / agent-uuid-get are built as f"agent-{key}-get"

# event headers (§6.2) read by the metrics layer
H_CC_ACTION = "CC-Action"
H_CC_QUEUE = "CC-Queue"
H_CC_AGENT = "CC-Agent"
H_CC_CAUSE = "CC-Cause"
H_CC_CANCEL_REASON = "CC-Cancel-Reason"
H_CC_HANGUP_CAUSE = "CC-Hangup-Cause"
H_CC_MEMBER_UUID = "CC-Member-UUID"
H_CC_MEMBER_JOINED_TIME = "CC-Member-Joined-Time"
H_CC_MEMBER_LEAVING_TIME = "CC-Member-Leaving-Time"
H_CC_AGENT_ANSWERED_TIME = "CC-Agent-Answered-Time"

# -- tables and columns (§1.1), in physical order ------------------------------------------
MEMBERS_COLUMNS = (
    "queue", "instance_id", "uuid", "session_uuid", "cid_number", "cid_name", "system_epoch",
    "joined_epoch", "rejoined_epoch", "bridge_epoch", "abandoned_epoch", "base_score",
    "skill_score", "serving_agent", "serving_system", "state",
)
AGENTS_COLUMNS = (
    "name", "instance_id", "uuid", "type", "contact", "status", "state", "max_no_answer",
    "wrap_up_time", "reject_delay_time", "busy_delay_time", "no_answer_delay_time",
    "last_bridge_start", "last_bridge_end", "last_offered_call", "last_status_change",
    "no_answer_count", "calls_answered", "talk_time", "ready_time", "external_calls_count",
)
TIERS_COLUMNS = ("queue", "agent", "state", "level", "position")
TABLE_COLUMNS = {"members": MEMBERS_COLUMNS, "agents": AGENTS_COLUMNS, "tiers": TIERS_COLUMNS}

# `queue list` header (§7.3)
QUEUE_LIST_COLUMNS = (
    "name", "strategy", "moh_sound", "time_base_score", "tier_rules_apply", "tier_rule_wait_second",
    "tier_rule_wait_multiply_level", "tier_rule_no_agent_no_wait", "discard_abandoned_after",
    "abandoned_resume_allowed", "max_wait_time", "max_wait_time_with_no_agent",
    "max_wait_time_with_no_agent_time_reached", "record_template", "calls_answered",
    "calls_abandoned", "ring_progressively_delay", "skip_agents_with_external_calls",
    "agent_no_answer_status",
)


def canonical(value: str, allowed: tuple[str, ...]) -> str | None:
    """The allowed spelling that equals ``value`` case-insensitively, or None."""
    low = value.lower()
    for candidate in allowed:
        if candidate.lower() == low:
            return candidate
    return None
